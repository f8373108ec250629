"""Pure decisions ``next_step`` builds on: what to order for a redemption (its reward
metadata when it names a vendor, a product and an amount, as an admin set it per reward in
Influitive; else the first ``[[rewards]]`` rule that matches), and what the spending guard
stops."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from poller.domain.model import INFLUITIVE, Redemption, Route
from poller.domain.money import MINOR_UNITS, CurrencyProblem, normalise_amount

# An amount above this is treated as a data error, not an order (a bug or an abuse should
# never empty the balance in one go). Users can still route larger rewards by rule.
MAX_METADATA_AMOUNT = Decimal("10000")


@dataclass(frozen=True, kw_only=True)
class RewardRule:
    vendor: str
    amount: Decimal
    currency: str
    product: str | None = None
    reward_id: str | None = None
    reward_name: str | None = None
    reward_type: str | None = None  # Influence.io: the webhook's ``rewardType``
    rule_id: str | None = None  # Influence.io: the webhook's ``ruleId``
    source: str = INFLUITIVE

    @property
    def label(self) -> str:
        for name in ("reward_id", "reward_name", "reward_type", "rule_id"):
            value = getattr(self, name)
            if value is not None:
                return f"{name}={value}"
        return "no match key"

    def matches(self, redemption: Redemption) -> bool:
        if self.source != redemption.source:
            return False
        if self.reward_id is not None:
            return redemption.reward_id == self.reward_id
        if self.rule_id is not None:
            return redemption.metadata.get("rule_id") == self.rule_id
        if self.reward_type is not None:
            found = redemption.metadata.get("reward_type")
            return isinstance(found, str) and found.casefold() == self.reward_type.casefold()
        if self.reward_name is not None and redemption.reward_name is not None:
            return redemption.reward_name.casefold() == self.reward_name.casefold()
        return False


class RouteProblem(ValueError):
    """The redemption carries routing data that is unusable (and must not be guessed around)."""


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise RouteProblem("reward_metadata amount is missing")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise RouteProblem(f"reward_metadata amount {value!r} is not a number") from exc
    if not amount.is_finite() or amount <= 0:
        raise RouteProblem(f"reward_metadata amount {value!r} is not a positive number")
    if amount > MAX_METADATA_AMOUNT:
        raise RouteProblem(f"reward_metadata amount {value!r} is implausibly large")
    return amount


def route_from_metadata(metadata: Mapping[str, Any]) -> Route | None:
    """None when metadata names no vendor and amount; RouteProblem when it names some but
    they are unusable."""
    vendor = metadata.get("vendor")
    amount = metadata.get("amount", metadata.get("value"))
    product = metadata.get("product")
    if amount is None:
        return None  # at most a vendor or product: the config rule supplies the rest
    if not isinstance(vendor, str) or not vendor.strip():
        raise RouteProblem("reward_metadata has an amount but no vendor")
    currency = metadata.get("currency", "USD")
    # Parsing already upper-cased a valid code (and made anything else a problem that
    # holds the redemption); here only an exact ISO 4217 code passes.
    if not isinstance(currency, str) or currency not in MINOR_UNITS:
        raise RouteProblem(f"reward_metadata currency {currency!r} is not an ISO 4217 code")
    if product is not None and not isinstance(product, str | int):
        raise RouteProblem("reward_metadata product is not a string")
    return Route(vendor=vendor.strip().lower(),
                 product=None if product is None else str(product),
                 amount=_normal(_amount(amount), currency, "reward_metadata"),
                 currency=currency, origin="metadata")


def _normal(amount: Decimal, currency: str, where: str) -> Decimal:
    try:
        return normalise_amount(amount, currency)
    except CurrencyProblem as exc:
        raise RouteProblem(f"{where}: {exc}") from None


def route(redemption: Redemption, rules: Sequence[RewardRule]) -> Route | None:
    from_meta = route_from_metadata(redemption.metadata)
    if from_meta is not None:
        return from_meta
    for rule in rules:
        if rule.matches(redemption):
            return Route(vendor=rule.vendor, product=rule.product, currency=rule.currency,
                         amount=_normal(rule.amount, rule.currency, f"[[rewards]] {rule.label}"),
                         origin=f"config:{rule.label}")
    return None


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
