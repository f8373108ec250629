"""The console's four actions, each the function its ``ledger`` command runs
(``poller.worker.operator``); preview.html says what each will do before it is done."""

from __future__ import annotations

from datetime import UTC, datetime

from poller.console.data import Backend
from poller.domain.model import LedgerEntry
from poller.domain.states import UNCONFIRMED, State
from poller.worker import operator

TITLES = {"retry": "Retry", "reorder": "Reorder", "refuse": "Refuse",
          "fulfill": "Mark fulfilled"}
NEEDS_MESSAGE = frozenset({"refuse", "fulfill"})


def available(entry: LedgerEntry) -> list[str]:
    """The actions worth offering for ``entry`` (the operator functions check again)."""
    out = []
    if entry.state in (State.HELD, State.WAITING):
        out.append("retry")
        if entry.idempotency_key and entry.vendor:
            out.append("reorder")
    manual_pending = entry.state is State.PENDING and entry.vendor == operator.MANUAL_VENDOR
    if (not entry.state.terminal and entry.state not in UNCONFIRMED
            and entry.state is not State.REFUSING
            and (not entry.state.order_placed or manual_pending)):
        out.append("refuse")
    if operator.fulfill_refusal(entry) is None:
        out.append("fulfill")
    return out


def perform(backend: Backend, action: str, entry: LedgerEntry, *, actor: str,
            message: str = "") -> str:
    """Run the action as its ``ledger`` command does, and say what was done;
    OperatorError says why it was not."""
    ledger, vendors, now = backend.ledger, backend.vendors, datetime.now(UTC)
    source, rid = entry.source, entry.redemption_id
    if action == "retry":
        return operator.retry(ledger, vendors, source=source, redemption_id=rid, actor=actor,
                              now=now).said
    if action == "reorder":
        return operator.reorder(ledger, vendors, namespace=backend.namespace, source=source,
                                redemption_id=rid, actor=actor, now=now).said
    if not message.strip():
        raise operator.OperatorError("the message to the advocate must not be empty")
    if action == "refuse":
        done = operator.refuse(ledger, vendors, source=source, redemption_id=rid,
                               message=message, actor=actor, now=now)
    else:
        done = operator.fulfill(ledger, source=source, redemption_id=rid, message=message,
                                actor=actor, now=now)
    final = backend.process(done.entry.pk)
    if final is None:
        return done.said
    if final.state in (State.REFUSED, State.FULFILLED):
        return f"{done.said}; Influitive has your message"
    if final.state is State.CLOSED_UPSTREAM:
        return "it was already decided at Influitive (closed upstream)"
    return (f"{done.said}; Influitive did not take it yet ({final.last_error}); the worker "
            "sends it again at the next cycle")
