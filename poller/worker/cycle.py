"""One worker cycle: poll, record, reconcile, then carry every due redemption one step
further. ``poller.core.nextstep.next_step`` decides each step; the order of the writes is the
delivery guarantee of docs/delivery.md, and a crash between any two leaves a state the next
cycle resumes from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from poller.core.decide import RewardRule
from poller.core.nextstep import Action, Due, Kind, Listing, Rules
from poller.domain.errors import PollerError
from poller.domain.messages import MessageTemplates
from poller.domain.model import INFLUITIVE, LedgerEntry
from poller.domain.states import State, can_transition
from poller.ports import Changes, Decider, LeaseLost, Ledger, RedemptionSource, Vendor
from poller.worker import failpoints, order, steps
from poller.worker.leases import LeaseKeeper
from poller.worker.steps import (
    NOT_DUE,
    RELEASED,
    SOURCE_NAME,
    CycleReport,
    OperatorProblem,
    StepContext,
    WorkerPolicy,
    log,
    utcnow,
)

__all__ = ["SOURCE_NAME", "CycleReport", "OperatorProblem", "Worker", "WorkerPolicy", "utcnow"]

NO_POLL = Due(listing=Listing.NO_POLL)


@dataclass(frozen=True, kw_only=True)
class Sighting:
    """This cycle's poll as a step sees it; ``gone``: the rows missing from enough complete
    polls; ``started``: when the poll began reading."""

    poll_id: int
    started: datetime
    gone: bool = False

    def of(self, entry: LedgerEntry) -> Due:
        # Seen by this poll or a later one: another worker polling at the same time may
        # have marked the row with its newer poll id.
        if entry.last_seen_poll is not None and entry.last_seen_poll >= self.poll_id:
            return Due(listing=Listing.LISTED,
                       before_poll=not self.gone and entry.updated_at < self.started)
        return Due(listing=Listing.GONE if self.gone else Listing.UNLISTED)


@dataclass(kw_only=True, eq=False)
class Worker:
    source: RedemptionSource
    ledger: Ledger
    vendors: Callable[[str], Vendor]
    vendor_names: Collection[str]
    rules: Sequence[RewardRule]
    policy: WorkerPolicy
    messages: MessageTemplates = MessageTemplates()
    owner: str
    clock: Callable[[], datetime] = utcnow
    stop: threading.Event = field(default_factory=threading.Event)
    # Who is told the outcome, per source; a pushed source (Influence.io) brings its own.
    deciders: Mapping[str, Decider] = field(default_factory=dict)
    # Called with (done, total) after each redemption of a batch (progress display).
    on_progress: Callable[[int, int], None] | None = field(default=None, init=False)
    # Called with each row a step takes up and the action next_step chose for it.
    on_action: Callable[[LedgerEntry, Action], None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.deciders = {INFLUITIVE: self.source, **self.deciders}
        self.vendor_names = frozenset(self.vendor_names)
        self.rules = list(self.rules)
        self._keeper = LeaseKeeper(self._renew, self.policy.lease_seconds / 3)

    def _context(self, report: CycleReport) -> StepContext:
        policy = self.policy
        return StepContext(
            ledger=self.ledger, vendor=self.vendors, deciders=self.deciders, policy=policy,
            messages=self.messages,
            rules=Rules(rules=self.rules, vendors=self.vendor_names, unmapped=policy.unmapped,
                        unmapped_reason=self.messages.unmapped_reason,
                        unavailable=policy.unavailable, spend=policy.spend,
                        schedule=policy.schedule, gone_after_polls=policy.gone_after_polls),
            owner=self.owner, clock=self.clock, stop=self.stop, keeper=self._keeper,
            report=report,
        )

    def _renew(self, pk: int) -> bool:
        return self.ledger.renew(pk, self.owner, self.clock(), self.policy.lease_seconds)

    def _claim_pk(self, pk: int) -> LedgerEntry | None:
        return self.ledger.claim(pk, self.owner, self.clock(), self.policy.lease_seconds)

    def run_cycle(self) -> CycleReport:
        """Poll once, then work every due redemption one step. Raises SourceAuthError and
        ledger errors."""
        report = CycleReport()
        ctx = self._context(report)
        # On the ledger's clock: the reconciliation compares it with ``updated_at``.
        started = self.ledger.now(self.clock())
        poll_id = self.ledger.start_poll(started)
        poll = steps.poll(ctx, self.source, poll_id)
        sighting = None if poll is None else Sighting(poll_id=poll_id, started=started)
        if sighting is not None and poll is not None and poll.complete:
            listed, gone = steps.select(ctx, poll_id, started)
            if listed:
                self._dispatch(ctx, listed, sighting)
            if gone:
                self._dispatch(ctx, gone, Sighting(poll_id=poll_id, started=started, gone=True))
        # The rows as ``due`` read them: a new redemption's claim and its saved key are then
        # one statement.
        due = self.ledger.due(self.clock(), self.policy.batch_size)
        self._dispatch(ctx, due, sighting)
        log.info(
            "cycle.finished", poll_ok=report.poll_ok, complete=report.poll_complete,
            seen=report.seen, new=report.new, steps=report.steps, outcomes=report.outcomes,
        )
        return report

    def process(self, pk: int) -> LedgerEntry | None:
        """One step outside a cycle (operator commands). Without a poll nothing is ordered:
        only decisions already taken are sent."""
        self._step(self._context(CycleReport()), pk, None)
        return self.ledger.get_pk(pk)

    def _dispatch(
        self, ctx: StepContext, items: Sequence[LedgerEntry | int], sighting: Sighting | None,
    ) -> None:
        """Work each redemption one step, on up to ``policy.concurrency`` threads, taking the
        next only while no stop was asked for and no thread failed (then raised, once every
        thread finished the one it held). The lease, not the thread, keeps a redemption to
        one worker."""
        report = ctx.report
        pending = iter(items)
        lock = threading.Lock()
        failures: list[BaseException] = []
        taken = done = 0
        ran_out = False  # nothing left to take: the stop is counted once

        def take() -> LedgerEntry | int | None:
            nonlocal taken, ran_out
            with lock:
                item: LedgerEntry | int | None = None
                if failures or ran_out:
                    pass
                elif self.stop.is_set():
                    left = len(items) - taken
                    with report._lock:
                        report.not_started += left
                    if not report.stopped_early:
                        report.stopped_early = True
                        log.info("cycle.stopping", remaining=left)
                else:
                    item = next(pending, None)
                if item is None:
                    ran_out = True
                else:
                    taken += 1
                return item

        def work() -> None:
            nonlocal done
            try:
                while (item := take()) is not None:
                    self._step(ctx, item, sighting)
                    if self.on_progress is not None:
                        with lock:
                            done += 1
                            self.on_progress(done, len(items))
            except BaseException as exc:
                with lock:
                    failures.append(exc)

        threads = min(self.policy.concurrency, len(items))
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

    def _claim(
        self, ctx: StepContext, item: LedgerEntry | int, event: Due | None,
    ) -> tuple[LedgerEntry | None, Action | None]:
        """Take the row's lease. A row as ``due`` read it whose next step starts its order is
        claimed and its key saved in one guarded statement (the action comes back with it);
        otherwise, or when that changed nothing, a plain claim."""
        if isinstance(item, LedgerEntry) and event is not None:
            first = ctx.next(item, event, claimed=False)
            if first.kind is Kind.START_ORDER:
                moved = order.claim_ordering(ctx, item, first)
                if moved is not None:
                    if self.on_action is not None:
                        self.on_action(item, first)
                    return moved, first
        return self._claim_pk(item.pk if isinstance(item, LedgerEntry) else item), None

    def _step(self, ctx: StepContext, item: LedgerEntry | int, sighting: Sighting | None) -> None:
        """One step on one redemption: ``item`` is its pk, or its row as ``due`` read it."""
        pk = item.pk if isinstance(item, LedgerEntry) else item
        started: Action | None = None
        crash: Exception | None = None
        event = (None if not isinstance(item, LedgerEntry)
                 else NO_POLL if sighting is None else sighting.of(item))
        try:
            entry, started = self._claim(ctx, item, event)
        except PollerError:
            raise  # infrastructure (ledger down, credentials, config): the cycle fails
        except Exception as exc:  # a bug deciding on it: held below, as in any step
            crash = exc
            entry = self._claim_pk(pk)
        if entry is None:
            return  # another worker holds it
        final: LedgerEntry | None = None
        # Bound for the whole step, the adapters' lines included: every line names it.
        with structlog.contextvars.bound_contextvars(
            redemption_id=entry.redemption_id, source=entry.source
        ):
            try:
                if crash is not None:
                    raise crash
                if started is not None:
                    failpoints.failpoint("after_key_saved")
                    final = order.order(ctx, entry, gone=False, fresh=True)
                else:
                    event = NO_POLL if sighting is None else sighting.of(entry)
                    action = ctx.next(entry, event)
                    if self.on_action is not None:
                        self.on_action(entry, action)
                    final = self._carry_out(ctx, entry, action, event)
                if final is not None:
                    ctx.report.stepped(final.state)
                    ctx.report.left(final)
            except LeaseLost:
                log.warning("redemption.lease.lost")
            except PollerError:
                raise
            except Exception as exc:
                # A bug, or an answer nobody foresaw, in this redemption alone: held for a
                # person, so it does not starve every redemption after it, cycle after cycle.
                self._hold_after_crash(ctx, entry, exc)
            finally:
                try:
                    if final is None or final.state not in RELEASED:
                        self.ledger.release(pk, self.owner)
                except Exception:  # the ledger may be what failed; the lease then expires
                    log.warning("redemption.lease.unreleased")

    def _carry_out(
        self, ctx: StepContext, entry: LedgerEntry, action: Action, event: Due,
    ) -> LedgerEntry | None:
        kind = action.kind
        if kind in (Kind.NOTHING, Kind.WAIT):
            return None
        if kind in (Kind.CONFIRM, Kind.REOPEN, Kind.HOLD_DISCREPANCY, Kind.CLOSE):
            return steps.reconcile(ctx, entry, action)
        if kind in (Kind.HOLD, Kind.HOLD_UNREADABLE, Kind.HOLD_UNFINISHED):
            return steps.hold(ctx, entry, action)
        if kind is Kind.HOLD_SPEND:
            return order.spend_hold(ctx, entry, action.reason)
        if kind is Kind.REFUSE:
            return steps.refuse_routed(ctx, entry, action.reason)
        if kind is Kind.START_ORDER:
            return order.start(ctx, entry, action)
        if kind is Kind.LOOK_UP:
            return order.order(ctx, entry, gone=action.gone, fresh=False)
        if ctx.released_before("the vendor check or the decision"):
            return None
        if kind is Kind.RECHECK:
            return order.recheck(ctx, entry, in_cycle=event.listing is not Listing.NO_POLL)
        if kind is Kind.FULFILL:
            return steps.fulfill(ctx, entry)
        assert kind is Kind.SEND_REFUSAL, kind
        return steps.refuse(ctx, entry)

    def _hold_after_crash(self, ctx: StepContext, entry: LedgerEntry, exc: Exception) -> None:
        reason = f"unexpected error while working it: {type(exc).__name__}: {exc}"
        log.error("redemption.crashed", error=reason, exc_info=True)
        with ctx.report._lock:
            ctx.report.errors.append(f"redemption {entry.redemption_id}: {reason}")
        try:
            current = self.ledger.get_pk(entry.pk)
            if current is not None and can_transition(current.state, State.HELD):
                self.ledger.transition(entry.pk, self.owner, State.HELD, reason, self.clock(),
                                       Changes(hold_reason=reason, last_error=reason,
                                               clear=NOT_DUE), expect=current.state)
        except Exception as again:  # leave it; the lease expires and the next cycle retries
            log.error("redemption.hold.failed", error=f"{type(again).__name__}")
