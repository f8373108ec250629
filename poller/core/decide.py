"""Pure decisions ``next_step`` builds on: what a new redemption needs, and what the
spending guard stops."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from poller.core.routing import RewardRule, RouteProblem, route
from poller.domain.model import Redemption, Route


@dataclass(frozen=True, kw_only=True)
class Order:
    route: Route


@dataclass(frozen=True, kw_only=True)
class Hold:
    reason: str


@dataclass(frozen=True, kw_only=True)
class Refuse:
    reason: str


Intake = Order | Hold | Refuse


def plan_intake(
    redemption: Redemption,
    rules: Sequence[RewardRule],
    *,
    unmapped: Literal["hold", "refuse"],
    unmapped_reason: str,
    vendors: Collection[str],
) -> Intake:
    if redemption.problems:
        return Hold(reason="malformed redemption: " + "; ".join(redemption.problems))
    try:
        chosen = route(redemption, rules)
    except RouteProblem as exc:
        return Hold(reason=f"unusable reward metadata: {exc}")
    if chosen is None:
        if unmapped == "refuse":
            return Refuse(reason=unmapped_reason)
        names = (("reward_id", redemption.reward_id), ("reward_name", redemption.reward_name))
        what = ", ".join(f"{k}={v!r}" for k, v in names if v is not None)
        return Hold(reason="no [[rewards]] rule or reward metadata matches "
                           f"({what or 'no reward id or name'})")
    if chosen.vendor not in vendors:
        return Hold(reason=f"routed to vendor {chosen.vendor!r}, which has no "
                           f"[vendors.{chosen.vendor}] section")
    return Order(route=chosen)


@dataclass(frozen=True, kw_only=True)
class SpendPolicy:
    """Protects the vendor balance from a bug or an abuse; what it stops is held for a
    person (``ledger approve``), never refused."""

    daily_limit: Mapping[str, Decimal] | None = None
    max_order: Mapping[str, Decimal] | None = None

    def precheck(self, amount: Decimal, currency: str) -> str | None:
        """A hold reason that needs no ledger (per-order maximum, currency without a
        daily limit), or None."""
        if self.max_order is not None:
            ceiling = self.max_order.get(currency)
            if ceiling is not None and amount > ceiling:
                return (f"spending guard: {amount} {currency} is more than max_order_amount "
                        f"{ceiling} {currency}")
        if self.daily_limit is not None and currency not in self.daily_limit:
            return (f"spending guard: no daily_spend_limit is set for {currency} "
                    "(add it, or approve this one with `ledger approve`)")
        # Once a guard is set, a currency it does not name is not "unlimited": it is a
        # currency the user never thought about (CAD where only USD is capped).
        if self.max_order is not None and currency not in self.max_order:
            return (f"spending guard: no max_order_amount is set for {currency} "
                    "(add it, or approve this one with `ledger approve`)")
        return None

    def daily(self, currency: str) -> Decimal | None:
        return None if self.daily_limit is None else self.daily_limit.get(currency)
