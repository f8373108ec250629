"""The console's four actions, each the function its ``ledger`` command runs
(``poller.worker.operator``), and the sentences its preview page shows before it is done."""

from __future__ import annotations

from poller.console.data import Backend
from poller.domain.model import LedgerEntry
from poller.domain.states import UNCONFIRMED, State
from poller.worker import operator

TITLES = {"retry": "Retry", "reorder": "Reorder", "refuse": "Refuse",
          "fulfill": "Mark fulfilled"}
HINTS = {
    "retry": "Try again now: the vendor is asked first, nothing is sent twice.",
    "reorder": "The vendor's order failed: place a new one.",
    "refuse": "Turn it down: the advocate gets their points back and reads your message.",
    "fulfill": "You sent the reward yourself: tell the advocate how it reaches them.",
}
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


def preview(action: str, entry: LedgerEntry) -> list[str]:
    """What the action will do, in plain sentences, before the button does it."""
    vendor = entry.vendor or "the vendor"
    amount = ("the reward" if entry.amount is None
              else f"{entry.amount} {entry.currency or ''}".strip())
    if action == "retry" and not (entry.idempotency_key and entry.vendor):
        return [
            "Nothing was ordered for this redemption yet. It is routed afresh at the next "
            "cycle.",
            f"An order will be placed ({amount}) if a reward rule maps it then; "
            "otherwise it is held again with the reason.",
            "No points are refunded.",
        ]
    if action == "retry":
        return [
            f"{vendor} is asked first whether an order exists under this redemption's key.",
            f"If none exists, an order will be placed ({amount}, {vendor}) with the "
            "same key at the next cycle, while Influitive still lists the redemption.",
            "If one exists and is complete, Influitive is told the reward was sent; if it is "
            "pending, it is checked again. A failed order is not retried (reorder it).",
            "If the vendor cannot be asked, nothing changes. No points are refunded.",
        ]
    if action == "reorder":
        return [
            f"{vendor} is asked whether the order under this redemption's key failed.",
            f"If it failed, a new order will be placed ({amount}, {vendor}) under a "
            "new key at the next cycle.",
            "If it did not fail, nothing changes (a new order would send a second reward).",
        ]
    if action == "refuse":
        asked = ([f"{vendor} is asked first whether an order exists under its key; an order "
                  "that exists blocks the refusal."]
                 if entry.idempotency_key and entry.vendor and entry.state is not State.PENDING
                 else [])
        return [*asked,
                "The redemption is refused at Influitive now: a refund will be made (the "
                "advocate gets their points back).",
                "No order is placed.",
                "The advocate reads this message:"]
    return [
        "The reward is recorded as sent by hand, and Influitive is told it is fulfilled now.",
        "No order is placed and no points are refunded.",
        "The advocate reads this message:",
    ]


def perform(backend: Backend, action: str, entry: LedgerEntry, *, actor: str,
            message: str = "") -> str:
    """Run the action as its ``ledger`` command does, and say what was done;
    OperatorError says why it was not."""
    ledger, vendors, now = backend.ledger, backend.vendors, backend.clock()
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
