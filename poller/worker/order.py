"""The vendor steps: save the key, then order; look an order up by its key; check a pending
order; record the vendor's answer before Influitive is told anything (docs/delivery.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from poller.core.nextstep import Action, Answered, Event, Kind, LookedUp, NoLookUp, VendorFailed
from poller.domain.errors import LookupUnavailable, ProductUnavailable, VendorError
from poller.domain.keys import idempotency_key
from poller.domain.model import LedgerEntry, OrderResult, OrderStatus
from poller.domain.states import State
from poller.ports import Changes, SpendGuard, SpendLimitReached
from poller.worker import failpoints
from poller.worker.steps import OperatorProblem, StepContext, fulfill, log, refuse


def ordering_move(
    ctx: StepContext, entry: LedgerEntry, action: Action
) -> tuple[str, Changes, SpendGuard | None]:
    """START_ORDER's move to ORDERING: the key saved with the route, under the daily spend
    guard when one applies."""
    route = action.route
    assert route is not None
    now = ctx.clock()
    guard: SpendGuard | None = None
    if action.guarded:
        limit = ctx.policy.spend.daily(route.currency)
        assert limit is not None
        guard = SpendGuard(currency=route.currency, amount=route.amount, daily_limit=limit,
                           since=now.replace(hour=0, minute=0, second=0, microsecond=0))
    key = idempotency_key(namespace=ctx.policy.namespace, source=entry.source,
                          redemption_id=entry.redemption_id)
    return (action.reason,
            Changes(idempotency_key=key, vendor=route.vendor, product=route.product,
                    amount=route.amount, currency=route.currency, ordered_at=now),
            guard)


def claim_ordering(ctx: StepContext, listed: LedgerEntry, action: Action) -> LedgerEntry | None:
    """Claim a row as ``due`` read it and save its key in one guarded statement. None when
    that changed nothing: the ordinary step (claim, then decide) takes over."""
    detail, changes, guard = ordering_move(ctx, listed, action)
    try:
        return ctx.ledger.claim_transition(
            listed.pk, ctx.owner, State.ORDERING, detail, ctx.clock(),
            ctx.policy.lease_seconds, changes, expect=listed.state, guard=guard)
    except SpendLimitReached:
        return None  # the ordinary step meets the guard again, with the lease, and holds


def start(ctx: StepContext, entry: LedgerEntry, action: Action) -> LedgerEntry | None:
    detail, changes, guard = ordering_move(ctx, entry, action)
    try:
        entry = ctx.move(entry, State.ORDERING, detail, changes, guard=guard)
    except SpendLimitReached as exc:
        return spend_hold(ctx, entry, f"spending guard: {exc}")
    failpoints.failpoint("after_key_saved")
    return order(ctx, entry, gone=False, fresh=True)


def spend_hold(ctx: StepContext, entry: LedgerEntry, reason: str) -> LedgerEntry:
    log.warning("redemption.spend_guard.held", reason=reason)
    return ctx.hold(entry, reason)


def order(
    ctx: StepContext, entry: LedgerEntry, *, gone: bool, fresh: bool
) -> LedgerEntry | None:
    """LOOK_UP (by key, before anything new), or the first order right after the key was
    saved (``fresh``: nothing can exist under it yet)."""
    assert entry.idempotency_key and entry.vendor
    if ctx.released_before("the vendor call"):
        return None
    vendor = ctx.vendor(entry.vendor)
    try:
        if not fresh:
            event: LookedUp | NoLookUp
            try:
                with ctx.heartbeat(entry):
                    event = LookedUp(result=vendor.lookup(entry.idempotency_key), gone=gone)
            except LookupUnavailable as exc:
                event = NoLookUp(error=exc, gone=gone)
            action = ctx.next(entry, event)
            if action.kind is not Kind.PLACE_ORDER:
                if isinstance(event, NoLookUp):
                    return follow(ctx, entry, action, event.error)
                if event.result is not None:
                    log.info("redemption.reconciled",
                             vendor_order_id=event.result.vendor_order_id)
                    failpoints.failpoint("after_vendor_answer")
                return follow(ctx, entry, action)
            if isinstance(event, NoLookUp):
                # The vendor's idempotency makes the identical request a repeat.
                log.info("redemption.resend", reason=str(event.error))
        if ctx.released_before("the vendor order"):
            return None
        if entry.state is not State.ORDERING:
            entry = ctx.move(entry, State.ORDERING,
                             f"attempt {entry.attempts + 1}: ordering from {entry.vendor}")
        with ctx.heartbeat(entry):
            result = vendor.place_order(ctx.request(entry))
    except VendorError as exc:
        failpoints.failpoint("after_vendor_answer")
        return failed(ctx, entry, exc)
    failpoints.failpoint("after_vendor_answer")
    return follow(ctx, entry, ctx.next(entry, Answered(result=result)))


def recheck(ctx: StepContext, entry: LedgerEntry, *, in_cycle: bool) -> LedgerEntry | None:
    """RECHECK: ask the vendor about a PENDING order."""
    assert entry.idempotency_key and entry.vendor
    vendor = ctx.vendor(entry.vendor)
    event: Event
    try:
        with ctx.heartbeat(entry):
            try:
                event = LookedUp(result=vendor.lookup(entry.idempotency_key))
            except LookupUnavailable as exc:
                action = ctx.next(entry, NoLookUp(error=exc, in_cycle=in_cycle))
                if action.kind is Kind.NOTHING:
                    return None
                if action.kind is not Kind.PLACE_ORDER:
                    raise
                log.info("redemption.pending.resend", reason=str(exc))
                event = Answered(result=vendor.place_order(ctx.request(entry)))
    except VendorError as exc:
        return failed(ctx, entry, exc)
    return follow(ctx, entry, ctx.next(entry, event))


def failed(ctx: StepContext, entry: LedgerEntry, exc: VendorError) -> LedgerEntry | None:
    reason = ctx.render(ctx.messages.unavailable_reason, entry)
    action = ctx.next(entry, VendorFailed(error=exc, unavailable_reason=reason))
    return follow(ctx, entry, action, exc)


def follow(
    ctx: StepContext, entry: LedgerEntry, action: Action, exc: VendorError | None = None,
) -> LedgerEntry | None:
    """Carry out what the vendor's answer led to."""
    kind = action.kind
    if kind is Kind.NOTHING:
        return None
    if kind is Kind.CLOSE:
        return ctx.move(entry, State.CLOSED_UPSTREAM, action.reason)
    if kind is Kind.HOLD_UNCONFIRMABLE:
        assert isinstance(exc, LookupUnavailable)
        return hold_unconfirmable(ctx, entry, exc, gone=action.gone)
    if kind in (Kind.MARK_PENDING, Kind.STILL_PENDING):
        when = ctx.clock().timestamp() + ctx.policy.pending_recheck_seconds
        order_id = (None if kind is Kind.STILL_PENDING or action.result is None
                    else action.result.vendor_order_id)
        return ctx.move(entry, State.PENDING, action.reason, Changes(
            next_attempt_at=datetime.fromtimestamp(when, UTC), vendor_order_id=order_id))
    if kind is Kind.HOLD_ORDER:
        result = action.result
        event = ("redemption.pending.lost" if result is None
                 else "redemption.needs_person" if result.status is OrderStatus.NEEDS_PERSON
                 else "redemption.order_failed")
        log.error(event, reason=action.reason)
        return ctx.hold(entry, action.reason,
                        vendor_order_id=result.vendor_order_id if result else None)
    if kind is Kind.MARK_ORDERED:
        assert action.result is not None
        return ordered(ctx, entry, action.result)
    assert exc is not None, kind
    return _vendor_error(ctx, entry, action, exc)


def ordered(ctx: StepContext, entry: LedgerEntry, result: OrderResult) -> LedgerEntry:
    message = ctx.render(ctx.messages.fulfilled, entry, delivery=result.delivery)
    entry = ctx.move(
        entry, State.ORDERED, f"vendor order {result.vendor_order_id} placed",
        Changes(vendor_order_id=result.vendor_order_id, message=message,
                clear=frozenset({"next_attempt_at", "last_error"})),
    )
    # The vendor adapter logs the placed order (vendor_order_placed); one event per order.
    failpoints.failpoint("after_ordered")
    if ctx.stopping("telling Influitive"):
        return entry  # the next cycle sends the fulfilment
    return fulfill(ctx, entry)


def _vendor_error(
    ctx: StepContext, entry: LedgerEntry, action: Action, exc: VendorError
) -> LedgerEntry:
    ctx.report.vendor_error(entry.vendor or "", exc)
    kind, attempts, error = action.kind, action.attempts, str(exc)
    if kind is Kind.CHECK_HOLD:
        log.error("redemption.pending.exhausted", error=error)
        return ctx.hold(entry, action.reason, attempts=attempts, last_error=error)
    if kind is Kind.CHECK_RETRY:
        assert attempts is not None
        retry_at = ctx.policy.schedule.next_at(ctx.clock(), attempts, action.retry_after)
        log.warning("redemption.pending.retry", error=error, attempts=attempts)
        return ctx.move(entry, State.PENDING, action.reason,
                        Changes(attempts=attempts, next_attempt_at=retry_at, last_error=error))
    error_class = type(exc).__name__
    if kind is Kind.VENDOR_REFUSE:
        log.warning("redemption.refusing", error=error)
        message = ctx.render(ctx.messages.refused, entry, reason=action.reason)
        entry = ctx.move(entry, State.REFUSING, f"vendor refused: {exc}",
                         Changes(message=message, attempts=attempts, last_error=error))
        if ctx.stopping("sending the refusal"):
            return entry
        return refuse(ctx, entry)
    if kind is Kind.VENDOR_HOLD:
        if isinstance(exc, ProductUnavailable):
            # Held by choice, for a person to decide on the money: the run says so.
            ctx.report.problem(OperatorProblem(who=entry.vendor or "", kind="other",
                                               detail=error))
        log.error("redemption.vendor.held", error=error, attempts=attempts,
                  error_class=error_class)
        return ctx.hold(entry, action.reason, attempts=attempts, last_error=error)
    assert kind is Kind.VENDOR_RETRY and attempts is not None, kind
    when = ctx.policy.schedule.next_at(ctx.clock(), attempts, action.retry_after)
    (log.error if action.operator else log.warning)(
        "redemption.vendor.retry", error=error, error_class=error_class,
        attempts=attempts, next_attempt_at=when.isoformat(),
    )
    return ctx.move(entry, State.WAITING, action.reason,
                    Changes(attempts=attempts, next_attempt_at=when, last_error=error))


def hold_unconfirmable(
    ctx: StepContext, entry: LedgerEntry, exc: LookupUnavailable, *, gone: bool,
) -> LedgerEntry | None:
    """The vendor cannot look the order up and the request may not be sent again: held, and
    counted as an operator problem (``run --run-once`` exits 1)."""
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
    ctx.report.problem(OperatorProblem(who=entry.vendor or "", kind="other", detail=reason))
    return ctx.hold(entry, reason, last_error=str(exc))
