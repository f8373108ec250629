"""Telling Influitive: the fulfilment or the refusal, committed only once it took it.

An answer that does not say whether the decision took effect (404/409/422) leaves the row
PERHAPS_FULFILLED/REFUSED, settled by the next complete polls (``reconcile``); a failure
is retried on the schedule and then held. ``next_step`` says which.
"""

from __future__ import annotations

from collections.abc import Callable

from poller.core.nextstep import DecisionAnswer, Kind
from poller.domain.errors import AlreadyDecided, SourceBlocked, SourceUnavailable
from poller.domain.model import LedgerEntry
from poller.domain.states import State
from poller.ports import Changes, Decider
from poller.worker import failpoints
from poller.worker.context import NOT_DUE, StepContext, log
from poller.worker.report import SOURCE_NAME, OperatorProblem


def refuse_routed(ctx: StepContext, entry: LedgerEntry, reason: str) -> LedgerEntry:
    """REFUSE: its rule refuses the redemption; the refusal is committed, then sent."""
    message = ctx.render(ctx.messages.refused, entry, reason=reason)
    entry = ctx.move(entry, State.REFUSING, f"refusing: {reason}", Changes(message=message))
    if ctx.stopping("sending the refusal"):
        return entry
    return refuse(ctx, entry)


def fulfill(ctx: StepContext, entry: LedgerEntry) -> LedgerEntry:
    """FULFILL: send the fulfilment of an ORDERED redemption."""
    message = entry.message or ctx.render(ctx.messages.fulfilled, entry)
    return _send(ctx, entry, lambda d: d.fulfill(entry.redemption_id, message))


def refuse(ctx: StepContext, entry: LedgerEntry) -> LedgerEntry:
    """SEND_REFUSAL: send the refusal of a REFUSING redemption."""
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
    kind = action.kind
    assert action.to is not None
    if kind is Kind.FULFILLED:
        log.info("decision.fulfilled", vendor_order_id=entry.vendor_order_id)
        return ctx.move(entry, action.to, action.reason,
                        Changes(clear=frozenset({"next_attempt_at", "last_error"})))
    if kind is Kind.REFUSED:
        log.info("decision.refused")
        return ctx.move(entry, action.to, action.reason,
                        Changes(clear=frozenset({"next_attempt_at"})))
    if kind is Kind.DECIDED:
        return ctx.move(entry, action.to, action.reason,
                        Changes(clear=frozenset({"next_attempt_at"})))
    if kind is Kind.PERHAPS:
        log.warning("decision.perhaps_decided", error=answer.error,
                    vendor_order_id=entry.vendor_order_id)
        return ctx.move(entry, action.to, action.reason,
                        Changes(last_error=answer.error, clear=frozenset({"next_attempt_at"})))
    if kind is Kind.DECISION_HOLD:
        log.error("decision.exhausted", error=answer.error)
        return ctx.hold(entry, action.reason,
                        Changes(attempts=action.attempts, hold_reason=action.reason,
                                last_error=answer.error, clear=NOT_DUE))
    assert kind is Kind.DECISION_RETRY and action.attempts is not None, kind
    when = ctx.policy.schedule.next_at(ctx.clock(), action.attempts, action.retry_after)
    log.warning("decision.retry", error=answer.error, attempts=action.attempts)
    return ctx.move(entry, action.to, action.reason,
                    Changes(attempts=action.attempts, next_attempt_at=when,
                            last_error=answer.error))
