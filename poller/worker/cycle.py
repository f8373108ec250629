"""One worker cycle: poll, record, then carry every due redemption one step further.

The order of writes is the delivery guarantee (docs/delivery.md):

1. a redemption is recorded before anything is done with it;
2. its idempotency key and the ORDERING state are committed before the vendor is called;
3. the vendor's answer is committed (ORDERED/PENDING/REFUSING/WAITING) before Influitive is told;
4. FULFILLED/REFUSED is committed only after Influitive accepted the decision; an answer
   that does not say whether it took effect (404/409/422) is PERHAPS_FULFILLED/REFUSED,
   settled by the next complete polls.

After a complete poll the ledger is held against the outstanding list (``_reconcile``):
the poll is the truth for "still outstanding".

A crash between any two steps leaves a state from which the next cycle resumes; the vendor
is only ever asked again with the same key, and it creates nothing the second time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

import structlog

from poller.core.backoff import RetrySchedule
from poller.core.decide import (
    Hold,
    Order,
    Refuse,
    SpendPolicy,
    after_vendor_error,
    plan_intake,
)
from poller.core.routing import RewardRule
from poller.domain.errors import (
    AdvocateFacingError,
    AlreadyDecided,
    ConfigError,
    ConfigFixable,
    LookupUnavailable,
    OperatorFacingError,
    PollerError,
    ProductUnavailable,
    SourceAuthError,
    SourceBlocked,
    SourceUnavailable,
    VendorError,
    VendorUnreachable,
)
from poller.domain.keys import idempotency_key
from poller.domain.messages import MessageTemplates
from poller.domain.model import (
    INFLUITIVE,
    LedgerEntry,
    OrderRequest,
    OrderResult,
    OrderStatus,
    PollResult,
    Redemption,
    UnreadablePayload,
)
from poller.domain.states import (
    TERMINAL,
    UNCONFIRMED,
    State,
    can_transition,
    confirmed,
    reopen_to,
)
from poller.ports import (
    Changes,
    Decider,
    LeaseLost,
    Ledger,
    RedemptionSource,
    SpendGuard,
    SpendLimitReached,
    Vendor,
    read_pages,
)
from poller.worker.failpoints import failpoint
from poller.worker.leases import LeaseKeeper

log = structlog.get_logger("poller.worker")

# A held redemption waits for a person, not for a time.
_NOT_DUE = frozenset({"next_attempt_at"})

# States in which no vendor order is known to exist: a redemption that leaves the
# outstanding list while in one of them is closed, never ordered.
BEFORE_ORDER = frozenset({State.NEW, State.WAITING, State.HELD, State.ORDERING})

# A step that moves a redemption into one of these has nothing left to do on it.
_RELEASED = TERMINAL | UNCONFIRMED


def utcnow() -> datetime:
    return datetime.now(UTC)


_current = threading.local()
"""The report of the cycle a worker thread is stepping for (set by ``Worker._step``), so the
error paths deep in a step can count an operator-facing problem into it."""


def _note(problem: OperatorProblem) -> None:
    report = getattr(_current, "report", None)
    if isinstance(report, CycleReport):
        report.problem(problem)


def _note_released() -> None:
    report = getattr(_current, "report", None)
    if isinstance(report, CycleReport):
        with report._lock:
            report.released += 1


@dataclass(frozen=True, kw_only=True)
class WorkerPolicy:
    namespace: str
    """Mixed into idempotency keys: the Influitive org id."""
    schedule: RetrySchedule = RetrySchedule()
    lease_seconds: float = 300.0
    batch_size: int = 500
    unmapped: Literal["hold", "refuse"] = "hold"
    unavailable: Literal["refuse", "hold"] = "refuse"
    """A product the vendor will not sell although its catalog lists it: refused, or held
    for a person (``[fulfillment] unavailable_reward``)."""
    pending_recheck_seconds: float = 300.0
    concurrency: int = 1
    """Threads working the due redemptions of a cycle; 1 works them one after another."""
    spend: SpendPolicy = SpendPolicy()
    gone_after_polls: int = 2
    """Complete polls (separate cycles) a redemption must be missing from before it counts
    as decided elsewhere (``[ledger] gone_after_polls``)."""
    heartbeat: bool = True
    """Renew the lease while a vendor or Influitive call is in flight, so a call slower
    than ``lease_seconds`` does not hand the row to the next cycle mid-call."""


@dataclass(frozen=True, kw_only=True)
class Sighting:
    """What a step may conclude from this cycle's poll: a row whose ``last_seen_poll`` is
    ``poll_id`` or later is still outstanding; ``gone`` marks the rows the ledger found
    missing from enough complete polls; ``started`` is when the poll began reading."""

    poll_id: int
    started: datetime
    gone: bool = False


SOURCE_NAME = "influitive"

_FUNDS_WORDS = ("fund", "balance", "insufficient")


@dataclass(kw_only=True)
class OperatorProblem:
    """An operator-facing error a cycle met: who (a vendor's name, or ``influitive``), what
    kind (``credentials``, ``funds``, ``configuration``, ``firewall``, ``page_cap``,
    ``other``), the error's text, and how many redemptions wait on it in this cycle."""

    who: str
    kind: str
    detail: str
    redemptions: int = 0

    @property
    def cause(self) -> str:
        return f"{self.who}.{self.kind}"


def note_vendor_error(vendor: str, exc: VendorError) -> None:
    """Count a vendor error a person must look at into the cycle's report: an
    operator-facing one, or a vendor that could not be reached at all (the redemption
    waits either way; ``run --run-once`` exits 1 naming the vendor)."""
    if isinstance(exc, OperatorFacingError):
        _note(vendor_problem(vendor, exc))
    elif isinstance(exc, VendorUnreachable):
        _note(OperatorProblem(who=exc.vendor or vendor, kind="unreachable", detail=str(exc)))


def vendor_problem(vendor: str, exc: OperatorFacingError) -> OperatorProblem:
    """Classify an operator-facing vendor error by what the operator must fix."""
    text = str(exc).lower()
    if isinstance(exc, ConfigFixable):
        kind = "configuration"
    elif exc.status in (401, 403):
        kind = "credentials"
    elif exc.status == 402 or any(w in text for w in _FUNDS_WORDS):
        kind = "funds"
    else:
        kind = "other"
    return OperatorProblem(who=exc.vendor or vendor, kind=kind, detail=str(exc))


@dataclass(kw_only=True)
class CycleReport:
    poll_ok: bool = False
    poll_complete: bool = False
    seen: int = 0
    new: int = 0
    rejected: int = 0
    steps: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stopped_early: bool = False
    pages: int = 0
    """Pages the poll read (with ``poll_complete`` False and the page cap reached, the poll
    stopped at ``[influitive] max_pages``)."""
    problems: dict[str, OperatorProblem] = field(default_factory=dict)
    """Operator-facing errors met, by cause (``OperatorProblem.cause``)."""
    reasons: dict[str, int] = field(default_factory=dict)
    """``"<state>: <reason>"`` -> redemptions left held or waiting for that reason."""
    released: int = 0
    """Redemptions a stop caught after their claim and before their step's first call (the
    vendor's or Influitive's): nothing was sent, their lease was given back, the next cycle
    takes them at once."""
    not_started: int = 0
    """Redemptions a stop left untouched (never claimed) in this cycle."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """The worker threads of one cycle count into the same report."""

    @property
    def ok(self) -> bool:
        """False when the cycle could not do its job (``--run-once`` exits 1)."""
        return self.poll_ok

    def count(self, state: State) -> None:
        with self._lock:
            self.outcomes[state.value] = self.outcomes.get(state.value, 0) + 1

    def problem(self, found: OperatorProblem, *, redemptions: int = 1) -> None:
        """``redemptions`` more wait on an operator-facing error (0: the poll met it)."""
        with self._lock:
            known = self.problems.setdefault(found.cause, found)
            known.redemptions += redemptions

    def left(self, entry: LedgerEntry) -> None:
        """Count why a redemption was left held or waiting."""
        if entry.state not in (State.HELD, State.WAITING):
            return
        reason = " ".join((entry.hold_reason or entry.last_error or "no reason").split())
        key = f"{entry.state.value}: {reason[:160]}"
        with self._lock:
            self.reasons[key] = self.reasons.get(key, 0) + 1

    def stepped(self, state: State) -> None:
        """One redemption moved on, to ``state``."""
        with self._lock:
            self.steps += 1
            self.outcomes[state.value] = self.outcomes.get(state.value, 0) + 1


class Worker:
    def __init__(
        self,
        *,
        source: RedemptionSource,
        ledger: Ledger,
        vendors: Callable[[str], Vendor],
        vendor_names: Collection[str],
        rules: Sequence[RewardRule],
        policy: WorkerPolicy,
        messages: MessageTemplates = MessageTemplates(),
        owner: str,
        clock: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
        deciders: Mapping[str, Decider] | None = None,
    ) -> None:
        self.source = source
        # Who is told the outcome, per source; the polled source by default. A pushed source
        # (Influence.io) brings its own, which may have nothing to tell.
        self.deciders: dict[str, Decider] = {INFLUITIVE: source, **(deciders or {})}
        self.polled_sources = frozenset({INFLUITIVE})
        self.ledger = ledger
        self._vendor = vendors
        self._vendor_names = frozenset(vendor_names)
        self.rules = list(rules)
        self.policy = policy
        self.messages = messages
        self.owner = owner
        self.clock = clock
        self.stop = stop or threading.Event()
        self.on_progress: Callable[[int, int], None] | None = None
        """Called with (done, total) after each redemption of a batch (progress display)."""
        self._keeper = LeaseKeeper(self._renew, policy.lease_seconds / 3)

    # --- the cycle -----------------------------------------------------------------------

    def run_cycle(self) -> CycleReport:
        """Poll once, then work every due redemption one step. Raises SourceAuthError (the
        run cannot do its job) and ledger errors (the database is unreachable)."""
        report = CycleReport()
        # On the ledger's clock: the reconciliation compares it with the times the ledger
        # stored (``updated_at``), which other workers' moves wrote.
        started = self.ledger.now(self.clock())
        poll_id = self.ledger.start_poll(started)
        poll = self._poll(poll_id, report)
        sighting = None if poll is None else Sighting(poll_id=poll_id, started=started)
        if poll is not None and poll.complete:
            self._reconcile(poll_id, started, report)
        # The rows as ``due`` read them: a new redemption's first step is planned from them
        # and its claim folded into saving the key (``_claim_ordering``).
        due = self.ledger.due(self.clock(), self.policy.batch_size)
        self._dispatch(due, sighting, report)
        log.info(
            "cycle.finished", poll_ok=report.poll_ok, complete=report.poll_complete,
            seen=report.seen, new=report.new, steps=report.steps, outcomes=report.outcomes,
        )
        return report

    def _reconcile(self, poll_id: int, started: datetime, report: CycleReport) -> None:
        """After a complete poll: hold the ledger against the outstanding list.

        * Listed, but finished (or unconfirmed) in the ledger since before this poll began:
          a discrepancy; the poll is the truth for "still outstanding", so the row is
          reopened (``_reopen``).
        * Not listed by ``gone_after_polls`` complete polls (separate cycles), while no
          order is known, or while a decision is unconfirmed: gone. One empty or short read
          is never enough: Influitive's list can come back empty for a moment, and a poll
          that pages by offset can miss an item decided while it read.
        """
        sighting = Sighting(poll_id=poll_id, started=started)
        polled = self.polled_sources
        listed = [e.pk for e in self.ledger.seen_since(poll_id, TERMINAL | UNCONFIRMED)
                  if e.source in polled and e.updated_at < started]
        if listed:
            self._dispatch(listed, sighting, report)
        gone = [e.pk for e in self.ledger.unseen_since(
                    poll_id, BEFORE_ORDER | UNCONFIRMED, polls=self.policy.gone_after_polls)
                if e.source in polled]
        if gone:
            self._dispatch(gone, replace(sighting, gone=True), report)

    def process(self, pk: int) -> LedgerEntry | None:
        """Work one redemption one step outside a cycle (for operator commands). Without a
        poll nothing is ordered: only decisions already taken are sent to Influitive."""
        self._step(pk, None, CycleReport())
        return self.ledger.get_pk(pk)

    def _dispatch(
        self, pks: Sequence[LedgerEntry | int], sighting: Sighting | None,
        report: CycleReport,
    ) -> None:
        """Work each redemption one step, on ``policy.concurrency`` threads (fewer when there
        are fewer redemptions).

        Each thread takes the next redemption only while no stop was asked for and no thread
        failed, so a SIGTERM lets the redemptions in hand finish and starts no new one. Each
        step still claims its row's lease first (``_step``): the lease, not the thread, is
        what keeps a redemption to one worker and one attempt per cycle. The first error a
        thread raised (SourceAuthError, an unreachable ledger) is raised here once every
        thread has finished the redemption it held.
        """
        pending = iter(pks)
        lock = threading.Lock()
        failures: list[BaseException] = []
        ran_out = threading.Event()  # nothing left to take: the stop is counted once
        taken = [0]

        def take() -> LedgerEntry | int | None:
            with lock:
                item: LedgerEntry | int | None = None
                if failures:
                    pass
                elif self.stop.is_set():
                    if not ran_out.is_set():
                        left = len(pks) - taken[0]
                        with report._lock:
                            report.not_started += left
                        if not report.stopped_early:
                            report.stopped_early = True
                            log.info("cycle.stopping", remaining=left)
                else:
                    item = next(pending, None)
                    if item is not None:
                        taken[0] += 1
                if item is None:
                    ran_out.set()
                return item

        done = [0]

        def steps() -> None:
            while (pk := take()) is not None:
                try:
                    self._step(pk, sighting, report)
                except BaseException as exc:
                    with lock:
                        failures.append(exc)
                    return
                if self.on_progress is not None:
                    with lock:
                        done[0] += 1
                        self.on_progress(done[0], len(pks))

        def work() -> None:
            try:
                steps()
            except BaseException as exc:
                with lock:
                    failures.append(exc)

        threads = min(self.policy.concurrency, len(pks))
        if threads <= 1:
            work()
        else:
            pool = [threading.Thread(target=work, name=f"poller-worker-{i}", daemon=True)
                    for i in range(threads)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
        if failures:
            raise failures[0]

    def _poll(self, poll_id: int, report: CycleReport) -> PollResult | None:
        """Read the outstanding list, recording each page as it arrives (a transaction per
        page, each marking its redemptions as seen by this poll): memory stays flat in the
        number outstanding, and a poll cut short still leaves what it read workable."""
        new = 0

        def record(page: Sequence[Redemption]) -> None:
            nonlocal new
            new += self.ledger.record(poll_id, page, self.clock())

        try:
            poll = read_pages(self.source, record)
        except SourceAuthError as exc:
            self.ledger.finish_poll(poll_id, self.clock(), ok=False, complete=False, seen=0,
                                    error=str(exc))
            raise
        except SourceUnavailable as exc:
            self.ledger.finish_poll(poll_id, self.clock(), ok=False, complete=False, seen=0,
                                    error=str(exc))
            if isinstance(exc, SourceBlocked):
                report.problem(OperatorProblem(who=SOURCE_NAME, kind="firewall",
                                               detail=str(exc)), redemptions=0)
            # Said once, by whoever ran the cycle: the daemon's cycle.failed line, or the
            # last line of ``run --run-once``.
            report.errors.append(f"poll failed: {exc}")
            return None
        report.new = new
        failpoint("after_record")
        self.ledger.finish_poll(poll_id, self.clock(), ok=True, complete=poll.complete,
                                seen=poll.seen)
        for reason in poll.rejected:
            log.warning("redemption.unrecordable", reason=reason)
        if not poll.complete:
            log.warning("poll.incomplete",
                        pages=poll.pages)
        report.poll_ok = True
        report.poll_complete = poll.complete
        report.seen = poll.seen
        report.rejected = len(poll.rejected)
        report.pages = poll.pages
        return poll

    # --- one redemption, one step ---------------------------------------------------------

    def _step(
        self, item: LedgerEntry | int, sighting: Sighting | None, report: CycleReport
    ) -> None:
        """One step on one redemption: ``item`` is its pk, or its row as ``due`` read it
        (which lets a new redemption's claim be folded into saving its key)."""
        pk = item.pk if isinstance(item, LedgerEntry) else item
        fresh = (self._claim_ordering(item, sighting) if isinstance(item, LedgerEntry)
                 else None)
        entry = fresh or self.ledger.claim(pk, self.owner, self.clock(),
                                           self.policy.lease_seconds)
        if entry is None:
            return  # another worker holds it
        _current.report = report
        bound = log.bind(redemption_id=entry.redemption_id, source=entry.source)
        final: LedgerEntry | None = None
        try:
            # Seen by this poll or by a later one: another worker polling at the same time
            # may have marked the row with its newer poll id.
            outstanding = (sighting is not None and entry.last_seen_poll is not None
                           and entry.last_seen_poll >= sighting.poll_id)
            gone = sighting is not None and sighting.gone and not outstanding
            if entry.source not in self.polled_sources:
                # Pushed (webhook) sources are not polled: stored means outstanding, and
                # nothing can tell that one went away.
                outstanding, gone = True, False
            # Bound for the adapters too: their warnings (vendor errors, lost answers) then
            # name the redemption, as the worker's own lines do.
            with structlog.contextvars.bound_contextvars(
                redemption_id=entry.redemption_id, source=entry.source
            ):
                if fresh is not None:
                    failpoint("after_key_saved")
                    final = self._order(entry, outstanding=True, gone=False, log=bound,
                                        fresh=True)
                elif self._never_finishes(entry):
                    final = self._hold_unfinished(entry, bound)
                else:
                    final = self._advance(entry, outstanding=outstanding, gone=gone,
                                          sighting=sighting, log=bound)
            if final is not None:
                report.stepped(final.state)
                report.left(final)
        except LeaseLost:
            bound.warning("redemption.lease.lost")
        except PollerError:
            raise  # infrastructure (ledger down, credentials, config): the cycle fails
        except Exception as exc:
            # A bug, or an answer nobody foresaw, in this redemption alone: it must not starve
            # every redemption after it, cycle after cycle. Held, with the reason, for a person.
            self._hold_after_crash(entry, exc, bound, report)
        finally:
            try:
                if final is None or final.state not in _RELEASED:
                    self.ledger.release(pk, self.owner)
            except Exception:  # the ledger may be what failed; the lease then simply expires
                bound.warning("redemption.lease.unreleased")

    def _claim_ordering(
        self, listed: LedgerEntry, sighting: Sighting | None
    ) -> LedgerEntry | None:
        """The happy path's first write: a new redemption still outstanding and orderable
        as its row was read is claimed and moved to ORDERING with its key in one
        transaction. None (nothing changed) whenever anything else applies: another worker
        has the row, it moved on, it is held, refused, over a spend limit, or its steps keep
        dying; the ordinary step (claim, then decide) then takes over and says why."""
        if (sighting is None or sighting.gone or listed.idempotency_key is not None
                or listed.state not in (State.NEW, State.WAITING)
                or listed.unfinished_steps >= self.policy.schedule.max_attempts):
            return None
        if listed.source in self.polled_sources and (
                listed.last_seen_poll is None or listed.last_seen_poll < sighting.poll_id):
            return None
        try:
            plan = plan_intake(
                self._parsed(listed), self.rules,
                unmapped=self.policy.unmapped, unmapped_reason=self.messages.unmapped_reason,
                vendors=self._vendor_names,
            )
            if not isinstance(plan, Order) or (
                    not listed.approved
                    and self.policy.spend.precheck(plan.route.amount,
                                                   plan.route.currency) is not None):
                return None
            detail, changes, guard = self._ordering_move(listed, plan)
            return self.ledger.claim_transition(
                listed.pk, self.owner, State.ORDERING, detail, self.clock(),
                self.policy.lease_seconds, changes, expect=listed.state, guard=guard)
        except PollerError:
            raise  # infrastructure: the cycle fails, as in the ordinary step
        except Exception:
            # A spend limit reached, a payload that cannot be planned, a bug: nothing was
            # written, and the ordinary step meets the same condition with the lease held.
            return None

    def _ordering_move(
        self, entry: LedgerEntry, plan: Order
    ) -> tuple[str, Changes, SpendGuard | None]:
        """The move to ORDERING (detail, changes, spend guard) of a redemption its rule
        orders and the spend precheck let through."""
        r = plan.route
        guard: SpendGuard | None = None
        if not entry.approved:
            limit = self.policy.spend.daily(r.currency)
            if limit is not None:
                now = self.clock()
                guard = SpendGuard(currency=r.currency, amount=r.amount, daily_limit=limit,
                                   since=now.replace(hour=0, minute=0, second=0, microsecond=0))
        key = idempotency_key(namespace=self.policy.namespace, source=entry.source,
                              redemption_id=entry.redemption_id)
        return (f"ordering {r.describe()}",
                Changes(idempotency_key=key, vendor=r.vendor, product=r.product,
                        amount=r.amount, currency=r.currency, ordered_at=self.clock()),
                guard)

    def _hold_after_crash(
        self, entry: LedgerEntry, exc: Exception, log: structlog.BoundLogger,
        report: CycleReport,
    ) -> None:
        reason = f"unexpected error while working it: {type(exc).__name__}: {exc}"
        log.error("redemption.crashed", error=reason,
                  exc_info=True)
        with report._lock:
            report.errors.append(f"redemption {entry.redemption_id}: {reason}")
        try:
            current = self.ledger.get_pk(entry.pk)
            if current is not None and can_transition(current.state, State.HELD):
                self.ledger.transition(entry.pk, self.owner, State.HELD, reason, self.clock(),
                                       Changes(hold_reason=reason, last_error=reason,
                                               clear=_NOT_DUE), expect=current.state)
        except Exception as again:  # leave it; the lease expires and the next cycle retries
            log.error("redemption.hold.failed", error=f"{type(again).__name__}")

    def _never_finishes(self, entry: LedgerEntry) -> bool:
        """Whether earlier steps on this row kept dying before they finished (the claim
        just made counts one more) often enough to stop trying."""
        earlier = entry.unfinished_steps - 1
        return (earlier >= self.policy.schedule.max_attempts
                and entry.state not in TERMINAL and entry.state is not State.HELD)

    def _hold_unfinished(
        self, entry: LedgerEntry, log: structlog.BoundLogger
    ) -> LedgerEntry | None:
        earlier = entry.unfinished_steps - 1
        reason = (f"{earlier} steps on it in a row never finished (the worker died, or its "
                  f"lease ran out during a slow call) while {entry.state.value}; held so it "
                  "is not tried for ever: check the vendor and Influitive, raise [ledger] "
                  "lease_seconds if calls are that slow, then `ledger retry`")
        log.error("redemption.unfinished.held", reason=reason)
        if not can_transition(entry.state, State.HELD):
            return None
        return self._move(entry, State.HELD, reason, log,
                          Changes(hold_reason=reason, last_error=reason, clear=_NOT_DUE))

    def _advance(
        self, entry: LedgerEntry, *, outstanding: bool, gone: bool,
        sighting: Sighting | None, log: structlog.BoundLogger,
    ) -> LedgerEntry | None:
        state = entry.state
        if state in TERMINAL or state in UNCONFIRMED:
            if gone and state in UNCONFIRMED:
                return self._confirm(entry, log)
            if (outstanding and sighting is not None and sighting.gone is False
                    and entry.updated_at < sighting.started):
                return self._reopen(entry, log)
            return None
        if state in (State.NEW, State.WAITING, State.HELD) and entry.idempotency_key is None:
            if gone:
                return self._move(entry, State.CLOSED_UPSTREAM,
                                  "left Influitive's outstanding list before it was ordered "
                                  "(decided by someone else)", log)
            if state is State.HELD or not outstanding:
                return None
            return self._intake(entry, log)
        if state in (State.NEW, State.WAITING, State.ORDERING, State.HELD):
            # A key exists: an order may exist. Reconcile by key before anything new.
            if state is State.HELD and not gone:
                return None
            return self._order(entry, outstanding=outstanding, gone=gone, log=log)
        if state in (State.PENDING, State.ORDERED, State.REFUSING) and self._released_before(
                log, "the vendor check or the decision"):
            return None
        if state is State.PENDING:
            return self._recheck_pending(entry, log, in_cycle=sighting is not None)
        if state is State.ORDERED:
            return self._fulfill(entry, log)
        if state is State.REFUSING:
            return self._refuse(entry, log)
        return None

    def _intake(self, entry: LedgerEntry, log: structlog.BoundLogger) -> LedgerEntry | None:
        try:
            redemption = self._parsed(entry)
        except UnreadablePayload as exc:
            return self._move(entry, State.HELD, f"stored payload unreadable: {exc}", log,
                              Changes(hold_reason=str(exc)))
        plan = plan_intake(
            redemption, self.rules, unmapped=self.policy.unmapped,
            unmapped_reason=self.messages.unmapped_reason, vendors=self._vendor_names,
        )
        if isinstance(plan, Hold):
            log.warning("redemption.held", reason=plan.reason)
            return self._move(entry, State.HELD, plan.reason, log,
                              Changes(hold_reason=plan.reason))
        if isinstance(plan, Refuse):
            message = self._render(self.messages.refused, entry, reason=plan.reason)
            entry = self._move(entry, State.REFUSING, f"refusing: {plan.reason}", log,
                               Changes(message=message))
            if self._stopping(log, "sending the refusal"):
                return entry
            return self._refuse(entry, log)
        assert isinstance(plan, Order)
        if not entry.approved:
            reason = self.policy.spend.precheck(plan.route.amount, plan.route.currency)
            if reason is not None:
                return self._spend_hold(entry, reason, log)
        detail, changes, guard = self._ordering_move(entry, plan)
        try:
            entry = self._move(entry, State.ORDERING, detail, log, changes, guard=guard)
        except SpendLimitReached as exc:
            return self._spend_hold(entry, f"spending guard: {exc}", log)
        failpoint("after_key_saved")
        return self._order(entry, outstanding=True, gone=False, log=log, fresh=True)

    def _spend_hold(
        self, entry: LedgerEntry, reason: str, log: structlog.BoundLogger
    ) -> LedgerEntry:
        log.warning("redemption.spend_guard.held", reason=reason)
        return self._move(entry, State.HELD, reason, log,
                          Changes(hold_reason=reason, clear=_NOT_DUE))

    def _order(
        self, entry: LedgerEntry, *, outstanding: bool, gone: bool,
        log: structlog.BoundLogger, fresh: bool = False,
    ) -> LedgerEntry | None:
        assert entry.idempotency_key and entry.vendor
        if not outstanding and not gone:
            return None  # the poll failed or was partial: do not order blindly
        if self._released_before(log, "the vendor call"):
            return None
        vendor = self._vendor(entry.vendor)
        attempts = entry.attempts + 1
        try:
            result: OrderResult | None = None
            if not fresh:
                try:
                    with self._heartbeat(entry, log):
                        result = vendor.lookup(entry.idempotency_key)
                except LookupUnavailable as exc:
                    # The vendor cannot say whether the first send took. The identical
                    # request may go again only while Influitive still lists the
                    # redemption (the vendor's idempotency makes it a repeat, not a second
                    # order); once it left the list, an order now would be one nobody wants.
                    if gone or not exc.idempotent_resend:
                        return self._hold_unconfirmable(entry, exc, log, gone=gone)
                    log.info("redemption.resend", reason=str(exc))
                if result is not None:
                    log.info("redemption.reconciled",
                             vendor_order_id=result.vendor_order_id)
            if result is None:
                if gone:
                    return self._move(entry, State.CLOSED_UPSTREAM,
                                      "left the outstanding list; the vendor confirms no order "
                                      "exists under its key", log)
                if self._released_before(log, "the vendor order"):
                    return None
                if entry.state is not State.ORDERING:
                    entry = self._move(entry, State.ORDERING,
                                       f"attempt {attempts}: ordering from {entry.vendor}", log)
                with self._heartbeat(entry, log):
                    result = vendor.place_order(self._request(entry))
        except VendorError as exc:
            failpoint("after_vendor_answer")
            return self._vendor_failed(entry, exc, attempts, log)
        failpoint("after_vendor_answer")
        return self._after_order(entry, result, log)

    def _stopping(self, log: structlog.BoundLogger, before: str) -> bool:
        """Whether a stop was asked for: then no new call leaves for this redemption. What
        it has reached is in the ledger already; ``_step`` gives its lease back, so the next
        cycle takes it at once, with no attempt counted (its key, if saved, is looked up
        first there, as after any interruption). Once a stop is asked for, the Influitive
        request budget sends nothing either (``poller.core.budget``)."""
        if not self.stop.is_set():
            return False
        log.info("redemption.stopping", reason=f"stopping before {before}")
        return True

    def _released_before(self, log: structlog.BoundLogger, before: str) -> bool:
        """``_stopping`` at the start of a step's first call: the step ends with nothing
        done, counted as released."""
        if not self._stopping(log, before):
            return False
        _note_released()
        return True

    def _after_order(
        self, entry: LedgerEntry, result: OrderResult, log: structlog.BoundLogger
    ) -> LedgerEntry:
        if result.status is OrderStatus.PENDING:
            when = self.clock().timestamp() + self.policy.pending_recheck_seconds
            return self._move(
                entry, State.PENDING,
                f"vendor order {result.vendor_order_id} accepted, not final yet "
                f"({result.detail or 'pending'})", log,
                Changes(vendor_order_id=result.vendor_order_id,
                        next_attempt_at=datetime.fromtimestamp(when, UTC)),
            )
        if result.status is OrderStatus.NEEDS_PERSON:
            reason = f"vendor order {result.vendor_order_id} needs a person " \
                     f"({result.detail or 'not delivered'})"
            log.error("redemption.needs_person", reason=reason)
            return self._move(entry, State.HELD, reason, log,
                              Changes(vendor_order_id=result.vendor_order_id,
                                      hold_reason=reason, clear=_NOT_DUE))
        if result.status is OrderStatus.FAILED:
            reason = f"vendor order {result.vendor_order_id} failed at the vendor " \
                     f"({result.detail or 'failed'})"
            log.error("redemption.order_failed", reason=reason)
            return self._move(entry, State.HELD, reason, log,
                              Changes(vendor_order_id=result.vendor_order_id,
                                      hold_reason=reason, clear=_NOT_DUE))
        message = self._render(self.messages.fulfilled, entry, delivery=result.delivery)
        entry = self._move(
            entry, State.ORDERED, f"vendor order {result.vendor_order_id} placed", log,
            Changes(vendor_order_id=result.vendor_order_id, message=message, clear=frozenset(
                {"next_attempt_at", "last_error"})),
        )
        # The vendor adapter logs the placed order (vendor_order_placed); one event per order.
        failpoint("after_ordered")
        if self._stopping(log, "telling Influitive"):
            return entry  # ordered, recorded: the next cycle sends the fulfilment
        return self._fulfill(entry, log)

    def _vendor_failed(
        self, entry: LedgerEntry, exc: VendorError, attempts: int, log: structlog.BoundLogger
    ) -> LedgerEntry:
        after = after_vendor_error(exc, attempts=attempts,
                                   max_attempts=self.policy.schedule.max_attempts,
                                   unavailable=self.policy.unavailable,
                                   unavailable_reason=self._render(
                                       self.messages.unavailable_reason, entry))
        note_vendor_error(entry.vendor or "", exc)
        if isinstance(exc, ProductUnavailable) and after.state is State.HELD:
            # Held by choice, for a person to decide on the money: the run says so.
            _note(OperatorProblem(who=entry.vendor or "", kind="other", detail=str(exc)))
        kind = type(exc).__name__
        if after.state is State.REFUSING:
            log.warning("redemption.refusing", error=str(exc))
            message = self._render(self.messages.refused, entry, reason=after.reason)
            entry = self._move(entry, State.REFUSING, f"vendor refused: {exc}", log,
                               Changes(message=message, attempts=attempts, last_error=str(exc)))
            if self._stopping(log, "sending the refusal"):
                return entry
            return self._refuse(entry, log)
        if after.state is State.HELD:
            log.error("redemption.vendor.held", error=str(exc),
                      attempts=attempts, error_class=kind)
            return self._move(entry, State.HELD, after.reason, log,
                              Changes(attempts=attempts, hold_reason=after.reason,
                                      last_error=str(exc), clear=_NOT_DUE))
        when = self.policy.schedule.next_at(self.clock(), attempts, after.retry_after)
        (log.error if after.operator else log.warning)(
            "redemption.vendor.retry", error=str(exc), error_class=kind,
            attempts=attempts, next_attempt_at=when.isoformat(),
        )
        return self._move(entry, State.WAITING, after.reason, log,
                          Changes(attempts=attempts, next_attempt_at=when, last_error=str(exc)))

    def _hold_unconfirmable(
        self, entry: LedgerEntry, exc: LookupUnavailable, log: structlog.BoundLogger, *,
        gone: bool,
    ) -> LedgerEntry | None:
        """Held for a person: the vendor cannot look the order up, and sending the request
        again is not allowed (the redemption left the list, or the vendor promises no
        idempotency). Counted as an operator problem, so ``run --run-once`` exits 1."""
        why = ("the redemption has left Influitive's outstanding list (decided by someone "
               "else), so it is not sent again" if gone
               else f"{entry.vendor} does not promise that a repeat creates nothing new")
        reason = (f"unconfirmable order: the outcome of the order sent to {entry.vendor} under "
                  f"key {entry.idempotency_key} is unknown and {entry.vendor} cannot look it "
                  f"up; {why}. Check at {entry.vendor} whether that order exists "
                  f"(`reward-poller ledger show {entry.redemption_id}`)")
        if entry.state is State.HELD and entry.hold_reason == reason:
            return None  # already with a person for this very reason
        log.error("redemption.unconfirmable.held", reason=reason, error=str(exc))
        _note(OperatorProblem(who=entry.vendor or "", kind="other", detail=reason))
        return self._move(entry, State.HELD, reason, log,
                          Changes(hold_reason=reason, last_error=str(exc), clear=_NOT_DUE))

    def _recheck_pending(
        self, entry: LedgerEntry, log: structlog.BoundLogger, *, in_cycle: bool = True,
    ) -> LedgerEntry | None:
        assert entry.idempotency_key and entry.vendor
        vendor = self._vendor(entry.vendor)
        try:
            with self._heartbeat(entry, log):
                try:
                    result = vendor.lookup(entry.idempotency_key)
                except LookupUnavailable as exc:
                    # The order exists (the vendor took it as pending). A vendor without a
                    # look-up is asked by repeating the identical request, which its
                    # idempotency promise makes a read; never from an operator command.
                    if not in_cycle:
                        return None
                    if not exc.idempotent_resend:
                        raise
                    log.info("redemption.pending.resend", reason=str(exc))
                    result = vendor.place_order(self._request(entry))
        except AdvocateFacingError as exc:
            # The vendor's final word on the pending order is no (e.g. the HTTP vendor's
            # "refused" after "pending"): nothing was sent, so the advocate gets the points back.
            return self._vendor_failed(entry, exc, entry.attempts + 1, log)
        except VendorError as exc:
            # The order exists; only the check failed. It stays PENDING (never WAITING,
            # which would mean "no order known") and is checked again later.
            note_vendor_error(entry.vendor or "", exc)
            attempts = entry.attempts + 1
            if self.policy.schedule.exhausted(attempts):
                reason = f"could not check the pending vendor order after {attempts} " \
                         f"attempts: {exc}"
                log.error("redemption.pending.exhausted",
                          error=str(exc))
                return self._move(entry, State.HELD, reason, log,
                                  Changes(attempts=attempts, hold_reason=reason,
                                          last_error=str(exc), clear=_NOT_DUE))
            retry_at = self.policy.schedule.next_at(self.clock(), attempts,
                                                    getattr(exc, "retry_after", None))
            log.warning("redemption.pending.retry", error=str(exc),
                        attempts=attempts)
            return self._move(entry, State.PENDING, f"check failed: {exc}", log,
                              Changes(attempts=attempts, next_attempt_at=retry_at,
                                      last_error=str(exc)))
        if result is None:
            reason = "the vendor no longer knows the pending order under its key"
            log.error("redemption.pending.lost", reason=reason)
            return self._move(entry, State.HELD, reason, log,
                              Changes(hold_reason=reason, clear=_NOT_DUE))
        if result.status is OrderStatus.PENDING:
            when = self.clock().timestamp() + self.policy.pending_recheck_seconds
            return self._move(entry, State.PENDING, "still pending at the vendor", log,
                              Changes(next_attempt_at=datetime.fromtimestamp(when, UTC)))
        return self._after_order(entry, result, log)

    # --- the poll is the truth for "still outstanding" -----------------------------------

    def _confirm(self, entry: LedgerEntry, log: structlog.BoundLogger) -> LedgerEntry:
        """An unconfirmed decision whose redemption left the list: it took effect."""
        final = confirmed(entry.state)
        assert final is not None
        polls = self.policy.gone_after_polls
        log.info("decision.confirmed",
                 state=final.value)
        return self._move(entry, final,
                          f"confirmed: no longer listed by {polls} complete poll(s) after "
                          "Influitive answered \"perhaps already decided\"", log,
                          Changes(clear=frozenset({"next_attempt_at"})))

    def _reopen(self, entry: LedgerEntry, log: structlog.BoundLogger) -> LedgerEntry | None:
        """A complete poll, begun after the row was finished, still lists the redemption."""
        target = reopen_to(entry.state, order_placed=entry.vendor_order_id is not None)
        if target is None:
            return None
        was = entry.state.value
        if target is State.NEW:
            log.warning("redemption.reopened")
            return self._move(entry, State.NEW,
                              "discrepancy: Influitive lists it again after it was closed as "
                              "gone; reopened", log,
                              Changes(clear=frozenset({"hold_reason", "next_attempt_at"})))
        verb = "fulfilment" if target is State.ORDERED else "refusal"
        attempts = entry.attempts + 1
        if self.policy.schedule.exhausted(attempts):
            reason = (f"Influitive still lists it after {attempts} attempts to send the {verb} "
                      f"(the ledger had it {was}; last answer: {entry.last_error or 'accepted'})")
            if target is State.REFUSING and "404" in (entry.last_error or ""):
                reason += ("; a 404 to every refusal usually means Influitive does not know "
                           "the verb: check [influitive] refuse_verb (refuse or reject)")
            log.error("discrepancy.held", reason=reason)
            return self._move(entry, State.HELD, reason, log,
                              Changes(attempts=attempts, hold_reason=reason, clear=_NOT_DUE))
        when = self.policy.schedule.next_at(self.clock(), attempts)
        log.warning("discrepancy.found", was=was, attempts=attempts,
                    next_attempt_at=when.isoformat())
        return self._move(entry, target,
                          f"discrepancy: Influitive still lists it although the ledger had it "
                          f"{was}; the {verb} is sent again (attempt {attempts})", log,
                          Changes(attempts=attempts, next_attempt_at=when))

    @contextmanager
    def _heartbeat(self, entry: LedgerEntry, log: structlog.BoundLogger) -> Iterator[None]:
        """Keep the lease while a call that may outlast it is in flight: renewed every third
        of ``lease_seconds`` (``LeaseKeeper``). A renewal that fails is logged; the step then
        ends in LeaseLost at its next write, never in a second worker calling at the same
        time (the lease is only taken over once it has run out)."""
        if not self.policy.heartbeat:
            yield
            return
        with self._keeper.held(entry.pk, log):
            yield

    def _renew(self, pk: int) -> bool:
        return self.ledger.renew(pk, self.owner, self.clock(), self.policy.lease_seconds)

    def _fulfill(self, entry: LedgerEntry, log: structlog.BoundLogger) -> LedgerEntry:
        message = entry.message or self._render(self.messages.fulfilled, entry)
        try:
            with self._heartbeat(entry, log):
                self._decider(entry).fulfill(entry.redemption_id, message)
        except AlreadyDecided as exc:
            # Perhaps our own earlier decision that took effect although its answer was
            # lost, perhaps an admin in the UI, perhaps a route that is wrong: not proof.
            # Recorded as such; the next complete polls settle it.
            return self._perhaps(entry, State.PERHAPS_FULFILLED, exc, log)
        except SourceUnavailable as exc:
            return self._decision_failed(entry, exc, log)
        failpoint("after_decision")
        log.info("decision.fulfilled", vendor_order_id=entry.vendor_order_id)
        return self._move(entry, State.FULFILLED, "fulfilled at Influitive", log,
                          Changes(clear=frozenset({"next_attempt_at", "last_error"})))

    def _refuse(self, entry: LedgerEntry, log: structlog.BoundLogger) -> LedgerEntry:
        message = entry.message or ""
        try:
            with self._heartbeat(entry, log):
                self._decider(entry).refuse(entry.redemption_id, message)
        except AlreadyDecided as exc:
            return self._perhaps(entry, State.PERHAPS_REFUSED, exc, log)
        except SourceUnavailable as exc:
            return self._decision_failed(entry, exc, log)
        failpoint("after_decision")
        log.info("decision.refused")
        return self._move(entry, State.REFUSED, "refused at Influitive", log,
                          Changes(clear=frozenset({"next_attempt_at"})))

    def _perhaps(
        self, entry: LedgerEntry, to: State, exc: AlreadyDecided, log: structlog.BoundLogger
    ) -> LedgerEntry:
        if entry.source not in self.polled_sources:
            # Nothing polls a pushed source: its answer is all there is to go on.
            final = confirmed(to)
            assert final is not None
            return self._move(entry, final, f"{exc}; recorded as decided", log,
                              Changes(clear=frozenset({"next_attempt_at"})))
        log.warning("decision.perhaps_decided", error=str(exc),
                    vendor_order_id=entry.vendor_order_id)
        return self._move(entry, to,
                          f"perhaps already decided ({exc}): confirmed once complete polls no "
                          "longer list it, sent again if they still do", log,
                          Changes(last_error=str(exc), clear=frozenset({"next_attempt_at"})))

    def _decision_failed(
        self, entry: LedgerEntry, exc: SourceUnavailable, log: structlog.BoundLogger
    ) -> LedgerEntry:
        attempts = entry.attempts + 1
        if isinstance(exc, SourceBlocked):
            _note(OperatorProblem(who=SOURCE_NAME, kind="firewall", detail=str(exc)))
        if self.policy.schedule.exhausted(attempts):
            reason = f"Influitive did not take the decision after {attempts} attempts: {exc}"
            log.error("decision.exhausted", error=str(exc))
            return self._move(entry, State.HELD, reason, log,
                              Changes(attempts=attempts, hold_reason=reason,
                                      last_error=str(exc), clear=_NOT_DUE))
        when = self.policy.schedule.next_at(self.clock(), attempts, exc.retry_after)
        log.warning("decision.retry", error=str(exc), attempts=attempts)
        return self._move(entry, entry.state, f"decision failed: {exc}", log,
                          Changes(attempts=attempts, next_attempt_at=when, last_error=str(exc)))

    # --- helpers -------------------------------------------------------------------------

    def _decider(self, entry: LedgerEntry) -> Decider:
        decider = self.deciders.get(entry.source)
        if decider is None:
            raise ConfigError(f"no decision endpoint configured for source {entry.source!r}")
        return decider

    def _move(
        self, entry: LedgerEntry, to: State, detail: str, log: structlog.BoundLogger,
        changes: Changes | None = None, guard: SpendGuard | None = None,
    ) -> LedgerEntry:
        # A move to a finished (or unconfirmed) state is the step's last write: the lease
        # goes back with it, and ``_step`` releases nothing more.
        moved = self.ledger.transition(entry.pk, self.owner, to, detail, self.clock(), changes,
                                       expect=entry.state, guard=guard,
                                       release=to in _RELEASED)
        log.debug("redemption.transition", from_state=entry.state.value, to_state=to.value,
                  detail=detail)
        return moved

    def _parsed(self, entry: LedgerEntry) -> Redemption:
        """The redemption the ledger stored when it was recorded: never parsed again."""
        return entry.parsed()

    def _request(self, entry: LedgerEntry) -> OrderRequest:
        redemption = self._parsed(entry)
        assert entry.idempotency_key and entry.vendor and entry.amount and entry.currency
        return OrderRequest(
            idempotency_key=entry.idempotency_key,
            redemption_id=entry.redemption_id,
            source=entry.source,
            vendor=entry.vendor,
            product=entry.product,
            amount=entry.amount,
            currency=entry.currency,
            recipient_name=redemption.contact.display_name,
            recipient_email=redemption.contact.email or "",
            reward_name=redemption.reward_name,
            shipping=redemption.shipping,
        )

    def _render(self, template: str, entry: LedgerEntry, **extra: str) -> str:
        try:
            contact = self._parsed(entry).contact
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
