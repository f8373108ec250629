"""The poll is the truth for "still outstanding": after a complete poll the ledger is held
against the outstanding list.

* Listed, but finished (or unconfirmed) in the ledger since before this poll began: a
  discrepancy; the row is reopened (or, past the attempts, held).
* Not listed by ``gone_after_polls`` complete polls (separate cycles), while no order is
  known, or while a decision is unconfirmed: gone. One empty or short read is never enough:
  Influitive's list can come back empty for a moment, and a poll that pages by offset can
  miss an item decided while it read.

``select`` finds those rows; the cycle works each one step, and ``next_step`` decides it
(CONFIRM, REOPEN, HOLD_DISCREPANCY, CLOSE, or a look-up by key); ``carry_out`` makes the
move.
"""

from __future__ import annotations

from datetime import datetime

from poller.core.nextstep import BEFORE_ORDER, Action, Kind
from poller.domain.model import LedgerEntry
from poller.domain.states import TERMINAL, UNCONFIRMED, State
from poller.ports import Changes, Ledger
from poller.worker.context import NOT_DUE, StepContext, log


def select(
    ledger: Ledger, poll_id: int, started: datetime, *, polled: frozenset[str],
    gone_after_polls: int,
) -> tuple[list[int], list[int]]:
    """After a complete poll: the rows it lists that the ledger has as finished since
    before it began, and the rows gone from enough complete polls."""
    listed = [e.pk for e in ledger.seen_since(poll_id, TERMINAL | UNCONFIRMED)
              if e.source in polled and e.updated_at < started]
    gone = [e.pk for e in ledger.unseen_since(poll_id, BEFORE_ORDER | UNCONFIRMED,
                                              polls=gone_after_polls)
            if e.source in polled]
    return listed, gone


def carry_out(ctx: StepContext, entry: LedgerEntry, action: Action) -> LedgerEntry:
    """CONFIRM, REOPEN, HOLD_DISCREPANCY or CLOSE."""
    kind = action.kind
    assert action.to is not None
    if kind is Kind.CONFIRM:
        # An unconfirmed decision whose redemption left the list: it took effect.
        log.info("decision.confirmed", state=action.to.value)
        return ctx.move(entry, action.to, action.reason,
                        Changes(clear=frozenset({"next_attempt_at"})))
    if kind is Kind.CLOSE:
        return ctx.move(entry, State.CLOSED_UPSTREAM, action.reason)
    if kind is Kind.HOLD_DISCREPANCY:
        log.error("discrepancy.held", reason=action.reason)
        return ctx.hold(entry, action.reason,
                        Changes(attempts=action.attempts, hold_reason=action.reason,
                                clear=NOT_DUE))
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
