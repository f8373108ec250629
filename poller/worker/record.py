"""Recording: every redemption a poll lists is in the ledger before anything is done with
it, and a recorded one nothing was ordered for yet is routed (``next_step``: held, refused,
or ordered by ``order.start``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from poller.core.nextstep import Action, Kind
from poller.domain.errors import SourceAuthError, SourceBlocked, SourceUnavailable
from poller.domain.model import LedgerEntry, PollResult, Redemption
from poller.domain.states import State
from poller.ports import Changes, Ledger, RedemptionSource, read_pages
from poller.worker import failpoints
from poller.worker.context import NOT_DUE, StepContext, log
from poller.worker.report import SOURCE_NAME, CycleReport, OperatorProblem


def poll(
    source: RedemptionSource, ledger: Ledger, poll_id: int, clock: Callable[[], datetime],
    report: CycleReport,
) -> PollResult | None:
    """Read the outstanding list, recording each page as it arrives (a transaction per
    page, each marking its redemptions as seen by this poll): memory stays flat in the
    number outstanding, and a poll cut short still leaves what it read workable. None when
    the poll failed (counted into ``report``); raises SourceAuthError."""
    new = 0

    def record(page: Sequence[Redemption]) -> None:
        nonlocal new
        new += ledger.record(poll_id, page, clock())

    try:
        result = read_pages(source, record)
    except SourceAuthError as exc:
        ledger.finish_poll(poll_id, clock(), ok=False, complete=False, seen=0, error=str(exc))
        raise
    except SourceUnavailable as exc:
        ledger.finish_poll(poll_id, clock(), ok=False, complete=False, seen=0, error=str(exc))
        if isinstance(exc, SourceBlocked):
            report.problem(OperatorProblem(who=SOURCE_NAME, kind="firewall",
                                           detail=str(exc)), redemptions=0)
        # Said once, by whoever ran the cycle: the daemon's cycle.failed line, or the
        # last line of ``run --run-once``.
        report.errors.append(f"poll failed: {exc}")
        return None
    report.new = new
    failpoints.failpoint("after_record")
    ledger.finish_poll(poll_id, clock(), ok=True, complete=result.complete, seen=result.seen)
    for reason in result.rejected:
        log.warning("redemption.unrecordable", reason=reason)
    if not result.complete:
        log.warning("poll.incomplete", pages=result.pages)
    report.poll_ok = True
    report.poll_complete = result.complete
    report.seen = result.seen
    report.rejected = len(result.rejected)
    report.pages = result.pages
    return result


def hold(ctx: StepContext, entry: LedgerEntry, action: Action) -> LedgerEntry:
    """HOLD (its route needs a person), HOLD_UNREADABLE or HOLD_UNFINISHED."""
    if action.kind is Kind.HOLD_UNREADABLE:
        return ctx.move(entry, State.HELD, f"stored payload unreadable: {action.reason}",
                        Changes(hold_reason=action.reason))
    if action.kind is Kind.HOLD_UNFINISHED:
        log.error("redemption.unfinished.held", reason=action.reason)
        return ctx.hold(entry, action.reason,
                        Changes(hold_reason=action.reason, last_error=action.reason,
                                clear=NOT_DUE))
    assert action.kind is Kind.HOLD, action.kind
    log.warning("redemption.held", reason=action.reason)
    return ctx.hold(entry, action.reason, Changes(hold_reason=action.reason))
