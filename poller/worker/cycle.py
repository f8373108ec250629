"""One worker cycle: poll, record, then carry every due redemption one step further.

The order of writes is the delivery guarantee (docs/delivery.md):

1. a redemption is recorded before anything is done with it (``record``);
2. its idempotency key and the ORDERING state are committed before the vendor is called
   (``order``);
3. the vendor's answer is committed (ORDERED/PENDING/REFUSING/WAITING) before Influitive is
   told (``order``);
4. FULFILLED/REFUSED is committed only after Influitive accepted the decision; an answer
   that does not say whether it took effect (404/409/422) is PERHAPS_FULFILLED/REFUSED,
   settled by the next complete polls (``decide``, ``reconcile``).

After a complete poll the ledger is held against the outstanding list (``reconcile``): the
poll is the truth for "still outstanding".

What happens to a redemption is decided in one place, ``poller.core.nextstep.next_step``;
this module takes the rows, claims them, asks it, and hands each action to the step module
that carries it out.

A crash between any two steps leaves a state from which the next cycle resumes; the vendor
is only ever asked again with the same key, and it creates nothing the second time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from poller.core.decide import RewardRule
from poller.core.nextstep import Action, Due, Kind, Listing, Rules
from poller.domain.errors import PollerError
from poller.domain.messages import MessageTemplates
from poller.domain.model import INFLUITIVE, LedgerEntry
from poller.domain.states import State, can_transition
from poller.ports import Changes, Decider, LeaseLost, Ledger, RedemptionSource, Vendor
from poller.worker import decide, failpoints, order, reconcile, record
from poller.worker.context import (
    NOT_DUE,
    RELEASED,
    StepContext,
    WorkerPolicy,
    log,
    redemption_of,
    utcnow,
)
from poller.worker.leases import LeaseKeeper
from poller.worker.report import SOURCE_NAME, CycleReport, OperatorProblem, vendor_problem

__all__ = [
    "SOURCE_NAME", "CycleReport", "OperatorProblem", "Sighting", "Worker", "WorkerPolicy",
    "redemption_of", "utcnow", "vendor_problem",
]


@dataclass(frozen=True, kw_only=True)
class Sighting:
    """What a step may conclude from this cycle's poll: a row whose ``last_seen_poll`` is
    ``poll_id`` or later is still outstanding; ``gone`` marks the rows the ledger found
    missing from enough complete polls; ``started`` is when the poll began reading."""

    poll_id: int
    started: datetime
    gone: bool = False

    def of(self, entry: LedgerEntry) -> Due:
        """The ``next_step`` event of a row taken up after this poll."""
        # Seen by this poll or by a later one: another worker polling at the same time may
        # have marked the row with its newer poll id.
        if entry.last_seen_poll is not None and entry.last_seen_poll >= self.poll_id:
            return Due(listing=Listing.LISTED,
                       before_poll=not self.gone and entry.updated_at < self.started)
        return Due(listing=Listing.GONE if self.gone else Listing.UNLISTED)


NO_POLL = Due(listing=Listing.NO_POLL)


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
        self.on_action: Callable[[LedgerEntry, Action], None] | None = None
        """Called with each row a step takes up and the action ``next_step`` chose for it."""
        self._keeper = LeaseKeeper(self._renew, policy.lease_seconds / 3)

    def _context(self, report: CycleReport) -> StepContext:
        return StepContext(
            ledger=self.ledger, vendor=self._vendor, deciders=self.deciders,
            polled_sources=self.polled_sources, policy=self.policy, messages=self.messages,
            rules=Rules(rules=self.rules, vendors=self._vendor_names,
                        unmapped=self.policy.unmapped,
                        unmapped_reason=self.messages.unmapped_reason,
                        unavailable=self.policy.unavailable, spend=self.policy.spend,
                        schedule=self.policy.schedule,
                        gone_after_polls=self.policy.gone_after_polls),
            owner=self.owner, clock=self.clock, stop=self.stop, keeper=self._keeper,
            report=report,
        )

    def _renew(self, pk: int) -> bool:
        return self.ledger.renew(pk, self.owner, self.clock(), self.policy.lease_seconds)

    # --- the cycle -----------------------------------------------------------------------

    def run_cycle(self) -> CycleReport:
        """Poll once, then work every due redemption one step. Raises SourceAuthError (the
        run cannot do its job) and ledger errors (the database is unreachable)."""
        report = CycleReport()
        ctx = self._context(report)
        # On the ledger's clock: the reconciliation compares it with the times the ledger
        # stored (``updated_at``), which other workers' moves wrote.
        started = self.ledger.now(self.clock())
        poll_id = self.ledger.start_poll(started)
        poll = record.poll(self.source, self.ledger, poll_id, self.clock, report)
        sighting = None if poll is None else Sighting(poll_id=poll_id, started=started)
        if sighting is not None and poll is not None and poll.complete:
            listed, gone = reconcile.select(
                self.ledger, poll_id, started, polled=self.polled_sources,
                gone_after_polls=self.policy.gone_after_polls)
            if listed:
                self._dispatch(ctx, listed, sighting)
            if gone:
                self._dispatch(ctx, gone, Sighting(poll_id=poll_id, started=started,
                                                   gone=True))
        # The rows as ``due`` read them: a new redemption's first step is decided from them,
        # so that its claim and its saved key are one statement.
        due = self.ledger.due(self.clock(), self.policy.batch_size)
        self._dispatch(ctx, due, sighting)
        log.info(
            "cycle.finished", poll_ok=report.poll_ok, complete=report.poll_complete,
            seen=report.seen, new=report.new, steps=report.steps, outcomes=report.outcomes,
        )
        return report

    def process(self, pk: int) -> LedgerEntry | None:
        """Work one redemption one step outside a cycle (for operator commands). Without a
        poll nothing is ordered: only decisions already taken are sent to Influitive."""
        self._step(self._context(CycleReport()), pk, None)
        return self.ledger.get_pk(pk)

    def _dispatch(
        self, ctx: StepContext, pks: Sequence[LedgerEntry | int], sighting: Sighting | None,
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
        report = ctx.report
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

        def work() -> None:
            try:
                while (item := take()) is not None:
                    self._step(ctx, item, sighting)
                    if self.on_progress is not None:
                        with lock:
                            done[0] += 1
                            self.on_progress(done[0], len(pks))
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

    # --- one redemption, one step ---------------------------------------------------------

    def _claim(
        self, ctx: StepContext, item: LedgerEntry | int, event: Due | None,
    ) -> tuple[LedgerEntry | None, Action | None]:
        """Take the row's lease. A row as ``due`` read it is decided first: when the next
        step is to start its order, the claim and the saved key are one guarded statement
        (the action is returned with the row). Otherwise, or when that statement changed
        nothing (another worker has the row, it moved on, the spend guard), a plain claim;
        the step then decides on the row it claimed."""
        if isinstance(item, LedgerEntry) and event is not None:
            first = ctx.next(item, event, claimed=False)
            if first.kind is Kind.START_ORDER:
                moved = order.claim_ordering(ctx, item, first)
                if moved is not None:
                    if self.on_action is not None:
                        self.on_action(item, first)
                    return moved, first
        pk = item.pk if isinstance(item, LedgerEntry) else item
        return self.ledger.claim(pk, self.owner, self.clock(), self.policy.lease_seconds), None

    def _step(self, ctx: StepContext, item: LedgerEntry | int, sighting: Sighting | None) -> None:
        """One step on one redemption: ``item`` is its pk, or its row as ``due`` read it."""
        pk = item.pk if isinstance(item, LedgerEntry) else item
        started: Action | None = None
        crash: Exception | None = None
        listed = item if isinstance(item, LedgerEntry) else None
        event = (None if listed is None
                 else NO_POLL if sighting is None else sighting.of(listed))
        try:
            entry, started = self._claim(ctx, item, event)
        except PollerError:
            raise  # infrastructure (ledger down, credentials, config): the cycle fails
        except Exception as exc:  # a bug deciding on it: held below, as in any step
            crash = exc
            entry = self.ledger.claim(pk, self.owner, self.clock(), self.policy.lease_seconds)
        if entry is None:
            return  # another worker holds it
        final: LedgerEntry | None = None
        # Bound once for the whole step, the adapters' lines included: every warning
        # (vendor errors, lost answers) names the redemption.
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
                raise  # infrastructure (ledger down, credentials, config): the cycle fails
            except Exception as exc:
                # A bug, or an answer nobody foresaw, in this redemption alone: it must not
                # starve every redemption after it, cycle after cycle. Held, with the
                # reason, for a person.
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
        """Hand the action to the step module that carries it out."""
        kind = action.kind
        if kind in (Kind.NOTHING, Kind.WAIT):
            return None
        if kind in (Kind.CONFIRM, Kind.REOPEN, Kind.HOLD_DISCREPANCY, Kind.CLOSE):
            return reconcile.carry_out(ctx, entry, action)
        if kind in (Kind.HOLD, Kind.HOLD_UNREADABLE, Kind.HOLD_UNFINISHED):
            return record.hold(ctx, entry, action)
        if kind is Kind.HOLD_SPEND:
            return order.spend_hold(ctx, entry, action.reason)
        if kind is Kind.REFUSE:
            return decide.refuse_routed(ctx, entry, action.reason)
        if kind is Kind.START_ORDER:
            return order.start(ctx, entry, action)
        if kind is Kind.LOOK_UP:
            # A key exists: an order may exist. Reconciled by key before anything new.
            return order.order(ctx, entry, gone=action.gone, fresh=False)
        if ctx.released_before("the vendor check or the decision"):
            return None
        if kind is Kind.RECHECK:
            return order.recheck(ctx, entry, in_cycle=event.listing is not Listing.NO_POLL)
        if kind is Kind.FULFILL:
            return decide.fulfill(ctx, entry)
        assert kind is Kind.SEND_REFUSAL, kind
        return decide.refuse(ctx, entry)

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
