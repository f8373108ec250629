"""What the steps work with (``StepContext``, ``CycleReport``) and the steps that do not order:
recording a poll, reconciling with it, telling Influitive. Each carries out what
``poller.core.nextstep.next_step`` chose, in the order of writes of docs/delivery.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from poller.core.backoff import RetrySchedule
from poller.core.decide import SpendPolicy
from poller.core.nextstep import (
    BEFORE_ORDER,
    Action,
    DecisionAnswer,
    Event,
    Kind,
    Rules,
    facts_of,
    needs_payload,
    next_step,
)
from poller.domain.errors import (
    AlreadyDecided,
    ConfigError,
    ConfigFixable,
    OperatorFacingError,
    SourceAuthError,
    SourceBlocked,
    SourceUnavailable,
    VendorError,
    VendorUnreachable,
)
from poller.domain.messages import MessageTemplates
from poller.domain.model import (
    INFLUITIVE,
    LedgerEntry,
    OrderRequest,
    PollResult,
    Redemption,
    UnreadablePayload,
)
from poller.domain.states import TERMINAL, UNCONFIRMED, State
from poller.ports import (
    Changes,
    Decider,
    Ledger,
    RedemptionSource,
    SpendGuard,
    Vendor,
    read_pages,
)
from poller.worker import failpoints
from poller.worker.leases import LeaseKeeper

log = structlog.get_logger("poller.worker")

SOURCE_NAME = INFLUITIVE
NOT_DUE = frozenset({"next_attempt_at"})  # a held redemption waits for a person, not a time
RELEASED = TERMINAL | UNCONFIRMED  # a move into these is the step's last write
POLLED = frozenset({INFLUITIVE})  # a pushed source (Influence.io) is never polled

_FUNDS_WORDS = ("fund", "balance", "insufficient")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class OperatorProblem:
    """An operator-facing error a cycle met; ``kind``: ``credentials``, ``funds``,
    ``configuration``, ``firewall``, ``page_cap``, ``unreachable`` or ``other``."""

    who: str
    kind: str
    detail: str
    redemptions: int = 0

    @property
    def cause(self) -> str:
        return f"{self.who}.{self.kind}"


@dataclass(kw_only=True)
class CycleReport:
    poll_ok: bool = False  # False: the cycle could not do its job (``--run-once`` exits 1)
    poll_complete: bool = False
    seen: int = 0
    new: int = 0
    rejected: int = 0
    steps: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stopped_early: bool = False
    pages: int = 0
    problems: dict[str, OperatorProblem] = field(default_factory=dict)  # by ``cause``
    reasons: dict[str, int] = field(default_factory=dict)  # "<state>: <reason>" -> count
    released: int = 0  # claimed, then given back by a stop before the step's first call
    not_started: int = 0  # never claimed: a stop came first
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.poll_ok

    def problem(self, found: OperatorProblem, *, redemptions: int = 1) -> None:
        """``redemptions`` more wait on an operator-facing error (0: the poll met it)."""
        with self._lock:
            self.problems.setdefault(found.cause, found).redemptions += redemptions

    def left(self, entry: LedgerEntry) -> None:
        """Count why a redemption was left held or waiting."""
        if entry.state not in (State.HELD, State.WAITING):
            return
        reason = " ".join((entry.hold_reason or entry.last_error or "no reason").split())
        key = f"{entry.state.value}: {reason[:160]}"
        with self._lock:
            self.reasons[key] = self.reasons.get(key, 0) + 1

    def vendor_error(self, vendor: str, exc: VendorError) -> None:
        """Count an error a person must look at, by what they must fix (``run --run-once``
        exits 1 naming the vendor); any other vendor error is the schedule's to retry."""
        if isinstance(exc, VendorUnreachable):
            kind = "unreachable"
        elif not isinstance(exc, OperatorFacingError):
            return
        elif isinstance(exc, ConfigFixable):
            kind = "configuration"
        elif exc.status in (401, 403):
            kind = "credentials"
        elif exc.status == 402 or any(w in str(exc).lower() for w in _FUNDS_WORDS):
            kind = "funds"
        else:
            kind = "other"
        self.problem(OperatorProblem(who=exc.vendor or vendor, kind=kind, detail=str(exc)))

    def release(self) -> None:
        with self._lock:
            self.released += 1

    def stepped(self, state: State) -> None:
        with self._lock:
            self.steps += 1
            self.outcomes[state.value] = self.outcomes.get(state.value, 0) + 1


@dataclass(frozen=True, kw_only=True)
class WorkerPolicy:
    namespace: str  # the Influitive org id, mixed into idempotency keys
    schedule: RetrySchedule = RetrySchedule()
    lease_seconds: float = 300.0
    batch_size: int = 500
    unmapped: Literal["hold", "refuse"] = "hold"
    unavailable: Literal["refuse", "hold"] = "refuse"
    pending_recheck_seconds: float = 300.0
    concurrency: int = 1
    spend: SpendPolicy = SpendPolicy()
    gone_after_polls: int = 2
    heartbeat: bool = True  # renew the lease while a call is in flight (docs/delivery.md)


@dataclass(kw_only=True)
class StepContext:
    """One cycle's (or one operator command's) working set, shared by its threads."""

    ledger: Ledger
    vendor: Callable[[str], Vendor]
    deciders: Mapping[str, Decider]
    policy: WorkerPolicy
    rules: Rules
    messages: MessageTemplates
    owner: str
    clock: Callable[[], datetime]
    stop: threading.Event
    keeper: LeaseKeeper
    report: CycleReport

    def next(self, entry: LedgerEntry, event: Event, *, claimed: bool = True) -> Action:
        redemption: Redemption | str | None = None
        if needs_payload(entry):
            try:
                redemption = entry.parsed()
            except UnreadablePayload as exc:  # held, with why, by next_step
                redemption = str(exc)
        facts = facts_of(entry, polled=entry.source in POLLED, claimed=claimed,
                         redemption=redemption)
        return next_step(facts, event, self.rules)

    def move(
        self, entry: LedgerEntry, to: State, detail: str, changes: Changes | None = None,
        guard: SpendGuard | None = None,
    ) -> LedgerEntry:
        moved = self.ledger.transition(entry.pk, self.owner, to, detail, self.clock(), changes,
                                       expect=entry.state, guard=guard,
                                       release=to in RELEASED)
        log.debug("redemption.transition", from_state=entry.state.value, to_state=to.value,
                  detail=detail)
        return moved

    def hold(self, entry: LedgerEntry, reason: str, **changes: Any) -> LedgerEntry:
        """HELD for a person, no longer due at any time."""
        return self.move(entry, State.HELD, reason,
                         Changes(hold_reason=reason, clear=NOT_DUE, **changes))

    def stopping(self, before: str) -> bool:
        """A stop was asked for: no new call leaves for this redemption; the cycle gives its
        lease back and the next cycle resumes from what the ledger holds."""
        if not self.stop.is_set():
            return False
        log.info("redemption.stopping", reason=f"stopping before {before}")
        return True

    def released_before(self, before: str) -> bool:
        """``stopping`` before a step's first call: counted as released."""
        if not self.stopping(before):
            return False
        self.report.release()
        return True

    def heartbeat(self, entry: LedgerEntry) -> AbstractContextManager[None]:
        return self.keeper.held(entry.pk) if self.policy.heartbeat else nullcontext()

    def decider(self, entry: LedgerEntry) -> Decider:
        decider = self.deciders.get(entry.source)
        if decider is None:
            raise ConfigError(f"no decision endpoint configured for source {entry.source!r}")
        return decider

    def request(self, entry: LedgerEntry) -> OrderRequest:
        redemption = entry.parsed()
        assert entry.idempotency_key and entry.vendor and entry.amount and entry.currency
        return OrderRequest(
            idempotency_key=entry.idempotency_key, redemption_id=entry.redemption_id,
            source=entry.source, vendor=entry.vendor, product=entry.product,
            amount=entry.amount, currency=entry.currency,
            recipient_name=redemption.contact.display_name,
            recipient_email=redemption.contact.email or "",
            reward_name=redemption.reward_name, shipping=redemption.shipping,
        )

    def render(self, template: str, entry: LedgerEntry, **extra: str) -> str:
        try:
            contact = entry.parsed().contact
        except UnreadablePayload:
            contact = None
        values: Mapping[str, object] = {
            "reward_name": entry.reward_name or "reward",
            "recipient_name": contact.display_name if contact else "",
            "email": entry.email or "",
            "vendor": entry.vendor or "",
            "amount": entry.amount if entry.amount is not None else "",
            "currency": entry.currency or "",
            "redemption_id": entry.redemption_id,
            **extra,
        }
        return self.messages.render(template, values)


# --- recording ---------------------------------------------------------------------------


def poll(ctx: StepContext, source: RedemptionSource, poll_id: int) -> PollResult | None:
    """Read the outstanding list, recording each page in its own transaction as it arrives:
    memory stays flat, and a poll cut short leaves what it read workable. None when the poll
    failed; raises SourceAuthError."""
    ledger, clock, report = ctx.ledger, ctx.clock, ctx.report
    new = 0

    def record(page: Sequence[Redemption]) -> None:
        nonlocal new
        new += ledger.record(poll_id, page, clock())

    try:
        result = read_pages(source, record)
    except (SourceAuthError, SourceUnavailable) as exc:
        ledger.finish_poll(poll_id, clock(), ok=False, complete=False, seen=0, error=str(exc))
        if isinstance(exc, SourceAuthError):
            raise
        if isinstance(exc, SourceBlocked):
            report.problem(OperatorProblem(who=SOURCE_NAME, kind="firewall",
                                           detail=str(exc)), redemptions=0)
        # Said once, by whoever ran the cycle (cycle.failed, or run --run-once's last line).
        report.errors.append(f"poll failed: {exc}")
        return None
    failpoints.failpoint("after_record")
    ledger.finish_poll(poll_id, clock(), ok=True, complete=result.complete, seen=result.seen)
    for reason in result.rejected:
        log.warning("redemption.unrecordable", reason=reason)
    if not result.complete:
        log.warning("poll.incomplete", pages=result.pages)
    report.new, report.poll_ok, report.poll_complete = new, True, result.complete
    report.seen, report.rejected, report.pages = result.seen, len(result.rejected), result.pages
    return result


def hold(ctx: StepContext, entry: LedgerEntry, action: Action) -> LedgerEntry:
    """HOLD, HOLD_UNREADABLE or HOLD_UNFINISHED."""
    reason = action.reason
    if action.kind is Kind.HOLD_UNREADABLE:
        return ctx.move(entry, State.HELD, f"stored payload unreadable: {reason}",
                        Changes(hold_reason=reason))
    if action.kind is Kind.HOLD_UNFINISHED:
        log.error("redemption.unfinished.held", reason=reason)
        return ctx.hold(entry, reason, last_error=reason)
    assert action.kind is Kind.HOLD, action.kind
    log.warning("redemption.held", reason=reason)
    return ctx.move(entry, State.HELD, reason, Changes(hold_reason=reason))


# --- reconciling with a complete poll (docs/delivery.md) ----------------------------------


def select(ctx: StepContext, poll_id: int, started: datetime) -> tuple[list[int], list[int]]:
    """The rows a complete poll lists that the ledger has as finished since before it began,
    and the rows gone from enough complete polls."""
    listed = [e.pk for e in ctx.ledger.seen_since(poll_id, RELEASED)
              if e.source in POLLED and e.updated_at < started]
    gone = [e.pk for e in ctx.ledger.unseen_since(poll_id, BEFORE_ORDER | UNCONFIRMED,
                                                  polls=ctx.policy.gone_after_polls)
            if e.source in POLLED]
    return listed, gone


def reconcile(ctx: StepContext, entry: LedgerEntry, action: Action) -> LedgerEntry:
    """CONFIRM, REOPEN, HOLD_DISCREPANCY or CLOSE."""
    kind = action.kind
    assert action.to is not None
    if kind is Kind.CONFIRM:
        log.info("decision.confirmed", state=action.to.value)
        return ctx.move(entry, action.to, action.reason, Changes(clear=NOT_DUE))
    if kind is Kind.CLOSE:
        return ctx.move(entry, State.CLOSED_UPSTREAM, action.reason)
    if kind is Kind.HOLD_DISCREPANCY:
        log.error("discrepancy.held", reason=action.reason)
        return ctx.hold(entry, action.reason, attempts=action.attempts)
    assert kind is Kind.REOPEN, kind
    if action.to is State.NEW:
        log.warning("redemption.reopened")
        return ctx.move(entry, State.NEW, action.reason,
                        Changes(clear=frozenset({"hold_reason", "next_attempt_at"})))
    assert action.attempts is not None
    when = ctx.policy.schedule.next_at(ctx.clock(), action.attempts)
    log.warning("discrepancy.found", was=entry.state.value, attempts=action.attempts,
                next_attempt_at=when.isoformat())
    return ctx.move(entry, action.to, action.reason,
                    Changes(attempts=action.attempts, next_attempt_at=when))


# --- telling Influitive ------------------------------------------------------------------


def refuse_routed(ctx: StepContext, entry: LedgerEntry, reason: str) -> LedgerEntry:
    """REFUSE: its rule refuses the redemption; the refusal is committed, then sent."""
    message = ctx.render(ctx.messages.refused, entry, reason=reason)
    entry = ctx.move(entry, State.REFUSING, f"refusing: {reason}", Changes(message=message))
    if ctx.stopping("sending the refusal"):
        return entry
    return refuse(ctx, entry)


def fulfill(ctx: StepContext, entry: LedgerEntry) -> LedgerEntry:
    message = entry.message or ctx.render(ctx.messages.fulfilled, entry)
    return _send(ctx, entry, lambda d: d.fulfill(entry.redemption_id, message))


def refuse(ctx: StepContext, entry: LedgerEntry) -> LedgerEntry:
    message = entry.message or ""
    return _send(ctx, entry, lambda d: d.refuse(entry.redemption_id, message))


def _send(ctx: StepContext, entry: LedgerEntry, call: Callable[[Decider], None]) -> LedgerEntry:
    try:
        with ctx.heartbeat(entry):
            call(ctx.decider(entry))
    except AlreadyDecided as exc:
        answer = DecisionAnswer(outcome="perhaps", error=str(exc))
    except SourceUnavailable as exc:
        if isinstance(exc, SourceBlocked):
            ctx.report.problem(OperatorProblem(who=SOURCE_NAME, kind="firewall",
                                               detail=str(exc)))
        answer = DecisionAnswer(outcome="failed", error=str(exc), retry_after=exc.retry_after)
    else:
        failpoints.failpoint("after_decision")
        answer = DecisionAnswer(outcome="taken")
    action = ctx.next(entry, answer)
    kind, to = action.kind, action.to
    assert to is not None
    if kind is Kind.DECISION_HOLD:
        log.error("decision.exhausted", error=answer.error)
        return ctx.hold(entry, action.reason, attempts=action.attempts, last_error=answer.error)
    if kind is Kind.DECISION_RETRY:
        assert action.attempts is not None
        when = ctx.policy.schedule.next_at(ctx.clock(), action.attempts, action.retry_after)
        log.warning("decision.retry", error=answer.error, attempts=action.attempts)
        return ctx.move(entry, to, action.reason, Changes(
            attempts=action.attempts, next_attempt_at=when, last_error=answer.error))
    if kind is Kind.FULFILLED:
        log.info("decision.fulfilled", vendor_order_id=entry.vendor_order_id)
        return ctx.move(entry, to, action.reason,
                        Changes(clear=frozenset({"next_attempt_at", "last_error"})))
    if kind is Kind.REFUSED:
        log.info("decision.refused")
    elif kind is Kind.PERHAPS:
        log.warning("decision.perhaps_decided", error=answer.error,
                    vendor_order_id=entry.vendor_order_id)
    else:
        assert kind is Kind.DECIDED, kind
    error = answer.error if kind is Kind.PERHAPS else None
    return ctx.move(entry, to, action.reason, Changes(last_error=error, clear=NOT_DUE))
