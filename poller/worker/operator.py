"""``ledger refuse``, ``ledger retry``, ``ledger reorder`` and ``ledger fulfill``, run by
the command line and the web console alike (docs/delivery.md, "Operator commands reconcile
first"). The ledger may be behind the vendor (a crash leaves a key without an order id), so
every command that could spend or refund asks the vendor by key first; an unknown answer
changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from poller.domain.errors import LookupUnavailable, PollerError, VendorError
from poller.domain.keys import idempotency_key
from poller.domain.model import LedgerEntry, OrderResult, OrderStatus
from poller.domain.states import UNCONFIRMED, State
from poller.ports import Changes, LeaseLost, Ledger, Vendor

MANUAL_VENDOR = "manual"  # the vendor whose rewards a person sends
MAX_GENERATIONS = 1000  # how far ``reorder`` searches for the generation of the current key
SENT = "refusing would refund the points of a reward that was sent"


class OperatorError(PollerError):
    """The command was not carried out (exit 1); the message says why and what to do."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    entry: LedgerEntry
    said: str  # one line for the operator: what was done and why


def _find(ledger: Ledger, source: str, redemption_id: str) -> LedgerEntry:
    entry = ledger.get(source, redemption_id)
    if entry is None:
        raise OperatorError(f"no redemption {redemption_id!r} from {source} in the ledger")
    return entry


def _move(
    ledger: Ledger, entry: LedgerEntry, to: State, detail: str, now: datetime,
    changes: Changes | None, actor: str,
) -> LedgerEntry:
    try:
        return ledger.admin_transition(entry.pk, to, detail, now, changes, actor=actor)
    except LeaseLost:
        raise OperatorError(
            f"redemption {entry.redemption_id} is being worked on by a worker right now; "
            "try again in a moment"
        ) from None


def _lookup(vendors: Callable[[str], Vendor], entry: LedgerEntry, *,
            unconfirmable: bool = False) -> OrderResult | None:
    """Found or not found; OperatorError when the vendor could not be asked, so nothing is
    decided on a guess. ``unconfirmable``: LookupUnavailable is the caller's to act on."""
    assert entry.idempotency_key and entry.vendor
    try:
        return vendors(entry.vendor).lookup(entry.idempotency_key)
    except LookupUnavailable as exc:
        if unconfirmable:
            raise
        raise OperatorError(
            f"{entry.vendor} cannot tell whether an order exists under key "
            f"{entry.idempotency_key} ({exc}); nothing was changed. Check at {entry.vendor} "
            "by hand: `ledger fulfill` if the reward was sent, `ledger retry` to let the "
            "worker repeat the identical request while Influitive still lists it"
        ) from None
    except VendorError as exc:
        raise OperatorError(
            f"could not ask {entry.vendor} whether an order exists under key "
            f"{entry.idempotency_key} ({type(exc).__name__}: {exc}); nothing was changed, "
            "try again later"
        ) from None


def _describe(order: OrderResult) -> str:
    detail = f", {order.detail}" if order.detail else ""
    return f"vendor order {order.vendor_order_id} ({order.status.value}{detail})"


def _no_order(entry: LedgerEntry, then: str) -> OperatorError:
    return OperatorError(
        f"redemption {entry.redemption_id}: the ledger records vendor order "
        f"{entry.vendor_order_id} but {entry.vendor} has no order under key "
        f"{entry.idempotency_key}; {then}"
    )


def refuse(
    ledger: Ledger, vendors: Callable[[str], Vendor], *, source: str, redemption_id: str,
    message: str, actor: str, now: datetime,
) -> Outcome:
    """REFUSING, for the caller to send, unless the vendor has an order that was not
    failed or cancelled (its id is then recorded on the row)."""
    entry = _find(ledger, source, redemption_id)
    if entry.state.terminal or entry.state in UNCONFIRMED:
        if entry.vendor_order_id and entry.state.order_placed:
            raise OperatorError(
                f"redemption {redemption_id} has vendor order {entry.vendor_order_id}: {SENT}")
        raise OperatorError(f"redemption {redemption_id} is already {entry.state.value}")
    if entry.state is State.REFUSING:
        return Outcome(entry=entry, said="the refusal is already on its way to Influitive")
    manual_pending = entry.state is State.PENDING and entry.vendor == MANUAL_VENDOR
    why = "no vendor order was ever started"
    if entry.idempotency_key and entry.vendor and not manual_pending:
        order = _lookup(vendors, entry)
        if order is None:
            if entry.vendor_order_id:
                raise _no_order(entry, "check at the vendor before refusing")
            why = (f"{entry.vendor} confirms no order exists under key "
                   f"{entry.idempotency_key}")
        elif order.status is OrderStatus.FAILED:
            why = (f"{_describe(order)} failed at the vendor: nothing reached the advocate, "
                   "so refusing refunds points for a reward that was never sent")
        else:
            detail = (f"refusal blocked: {_describe(order)} exists under key "
                      f"{entry.idempotency_key}")
            if entry.vendor_order_id != order.vendor_order_id and entry.state in (
                    State.HELD, State.WAITING, State.ORDERING, State.PENDING):
                _move(ledger, entry, entry.state, detail + "; its id is recorded", now,
                      Changes(vendor_order_id=order.vendor_order_id), actor)
            raise OperatorError(
                f"redemption {redemption_id}: {_describe(order)} exists under its key; {SENT} "
                "(its order id is now recorded; `ledger retry` lets the worker finish it)")
    elif entry.state.order_placed and not manual_pending:
        raise OperatorError(
            f"redemption {redemption_id} has vendor order {entry.vendor_order_id}: {SENT}")
    elif manual_pending:
        why = "the manual reward was still pending: nothing was sent"
    said = quoted(message)
    moved = _move(ledger, entry, State.REFUSING,
                  f"refused by an operator (ledger refuse): {why}; message to the advocate: "
                  f"{said}", now,
                  Changes(message=message, clear=frozenset({"next_attempt_at"})), actor)
    return Outcome(entry=moved, said=f"refusing: {why}")


def retry(
    ledger: Ledger, vendors: Callable[[str], Vendor], *, source: str, redemption_id: str,
    actor: str, now: datetime,
) -> Outcome:
    """Release a held or waiting redemption to the worker, from what the vendor says: never
    to ORDERED ("tell the advocate it is on its way") unless the order is complete."""
    entry = _find(ledger, source, redemption_id)
    if entry.state not in (State.HELD, State.WAITING):
        raise OperatorError(
            f"redemption {redemption_id} is {entry.state.value}; only held or waiting "
            "redemptions can be retried"
        )
    release = Changes(attempts=0, clear=frozenset({"hold_reason", "next_attempt_at"}))
    detail = "released by an operator (ledger retry)"
    if not (entry.idempotency_key and entry.vendor):
        # Nothing ordered: routed afresh, so a fixed [[rewards]] rule applies.
        to = State.NEW if entry.state is State.HELD else State.WAITING
        moved = _move(ledger, entry, to, detail + ": no key, routed afresh", now, release,
                      actor)
        return Outcome(entry=moved, said="it is routed afresh at the next cycle")
    try:
        order = _lookup(vendors, entry, unconfirmable=True)
    except LookupUnavailable as exc:
        # Released, not sent: the worker repeats the identical request only while
        # Influitive still lists the redemption, and holds it again otherwise.
        moved = _move(ledger, entry, State.WAITING,
                      f"{detail}: {exc}; the worker repeats the identical request only while "
                      "Influitive still lists the redemption", now, release, actor)
        return Outcome(entry=moved, said=f"{entry.vendor} cannot look the order up; the "
                                         "worker repeats the identical request (same key) at "
                                         "the next cycle only while Influitive still lists it")
    if order is None:
        if entry.vendor_order_id:
            raise _no_order(entry, "check at the vendor")
        moved = _move(ledger, entry, State.WAITING,
                      f"{detail}: {entry.vendor} confirms no order under its key; ordered "
                      "with the same key at the next cycle", now, release, actor)
        return Outcome(entry=moved, said="no order exists yet; it is ordered (same key) at "
                                         "the next cycle while Influitive still lists it")
    found = Changes(attempts=0, vendor_order_id=order.vendor_order_id,
                    clear=frozenset({"hold_reason", "next_attempt_at"}))
    if order.status is OrderStatus.COMPLETE:
        moved = _move(ledger, entry, State.ORDERED,
                      f"{detail}: {_describe(order)} confirmed complete", now, found, actor)
        return Outcome(entry=moved, said=f"{_describe(order)} is complete; the fulfilment is "
                                         "sent to Influitive at the next cycle")
    if order.status is OrderStatus.PENDING:
        moved = _move(ledger, entry, State.PENDING,
                      f"{detail}: {_describe(order)} still pending", now, found, actor)
        return Outcome(entry=moved, said=f"{_describe(order)} is pending; checked again at "
                                         "the next cycle")
    if order.status is OrderStatus.FAILED:
        raise OperatorError(
            f"redemption {redemption_id}: {_describe(order)} failed at the vendor, nothing "
            "was sent; `ledger reorder` places a new order, `ledger refuse` refunds the points"
        )
    raise OperatorError(
        f"redemption {redemption_id}: {_describe(order)} needs a person at the vendor; "
        "resolve it there first"
    )


def reorder(
    ledger: Ledger, vendors: Callable[[str], Vendor], *, namespace: str, source: str,
    redemption_id: str, actor: str, now: datetime,
) -> Outcome:
    """A new key (the next generation of the first) for a redemption whose vendor order
    failed or was cancelled; the worker orders it while Influitive still lists it."""
    entry = _find(ledger, source, redemption_id)
    if entry.state not in (State.HELD, State.WAITING):
        raise OperatorError(
            f"redemption {redemption_id} is {entry.state.value}; only a held redemption "
            "whose vendor order failed can be reordered"
        )
    if not (entry.idempotency_key and entry.vendor):
        raise OperatorError(
            f"redemption {redemption_id} was never ordered; `ledger retry` routes it"
        )
    order = _lookup(vendors, entry)
    if order is None:
        raise OperatorError(
            f"redemption {redemption_id}: {entry.vendor} has no order under key "
            f"{entry.idempotency_key}; `ledger retry` orders it with the same key"
        )
    if order.status is not OrderStatus.FAILED:
        raise OperatorError(
            f"redemption {redemption_id}: {_describe(order)} did not fail; a new order "
            "would send a second reward"
        )
    first = idempotency_key(namespace=namespace, source=source, redemption_id=redemption_id)
    generation = next(
        (g for g in range(MAX_GENERATIONS)
         if idempotency_key(namespace=namespace, source=source, redemption_id=redemption_id,
                            generation=g) == entry.idempotency_key),
        None,
    )
    if generation is None:
        raise OperatorError(
            f"redemption {redemption_id}: its key {entry.idempotency_key} is not derived from "
            f"this org id ({namespace}); was [influitive] org_id changed?"
        )
    new_key = idempotency_key(namespace=namespace, source=source, redemption_id=redemption_id,
                              generation=generation + 1)
    moved = _move(
        ledger, entry, State.WAITING,
        f"reordered by an operator (ledger reorder): {_describe(order)} under key "
        f"{entry.idempotency_key} failed; new key {new_key} (generation {generation + 1}, "
        f"derived from the first key {first})",
        now,
        Changes(idempotency_key=new_key, attempts=0,
                clear=frozenset({"vendor_order_id", "hold_reason", "next_attempt_at",
                                 "last_error"})),
        actor,
    )
    return Outcome(entry=moved, said=f"new key {new_key}; ordered at the next cycle while "
                                     "Influitive still lists it")


def fulfill_refusal(entry: LedgerEntry) -> str | None:
    """Why ``ledger fulfill`` must not touch ``entry``, or None when it may."""
    rid = entry.redemption_id
    if entry.state is State.HELD:
        return None
    if entry.state is State.PENDING and entry.vendor == MANUAL_VENDOR:
        return None
    if entry.state.terminal:
        return f"redemption {rid} is already {entry.state.value}"
    if entry.state is State.PENDING:
        return (f"redemption {rid} is pending at {entry.vendor} (order "
                f"{entry.vendor_order_id}); the worker fulfils it when the vendor completes it")
    return (f"redemption {rid} is {entry.state.value}; only held redemptions, or pending ones "
            f"of the {MANUAL_VENDOR} vendor, are fulfilled by hand")


def quoted(message: str) -> str:
    return '"' + " ".join(message.split()) + '"'


def fulfill(
    ledger: Ledger, *, source: str, redemption_id: str, message: str, actor: str,
    now: datetime,
) -> Outcome:
    """ORDERED with the message for the advocate, for a reward a person delivered; the
    caller then has the worker tell Influitive (``Worker.process``)."""
    entry = _find(ledger, source, redemption_id)
    refusal = fulfill_refusal(entry)
    if refusal:
        raise OperatorError(refusal)
    if not message.strip():
        raise OperatorError("the message to the advocate must not be empty")
    moved = _move(ledger, entry, State.ORDERED,
                  f"fulfilled by hand (ledger fulfill, was {entry.state.value}); "
                  f"message to the advocate: {quoted(message)}", now,
                  Changes(message=message, attempts=0,
                          clear=frozenset({"hold_reason", "next_attempt_at", "last_error"})),
                  actor)
    return Outcome(entry=moved, said="recorded as sent by hand; Influitive is told with your "
                                     "message")
