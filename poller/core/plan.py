"""``run --dry-run``: what the next cycle would do, worked out without doing any of it.

A separate path from the worker on purpose: the worker's every step writes the ledger first
(that is its delivery guarantee), so a "do not write" flag threaded through it would be a
flag on every line. This module reads instead: one poll (GET only), the ledger's read methods
(``get``, ``list``, ``spent_since``) and asks the very function the worker asks,
``poller.core.nextstep.next_step``, what each redemption's next step is. Nothing is
recorded, claimed, ordered or decided, so the next real run starts exactly where it would
have.

This module only presents: where the worker needs an answer it does not have yet (a vendor
lookup, Influitive's reply), the plan says what it would ask.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from poller.core.decide import SpendPolicy
from poller.core.nextstep import (
    Action as Next,
)
from poller.core.nextstep import (
    Due,
    Facts,
    Kind,
    Listing,
    Rules,
    facts_of,
    needs_payload,
    next_step,
)
from poller.core.routing import RewardRule
from poller.domain.model import LedgerEntry, PollResult, Redemption, UnreadablePayload
from poller.domain.states import ACTIVE, UNCONFIRMED, State

SCAN_LIMIT = 100_000

Action = Literal[
    "order", "hold", "refuse", "reconcile", "recheck", "fulfill", "close", "wait", "nothing",
    "reopen", "confirm", "skip",
]

LEASED = ("leased by a run in progress (or by one that ended without giving it back): the "
          "next run skips it until the lease runs out ([ledger] lease_seconds)")


class ReadLedger(Protocol):
    """The ledger's read methods the plan uses (and nothing that writes)."""

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None: ...

    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
    ) -> list[LedgerEntry]: ...

    def spent_since(self, currency: str, since: datetime) -> Decimal: ...

    def due(self, now: datetime, limit: int) -> builtins.list[LedgerEntry]: ...


class EmptyLedger:
    """The ledger of a first run, when there is no ledger file yet (none is created)."""

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None:
        return None

    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
    ) -> list[LedgerEntry]:
        return []

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        return Decimal(0)

    def due(self, now: datetime, limit: int) -> builtins.list[LedgerEntry]:
        return []


@dataclass(frozen=True, kw_only=True)
class Step:
    redemption_id: str
    source: str
    state: State | None
    """Where the ledger has it now; None: not recorded yet."""
    action: Action
    detail: str
    amount: Decimal | None = None
    currency: str | None = None


@dataclass(kw_only=True)
class Plan:
    seen: int
    complete: bool
    steps: list[Step] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for s in self.steps if s.action == action)

    def spend(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for s in self.steps:
            if s.action == "order" and s.amount is not None and s.currency:
                out[s.currency] = out.get(s.currency, Decimal(0)) + s.amount
        return out


@dataclass(frozen=True, kw_only=True)
class Planner:
    rules: Sequence[RewardRule]
    vendors: Collection[str]
    unmapped: Literal["hold", "refuse"]
    unmapped_reason: str
    spend: SpendPolicy = SpendPolicy()

    def plan(
        self, poll: PollResult, ledger: ReadLedger, now: datetime,
        each: Callable[[Iterable[Redemption]], Iterator[Redemption]] = iter,
    ) -> Plan:
        """``each`` wraps the loop over the polled redemptions (a progress bar)."""
        plan = Plan(seen=len(poll.redemptions), complete=poll.complete)
        planned: dict[str, Decimal] = {}
        polled: set[tuple[str, str]] = set()
        leased = _leased(ledger, now)
        listed = Due(listing=Listing.LISTED, before_poll=True)
        for redemption in each(poll.redemptions):
            key = (redemption.source, redemption.id)
            if key in polled:
                continue
            polled.add(key)
            entry = ledger.get(*key)
            if entry is None:
                facts = Facts(state=State.NEW, redemption=redemption,
                              spent_today=self._spent(ledger, now, planned))
                plan.steps.append(self._present(
                    facts, next_step(facts, listed, self._rules()), None, planned,
                    redemption_id=redemption.id, source=redemption.source))
            elif leased(entry):
                plan.steps.append(_step(entry, "skip", LEASED))
            else:
                plan.steps.append(self._present(
                    self._facts(entry, ledger, now, planned), listed, entry, planned))
        # A complete poll that does not list a row is what, repeated over enough polls,
        # makes it gone: the plan says what would then happen. A partial one proves nothing.
        unlisted = Due(listing=Listing.GONE if poll.complete else Listing.UNLISTED)
        rest = [e for e in ledger.list(states=ACTIVE | UNCONFIRMED | {State.HELD},
                                       limit=SCAN_LIMIT)
                if (e.source, e.redemption_id) not in polled]
        for entry in sorted(rest, key=lambda e: e.pk):
            facts = self._facts(entry, ledger, now, planned)
            action = next_step(facts, unlisted, self._rules())
            if action.kind in (Kind.NOTHING, Kind.WAIT):
                continue  # nothing a run would do about it now
            step = (_step(entry, "skip", LEASED) if leased(entry)
                    else self._present(facts, action, entry, planned))
            plan.steps.append(step)
        return plan

    def _rules(self) -> Rules:
        return Rules(rules=self.rules, vendors=self.vendors, unmapped=self.unmapped,
                     unmapped_reason=self.unmapped_reason, spend=self.spend)

    def _spent(self, ledger: ReadLedger, now: datetime,
               planned: dict[str, Decimal]) -> dict[str, Decimal]:
        """What is ordered today, this plan's orders included, in each limited currency."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return {c: ledger.spent_since(c, midnight) + planned.get(c, Decimal(0))
                for c in (self.spend.daily_limit or {})}

    def _facts(self, entry: LedgerEntry, ledger: ReadLedger, now: datetime,
               planned: dict[str, Decimal]) -> Facts:
        routed = needs_payload(entry)
        return facts_of(entry, polled=True, claimed=False, now=now,
                        redemption=_stored(entry) if routed else None,
                        spent_today=self._spent(ledger, now, planned) if routed else None)

    def _present(
        self, facts: Facts, decided: Next | Due, entry: LedgerEntry | None,
        planned: dict[str, Decimal], *, redemption_id: str = "", source: str = "",
    ) -> Step:
        """The step a run would take, in the dry run's words."""
        action = (next_step(facts, decided, self._rules()) if isinstance(decided, Due)
                  else decided)
        state = entry.state if entry is not None else None
        rid = entry.redemption_id if entry is not None else redemption_id
        src = entry.source if entry is not None else source
        kind = action.kind

        def step(label: Action, detail: str, **money: Decimal | str) -> Step:
            return Step(redemption_id=rid, source=src, state=state, action=label,
                        detail=detail, **money)  # type: ignore[arg-type]

        vendor, amount, currency = (
            (entry.vendor, entry.amount, entry.currency) if entry else (None, None, None))
        if kind is Kind.START_ORDER:
            r = action.route
            assert r is not None
            planned[r.currency] = planned.get(r.currency, Decimal(0)) + r.amount
            return step("order", f"{r.describe()}, then fulfil at Influitive",
                        amount=r.amount, currency=r.currency)
        if kind is Kind.HOLD_UNREADABLE:
            return step("hold", f"stored payload unreadable: {action.reason}")
        if kind in (Kind.HOLD, Kind.HOLD_SPEND, Kind.HOLD_UNFINISHED, Kind.HOLD_DISCREPANCY):
            return step("hold", action.reason)
        if kind is Kind.REFUSE:
            return step("refuse", f"refuse at Influitive: {action.reason}")
        if kind is Kind.REOPEN:
            back = action.to
            assert back is not None and state is not None
            what = {State.ORDERED: "send the fulfilment to Influitive again",
                    State.REFUSING: "send the refusal to Influitive again",
                    State.NEW: "work it like a new redemption (a saved key is looked up "
                               "first)"}.get(back, f"move it back to {back.value}")
            return step("reopen", f"{state.value}, yet Influitive still lists it: {what}")
        if kind is Kind.WAIT:
            if state is State.HELD:
                return step("wait", f"held for a person: {action.reason}")
            return step("wait", action.reason)
        if kind is Kind.LOOK_UP and action.gone:
            return step("reconcile",
                        f"missing from the outstanding list: look the order up at {vendor} by "
                        "its key; closed only if the vendor says there is none, once it has "
                        "been missing from enough complete polls")
        if kind is Kind.LOOK_UP:
            return step("reconcile",
                        f"look the order up at {vendor} by its key; if there is none, order "
                        f"{amount} {currency} again (attempt {facts.attempts + 1})")
        if kind is Kind.RECHECK:
            order = entry.vendor_order_id if entry else None
            return step("recheck", f"ask {vendor} about pending order {order}")
        if kind is Kind.FULFILL:
            order = entry.vendor_order_id if entry else None
            return step("fulfill", f"fulfil at Influitive (vendor order {order})")
        if kind is Kind.SEND_REFUSAL:
            return step("refuse", "send the refusal to Influitive")
        if kind is Kind.CLOSE:
            return step("close",
                        "missing from Influitive's outstanding list before it was ordered: "
                        "closed as decided elsewhere (never ordered) once it has been "
                        "missing from enough complete polls ([ledger] gone_after_polls)")
        if kind is Kind.CONFIRM:
            final = action.to
            assert final is not None
            return step("confirm",
                        f"missing from the list: becomes {final.value} once it has been "
                        "missing from enough complete polls ([ledger] gone_after_polls)")
        return step("nothing", "nothing to do until the next complete poll")


def _leased(ledger: ReadLedger, now: datetime) -> Callable[[LedgerEntry], bool]:
    """Whether a row is held by a live lease. The ledger hands the worker only due rows whose
    lease is free (``due``); a row in an active state, due by its time, that ``due`` leaves
    out is leased: a run would skip it, not look it up nor order it."""
    free = {e.pk for e in ledger.due(now, SCAN_LIMIT)}
    if len(free) >= SCAN_LIMIT:
        return lambda entry: False  # the read was cut short: absence proves nothing

    def leased(entry: LedgerEntry) -> bool:
        return (entry.state in ACTIVE and entry.pk not in free
                and (entry.next_attempt_at is None or entry.next_attempt_at <= now))

    return leased


def _step(entry: LedgerEntry, action: Action, detail: str) -> Step:
    return Step(redemption_id=entry.redemption_id, source=entry.source, state=entry.state,
                action=action, detail=detail)


def _stored(entry: LedgerEntry) -> Redemption | str:
    """The redemption the row recorded (read once, by its source, when it was recorded),
    or why its payload could not be read."""
    try:
        return entry.parsed()
    except UnreadablePayload as exc:
        return str(exc)
