"""``run --dry-run``: what the next cycle would do, worked out without doing any of it.

A separate path from the worker on purpose: the worker writes the ledger before every step
(its delivery guarantee), so a "do not write" flag would be a flag on every line. This reads
instead (one poll, GET only; the ledger's ``get``, ``list``, ``spent_since``, ``due``) and
asks ``next_step``, the function the worker asks, what each redemption's next step is; where
the worker would need an answer it does not have yet, the plan says what it would ask.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from poller.core.decide import RewardRule, SpendPolicy
from poller.core.nextstep import (
    Action,
    Due,
    Facts,
    Kind,
    Listing,
    Rules,
    facts_of,
    needs_payload,
    next_step,
)
from poller.domain.model import LedgerEntry, PollResult, Redemption, UnreadablePayload
from poller.domain.states import ACTIVE, UNCONFIRMED, State

SCAN_LIMIT = 100_000

Label = Literal[
    "order", "hold", "refuse", "reconcile", "recheck", "fulfill", "close", "wait", "nothing",
    "reopen", "confirm", "skip",
]

LEASED = ("leased by a run in progress (or by one that ended without giving it back): the "
          "next run skips it until the lease runs out ([ledger] lease_seconds)")

_GONE_AFTER = "once it has been missing from enough complete polls"

# What a dry run says for an action: its label, and its detail with the action's and the
# row's fields filled in.
_SAID: dict[Kind, tuple[Label, str]] = {
    Kind.HOLD_UNREADABLE: ("hold", "stored payload unreadable: {reason}"),
    **dict.fromkeys((Kind.HOLD, Kind.HOLD_SPEND, Kind.HOLD_UNFINISHED, Kind.HOLD_DISCREPANCY),
                    ("hold", "{reason}")),
    Kind.REFUSE: ("refuse", "refuse at Influitive: {reason}"),
    Kind.WAIT: ("wait", "{held}{reason}"),
    Kind.REOPEN: ("reopen", "{state}, yet Influitive still lists it: {reopened}"),
    Kind.LOOK_UP: ("reconcile", "look the order up at {vendor} by its key; if there is none, "
                                "order {amount} {currency} again (attempt {attempt})"),
    Kind.RECHECK: ("recheck", "ask {vendor} about pending order {order}"),
    Kind.FULFILL: ("fulfill", "fulfil at Influitive (vendor order {order})"),
    Kind.SEND_REFUSAL: ("refuse", "send the refusal to Influitive"),
    Kind.CLOSE: ("close", "missing from Influitive's outstanding list before it was ordered: "
                          f"closed as decided elsewhere (never ordered) {_GONE_AFTER} "
                          "([ledger] gone_after_polls)"),
    Kind.CONFIRM: ("confirm", f"missing from the list: becomes {{to}} {_GONE_AFTER} "
                              "([ledger] gone_after_polls)"),
}

_GONE_LOOK_UP: tuple[Label, str] = (
    "reconcile", "missing from the outstanding list: look the order up at {vendor} by its key; "
                 f"closed only if the vendor says there is none, {_GONE_AFTER}")

_REOPENED: dict[State | None, str] = {
    State.ORDERED: "send the fulfilment to Influitive again",
    State.REFUSING: "send the refusal to Influitive again",
    State.NEW: "work it like a new redemption (a saved key is looked up first)",
}


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
    action: Label
    detail: str


@dataclass(kw_only=True)
class Plan:
    seen: int
    complete: bool
    steps: list[Step] = field(default_factory=list)
    ordered: dict[str, Decimal] = field(default_factory=dict)  # by currency

    def count(self, action: Label) -> int:
        return sum(1 for s in self.steps if s.action == action)

    def spend(self) -> dict[str, Decimal]:
        return dict(self.ordered)


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
        planned = plan.ordered
        polled: set[tuple[str, str]] = set()
        leased = _leased(ledger, now)
        rules = Rules(rules=self.rules, vendors=self.vendors, unmapped=self.unmapped,
                      unmapped_reason=self.unmapped_reason, spend=self.spend)
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
                blank = Step(redemption_id=redemption.id, source=redemption.source,
                             state=None, action="nothing", detail="")
            elif leased(entry):
                plan.steps.append(_step(entry, "skip", LEASED))
                continue
            else:
                facts = self._facts(entry, ledger, now, planned)
                blank = _step(entry, "nothing", "")
            plan.steps.append(_present(facts, next_step(facts, listed, rules), planned, blank,
                                       entry))
        # A complete poll that does not list a row is what, repeated over enough polls,
        # makes it gone: the plan says what would then happen. A partial one proves nothing.
        unlisted = Due(listing=Listing.GONE if poll.complete else Listing.UNLISTED)
        rest = [e for e in ledger.list(states=ACTIVE | UNCONFIRMED | {State.HELD},
                                       limit=SCAN_LIMIT)
                if (e.source, e.redemption_id) not in polled]
        for entry in sorted(rest, key=lambda e: e.pk):
            facts = self._facts(entry, ledger, now, planned)
            action = next_step(facts, unlisted, rules)
            if action.kind in (Kind.NOTHING, Kind.WAIT):
                continue  # nothing a run would do about it now
            plan.steps.append(
                _step(entry, "skip", LEASED) if leased(entry)
                else _present(facts, action, planned, _step(entry, "nothing", ""), entry))
        return plan

    def _spent(self, ledger: ReadLedger, now: datetime,
               planned: dict[str, Decimal]) -> dict[str, Decimal]:
        """What is ordered today, this plan's orders included, in each limited currency."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return {c: ledger.spent_since(c, midnight) + planned.get(c, Decimal(0))
                for c in (self.spend.daily_limit or {})}

    def _facts(self, entry: LedgerEntry, ledger: ReadLedger, now: datetime,
               planned: dict[str, Decimal]) -> Facts:
        routed = needs_payload(entry)
        try:
            stored: Redemption | str | None = entry.parsed() if routed else None
        except UnreadablePayload as exc:  # held, with why, by next_step
            stored = str(exc)
        return facts_of(entry, polled=True, claimed=False, now=now, redemption=stored,
                        spent_today=self._spent(ledger, now, planned) if routed else None)


def _present(facts: Facts, action: Action, planned: dict[str, Decimal], blank: Step,
             entry: LedgerEntry | None = None) -> Step:
    """The step a run would take, in the dry run's words; ``blank`` names the row."""
    kind = action.kind
    if kind is Kind.START_ORDER:
        r = action.route
        assert r is not None
        planned[r.currency] = planned.get(r.currency, Decimal(0)) + r.amount
        return replace(blank, action="order", detail=f"{r.describe()}, then fulfil at Influitive")
    if kind not in _SAID:
        return replace(blank, detail="nothing to do until the next complete poll")
    label, detail = _GONE_LOOK_UP if kind is Kind.LOOK_UP and action.gone else _SAID[kind]
    return replace(blank, action=label, detail=detail.format(
        reason=action.reason, to=action.to.value if action.to else "",
        state=blank.state.value if blank.state else "", reopened=_REOPENED.get(action.to, ""),
        held="held for a person: " if blank.state is State.HELD else "",
        vendor=entry.vendor if entry else None, amount=entry.amount if entry else None,
        currency=entry.currency if entry else None, attempt=facts.attempts + 1,
        order=entry.vendor_order_id if entry else None))

def _leased(ledger: ReadLedger, now: datetime) -> Callable[[LedgerEntry], bool]:
    """Whether a row is held by a live lease: in an active state, due by its time, and left
    out of ``due`` (which hands the worker only rows whose lease is free)."""
    free = {e.pk for e in ledger.due(now, SCAN_LIMIT)}
    if len(free) >= SCAN_LIMIT:
        return lambda entry: False  # the read was cut short: absence proves nothing

    def leased(entry: LedgerEntry) -> bool:
        return (entry.state in ACTIVE and entry.pk not in free
                and (entry.next_attempt_at is None or entry.next_attempt_at <= now))

    return leased


def _step(entry: LedgerEntry, action: Label, detail: str) -> Step:
    return Step(redemption_id=entry.redemption_id, source=entry.source, state=entry.state,
                action=action, detail=detail)
