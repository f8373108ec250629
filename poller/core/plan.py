"""``run --dry-run``: what the next cycle would do, worked out without doing any of it.

A separate path from the worker on purpose: the worker's every step writes the ledger first
(that is its delivery guarantee), so a "do not write" flag threaded through it would be a
flag on every line. This module reads instead: one poll (GET only), the ledger's read methods
(``get``, ``list``, ``spent_since``) and the same pure decision the worker takes
(``poller.core.decide.plan_intake`` and the spending guard). Nothing is recorded, claimed,
ordered or decided, so the next real run starts exactly where it would have.

The plan mirrors ``Worker._advance``; where the worker needs an answer it does not have yet
(a vendor lookup, Influitive's reply), the plan says what it would ask.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from poller.core.decide import Hold, Order, Refuse, SpendPolicy, plan_intake
from poller.core.routing import RewardRule
from poller.domain.model import LedgerEntry, PollResult, Redemption, UnreadablePayload
from poller.domain.states import ACTIVE, UNCONFIRMED, State, confirmed, reopen_to

BEFORE_ORDER = frozenset({State.NEW, State.WAITING, State.HELD, State.ORDERING})
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
        for redemption in each(poll.redemptions):
            key = (redemption.source, redemption.id)
            if key in polled:
                continue
            polled.add(key)
            entry = ledger.get(*key)
            if entry is None:
                plan.steps.append(self._intake(redemption, None, ledger, now, planned))
            elif leased(entry):
                plan.steps.append(_step(entry, "skip", LEASED))
            else:
                plan.steps.append(self._outstanding(entry, ledger, now, planned))
        rest = [e for e in ledger.list(states=ACTIVE | UNCONFIRMED | {State.HELD},
                                       limit=SCAN_LIMIT)
                if (e.source, e.redemption_id) not in polled]
        for entry in sorted(rest, key=lambda e: e.pk):
            step = self._not_polled(entry, complete=poll.complete, now=now)
            if step is not None and leased(entry):
                step = _step(entry, "skip", LEASED)
            if step is not None:
                plan.steps.append(step)
        return plan

    # --- redemptions in this poll ---------------------------------------------------------

    def _intake(
        self, redemption: Redemption, entry: LedgerEntry | None, ledger: ReadLedger,
        now: datetime, planned: dict[str, Decimal],
    ) -> Step:
        state = entry.state if entry else None

        def step(action: Action, detail: str, **money: Any) -> Step:
            return Step(redemption_id=redemption.id, source=redemption.source, state=state,
                        action=action, detail=detail, **money)

        decision = plan_intake(redemption, self.rules, unmapped=self.unmapped,
                               unmapped_reason=self.unmapped_reason, vendors=self.vendors)
        if isinstance(decision, Hold):
            return step("hold", decision.reason)
        if isinstance(decision, Refuse):
            return step("refuse", f"refuse at Influitive: {decision.reason}")
        assert isinstance(decision, Order)
        r = decision.route
        if entry is None or not entry.approved:
            reason = self.spend.precheck(r.amount, r.currency)
            limit = self.spend.daily(r.currency)
            if reason is None and limit is not None:
                midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
                spent = ledger.spent_since(r.currency, midnight) + planned.get(r.currency, 0)
                if spent + r.amount > limit:
                    reason = (f"spending guard: daily spend limit for {r.currency} reached: "
                              f"{spent} ordered today (this plan included) + {r.amount} "
                              f"would pass {limit}")
            if reason is not None:
                return step("hold", reason)
        planned[r.currency] = planned.get(r.currency, Decimal(0)) + r.amount
        return step(
            "order", f"{r.describe()}, then fulfil at Influitive",
            amount=r.amount, currency=r.currency,
        )

    def _outstanding(
        self, entry: LedgerEntry, ledger: ReadLedger, now: datetime,
        planned: dict[str, Decimal],
    ) -> Step:
        state = entry.state
        back = reopen_to(state, order_placed=entry.vendor_order_id is not None)
        if back is not None:
            # The poll is the truth for "still outstanding": a row the ledger has as finished
            # (or perhaps decided) that Influitive still lists is worked on again.
            what = {State.ORDERED: "send the fulfilment to Influitive again",
                    State.REFUSING: "send the refusal to Influitive again",
                    State.NEW: "work it like a new redemption (a saved key is looked up "
                               "first)"}.get(back, f"move it back to {back.value}")
            return _step(entry, "reopen",
                         f"{state.value}, yet Influitive still lists it: {what}")
        if state is State.HELD:
            reason = entry.hold_reason or "no reason recorded"
            return _step(entry, "wait", f"held for a person: {reason}")
        if entry.next_attempt_at is not None and entry.next_attempt_at > now:
            error = f" (last error: {entry.last_error})" if entry.last_error else ""
            return _step(entry, "wait",
                         f"next attempt at {entry.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC{error}")
        if state in (State.NEW, State.WAITING) and entry.idempotency_key is None:
            try:
                redemption = entry.parsed()
            except UnreadablePayload as exc:
                return _step(entry, "hold", f"stored payload unreadable: {exc}")
            return self._intake(redemption, entry, ledger, now, planned)
        return self._carry_on(entry)

    def _carry_on(self, entry: LedgerEntry) -> Step:
        state = entry.state
        if state in (State.NEW, State.WAITING, State.ORDERING):
            return _step(entry, "reconcile",
                         f"look the order up at {entry.vendor} by its key; if there is none, "
                         f"order {entry.amount} {entry.currency} again (attempt "
                         f"{entry.attempts + 1})")
        if state is State.PENDING:
            return _step(entry, "recheck",
                         f"ask {entry.vendor} about pending order {entry.vendor_order_id}")
        if state is State.ORDERED:
            return _step(entry, "fulfill",
                         f"fulfil at Influitive (vendor order {entry.vendor_order_id})")
        assert state is State.REFUSING
        return _step(entry, "refuse", "send the refusal to Influitive")

    # --- redemptions the ledger has and this poll did not list -----------------------------

    def _not_polled(self, entry: LedgerEntry, *, complete: bool, now: datetime) -> Step | None:
        final = confirmed(entry.state)
        if final is not None:
            if not complete:
                return None
            return _step(entry, "confirm",
                         f"missing from the list: becomes {final.value} once it has been "
                         "missing from enough complete polls ([ledger] gone_after_polls)")
        if entry.state in BEFORE_ORDER:
            if not complete:
                return None  # an incomplete poll proves nothing about absence
            if entry.idempotency_key is None:
                return _step(entry, "close",
                             "missing from Influitive's outstanding list before it was ordered: "
                             "closed as decided elsewhere (never ordered) once it has been "
                             "missing from enough complete polls ([ledger] gone_after_polls)")
            return _step(entry, "reconcile",
                         f"missing from the outstanding list: look the order up at "
                         f"{entry.vendor} by its key; closed only if the vendor says there is "
                         "none, once it has been missing from enough complete polls")
        if entry.next_attempt_at is not None and entry.next_attempt_at > now:
            return None
        if entry.state in (State.PENDING, State.ORDERED, State.REFUSING):
            return self._carry_on(entry)
        return None


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
