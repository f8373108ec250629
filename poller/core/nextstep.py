"""The next step of a redemption: ``next_step``, one pure function, is all that decides.

From what the ledger records (``Facts``) and what was just learnt (``Event``), it returns the
``Action`` to carry out. The worker carries actions out and feeds the answers back in; ``run
--dry-run`` (``poller.core.plan``) asks it the same question and reports the action instead,
so the two cannot disagree. tests/unit/test_next_step.py walks every state and event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from poller.core.backoff import RetrySchedule
from poller.core.decide import Hold, Order, Refuse, RewardRule, SpendPolicy, plan_intake
from poller.domain.errors import (
    AdvocateFacingError,
    ConfigFixable,
    LookupUnavailable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
)
from poller.domain.model import LedgerEntry, OrderResult, OrderStatus, Redemption, Route
from poller.domain.states import TERMINAL, UNCONFIRMED, State, confirmed, reopen_to

# States in which no vendor order is known to exist: a redemption that leaves the
# outstanding list while in one of them is closed, never ordered (once the vendor confirms
# no order exists under a saved key).
BEFORE_ORDER = frozenset({State.NEW, State.WAITING, State.HELD, State.ORDERING})


class Listing(StrEnum):
    """What this cycle's poll says about the redemption. NO_POLL: an operator command, or
    the poll failed; UNLISTED: a partial poll, or not yet missing from enough complete ones
    (proves nothing); GONE: missing from ``[ledger] gone_after_polls`` complete polls."""

    NO_POLL = "no_poll"
    UNLISTED = "unlisted"
    LISTED = "listed"
    GONE = "gone"


class Kind(StrEnum):
    """What ``next_step`` asks for: on a due row, then after a vendor's or Influitive's answer."""

    NOTHING = "nothing"
    WAIT = "wait"
    HOLD_UNFINISHED = "hold_unfinished"
    CONFIRM = "confirm"
    REOPEN = "reopen"
    HOLD_DISCREPANCY = "hold_discrepancy"
    CLOSE = "close"
    HOLD_UNREADABLE = "hold_unreadable"
    HOLD = "hold"
    HOLD_SPEND = "hold_spend"
    REFUSE = "refuse"
    START_ORDER = "start_order"
    LOOK_UP = "look_up"
    PLACE_ORDER = "place_order"
    HOLD_UNCONFIRMABLE = "hold_unconfirmable"
    RECHECK = "recheck"
    MARK_PENDING = "mark_pending"
    STILL_PENDING = "still_pending"
    HOLD_ORDER = "hold_order"
    MARK_ORDERED = "mark_ordered"
    VENDOR_REFUSE = "vendor_refuse"
    VENDOR_HOLD = "vendor_hold"
    VENDOR_RETRY = "vendor_retry"
    CHECK_RETRY = "check_retry"
    CHECK_HOLD = "check_hold"
    FULFILL = "fulfill"
    SEND_REFUSAL = "send_refusal"
    FULFILLED = "fulfilled"
    REFUSED = "refused"
    PERHAPS = "perhaps"
    DECIDED = "decided"
    DECISION_RETRY = "decision_retry"
    DECISION_HOLD = "decision_hold"


@dataclass(frozen=True, kw_only=True)
class Action:
    """``reason``: the words the ledger records; ``attempts``: the count to record, if any;
    ``operator``: a person must act even if retries may carry it through; ``guarded``: the
    move to ORDERING passes the ledger's daily spend guard."""

    kind: Kind
    reason: str = ""
    to: State | None = None
    route: Route | None = None
    attempts: int | None = None
    retry_after: float | None = None
    operator: bool = False
    guarded: bool = False
    gone: bool = False
    result: OrderResult | None = None


@dataclass(frozen=True, kw_only=True)
class Rules:
    rules: Sequence[RewardRule] = ()
    vendors: Collection[str] = frozenset()
    unmapped: Literal["hold", "refuse"] = "hold"
    unmapped_reason: str = ""
    unavailable: Literal["refuse", "hold"] = "refuse"
    spend: SpendPolicy = SpendPolicy()
    schedule: RetrySchedule = RetrySchedule()
    gone_after_polls: int = 2


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What the ledger records about a redemption. ``polled``: from a polled source; a
    pushed one (a webhook) counts as listed while stored. ``earlier_unfinished``: steps
    started and never finished, this one not counted. ``redemption``: the stored payload
    parsed, or why it could not be. ``spent_today``: ordered today by currency, this plan
    included, when the caller knows it (None: the ledger's guard decides)."""

    state: State
    key_saved: bool = False
    order_id: str | None = None
    attempts: int = 0
    approved: bool = False
    hold_reason: str | None = None
    last_error: str | None = None
    polled: bool = True
    due: bool = True
    next_attempt: str = ""
    earlier_unfinished: int = 0
    redemption: Redemption | str | None = None
    spent_today: Mapping[str, Decimal] | None = None


def needs_payload(entry: LedgerEntry) -> bool:
    """Whether a decision on the row may route it (and so read its stored payload)."""
    return entry.state in (State.NEW, State.WAITING) and entry.idempotency_key is None


def facts_of(
    entry: LedgerEntry, *, polled: bool, claimed: bool,
    redemption: Redemption | str | None = None, now: datetime | None = None,
    spent_today: Mapping[str, Decimal] | None = None,
) -> Facts:
    """``claimed``: as the step's claim returned it (counting this step as unfinished);
    ``now``: judge whether it is due (a worker only steps rows that are)."""
    when = entry.next_attempt_at
    return Facts(
        state=entry.state, key_saved=entry.idempotency_key is not None,
        order_id=entry.vendor_order_id, attempts=entry.attempts, approved=entry.approved,
        hold_reason=entry.hold_reason, last_error=entry.last_error, polled=polled,
        due=now is None or when is None or when <= now,
        next_attempt="" if when is None else f"{when:%Y-%m-%d %H:%M:%S} UTC",
        earlier_unfinished=entry.unfinished_steps - (1 if claimed else 0),
        redemption=redemption, spent_today=spent_today,
    )


@dataclass(frozen=True, kw_only=True)
class Due:
    """Up for a step. ``before_poll``: the row last changed before the poll that lists it
    began (a finished row still listed is then a discrepancy)."""

    listing: Listing
    before_poll: bool = False


@dataclass(frozen=True, kw_only=True)
class LookedUp:
    """None: no order under the key. ``gone``: asked for a redemption that left the list."""

    result: OrderResult | None
    gone: bool = False


@dataclass(frozen=True, kw_only=True)
class NoLookUp:
    """``in_cycle``: a poll is behind the step (not an operator command)."""

    error: LookupUnavailable
    gone: bool = False
    in_cycle: bool = True


@dataclass(frozen=True, kw_only=True)
class Answered:
    result: OrderResult


@dataclass(frozen=True, kw_only=True)
class VendorFailed:
    """``unavailable_reason``: the advocate's message for a product the vendor won't sell."""

    error: VendorError
    unavailable_reason: str = ""


@dataclass(frozen=True, kw_only=True)
class DecisionAnswer:
    """Influitive's answer to a decision; ``perhaps`` (already decided) is not proof."""

    outcome: Literal["taken", "perhaps", "failed"]
    error: str = ""
    retry_after: float | None = None


Event = Due | LookedUp | NoLookUp | Answered | VendorFailed | DecisionAnswer


def next_step(facts: Facts, event: Event, rules: Rules) -> Action:
    if isinstance(event, Due):
        return _due(facts, event, rules)
    if isinstance(event, DecisionAnswer):
        return _decided(facts, event, rules)
    if facts.state is State.PENDING:
        return _checked(facts, event, rules)
    return _ordered(facts, event, rules)


def _due(facts: Facts, event: Due, rules: Rules) -> Action:
    state = facts.state
    polled = facts.polled
    outstanding = event.listing is Listing.LISTED or not polled
    gone = event.listing is Listing.GONE and polled
    if (facts.earlier_unfinished >= rules.schedule.max_attempts
            and state not in TERMINAL and state is not State.HELD):
        return Action(kind=Kind.HOLD_UNFINISHED, to=State.HELD, reason=(
            f"{facts.earlier_unfinished} steps on it in a row never finished (the worker "
            f"died, or its lease ran out during a slow call) while {state.value}; held so it "
            "is not tried for ever: check the vendor and Influitive, raise [ledger] "
            "lease_seconds if calls are that slow, then `ledger retry`"))
    if state in TERMINAL or state in UNCONFIRMED:
        final = confirmed(state)
        if gone and final is not None:
            return Action(kind=Kind.CONFIRM, to=final, reason=(
                f"confirmed: no longer listed by {rules.gone_after_polls} complete poll(s) "
                "after Influitive answered \"perhaps already decided\""))
        if event.listing is Listing.LISTED and event.before_poll:
            return _reopen(facts, rules)
        return Action(kind=Kind.NOTHING)
    if gone and state in BEFORE_ORDER:
        if facts.key_saved:
            return Action(kind=Kind.LOOK_UP, gone=True)
        return Action(kind=Kind.CLOSE, to=State.CLOSED_UPSTREAM,
                      reason="left Influitive's outstanding list before it was ordered "
                             "(decided by someone else)")
    if state is State.HELD:
        return Action(kind=Kind.WAIT, reason=facts.hold_reason or "no reason recorded")
    if not facts.due:
        error = f" (last error: {facts.last_error})" if facts.last_error else ""
        return Action(kind=Kind.WAIT, reason=f"next attempt at {facts.next_attempt}{error}")
    if state in (State.NEW, State.WAITING, State.ORDERING):
        if not outstanding:
            return Action(kind=Kind.NOTHING)  # the poll failed or was partial: not blindly
        if not facts.key_saved:
            return _intake(facts, rules)
        return Action(kind=Kind.LOOK_UP)
    return Action(kind=_DUE_KIND[state])


_DUE_KIND = {State.PENDING: Kind.RECHECK, State.ORDERED: Kind.FULFILL,
             State.REFUSING: Kind.SEND_REFUSAL}


def _reopen(facts: Facts, rules: Rules) -> Action:
    """A complete poll, begun after the row was finished, still lists the redemption."""
    target = reopen_to(facts.state, order_placed=facts.order_id is not None)
    assert target is not None  # every finished and unconfirmed state reopens
    if target is State.NEW:
        return Action(kind=Kind.REOPEN, to=State.NEW, reason=(
            "discrepancy: Influitive lists it again after it was closed as gone; reopened"))
    verb = "fulfilment" if target is State.ORDERED else "refusal"
    was = facts.state.value
    attempts = facts.attempts + 1
    if rules.schedule.exhausted(attempts):
        reason = (f"Influitive still lists it after {attempts} attempts to send the {verb} "
                  f"(the ledger had it {was}; last answer: {facts.last_error or 'accepted'})")
        if target is State.REFUSING and "404" in (facts.last_error or ""):
            reason += ("; a 404 to every refusal usually means Influitive does not know "
                       "the verb: check [influitive] refuse_verb (refuse or reject)")
        return Action(kind=Kind.HOLD_DISCREPANCY, to=State.HELD, reason=reason,
                      attempts=attempts)
    return Action(kind=Kind.REOPEN, to=target, attempts=attempts, reason=(
        f"discrepancy: Influitive still lists it although the ledger had it {was}; the "
        f"{verb} is sent again (attempt {attempts})"))


def _intake(facts: Facts, rules: Rules) -> Action:
    redemption = facts.redemption
    if not isinstance(redemption, Redemption):
        return Action(kind=Kind.HOLD_UNREADABLE, to=State.HELD,
                      reason=redemption or "no stored payload")
    decision = plan_intake(redemption, rules.rules, unmapped=rules.unmapped,
                           unmapped_reason=rules.unmapped_reason, vendors=rules.vendors)
    if isinstance(decision, Hold):
        return Action(kind=Kind.HOLD, to=State.HELD, reason=decision.reason)
    if isinstance(decision, Refuse):
        return Action(kind=Kind.REFUSE, to=State.REFUSING, reason=decision.reason)
    assert isinstance(decision, Order)
    r = decision.route
    reason = None if facts.approved else rules.spend.precheck(r.amount, r.currency)
    limit = None if facts.approved else rules.spend.daily(r.currency)
    spent = None if facts.spent_today is None else facts.spent_today.get(r.currency, Decimal(0))
    if reason is None and limit is not None and spent is not None and spent + r.amount > limit:
        reason = (f"spending guard: daily spend limit for {r.currency} reached: {spent} "
                  f"ordered today (this plan included) + {r.amount} would pass {limit}")
    if reason is not None:
        return Action(kind=Kind.HOLD_SPEND, to=State.HELD, reason=reason, route=r)
    return Action(kind=Kind.START_ORDER, to=State.ORDERING, route=r, guarded=limit is not None,
                  reason=f"ordering {r.describe()}")


def _ordered(facts: Facts, event: Event, rules: Rules) -> Action:
    """The vendor's answer to LOOK_UP or PLACE_ORDER: docs/delivery.md, "The vendor look-up
    contract"."""
    attempts = facts.attempts + 1
    if isinstance(event, LookedUp):
        if event.result is not None:
            return _after_order(event.result)
        if event.gone:
            return Action(kind=Kind.CLOSE, to=State.CLOSED_UPSTREAM, reason=(
                "left the outstanding list; the vendor confirms no order exists under its "
                "key"))
        return Action(kind=Kind.PLACE_ORDER, attempts=attempts)
    if isinstance(event, NoLookUp):
        if event.gone or not event.error.idempotent_resend:
            return Action(kind=Kind.HOLD_UNCONFIRMABLE, to=State.HELD, gone=event.gone,
                          reason=str(event.error))
        return Action(kind=Kind.PLACE_ORDER, attempts=attempts, reason=str(event.error))
    if isinstance(event, Answered):
        return _after_order(event.result)
    assert isinstance(event, VendorFailed)
    return _vendor_failed(event.error, attempts, event.unavailable_reason, rules)


# An order's status -> the action, the state, what the reason says and its default detail.
_AFTER_ORDER = {
    OrderStatus.PENDING: (Kind.MARK_PENDING, State.PENDING, "accepted, not final yet", "pending"),
    OrderStatus.NEEDS_PERSON: (Kind.HOLD_ORDER, State.HELD, "needs a person", "not delivered"),
    OrderStatus.FAILED: (Kind.HOLD_ORDER, State.HELD, "failed at the vendor", "failed"),
}


def _after_order(result: OrderResult) -> Action:
    if result.status not in _AFTER_ORDER:
        return Action(kind=Kind.MARK_ORDERED, to=State.ORDERED, result=result,
                      reason=f"vendor order {result.vendor_order_id} placed")
    kind, to, what, default = _AFTER_ORDER[result.status]
    return Action(kind=kind, to=to, result=result, reason=(
        f"vendor order {result.vendor_order_id} {what} ({result.detail or default})"))


def _vendor_failed(exc: VendorError, attempts: int, unavailable_reason: str,
                   rules: Rules) -> Action:
    """docs/delivery.md, "Vendor errors: refused, held, or retried"."""
    def hold(reason: str, operator: bool = True) -> Action:
        return Action(kind=Kind.VENDOR_HOLD, to=State.HELD, reason=reason, attempts=attempts,
                      operator=operator)

    def refuse(reason: str) -> Action:
        return Action(kind=Kind.VENDOR_REFUSE, to=State.REFUSING, reason=reason,
                      attempts=attempts)

    if isinstance(exc, ProductUnavailable):
        if rules.unavailable == "hold":
            return hold(f"{exc} (held: [fulfillment] unavailable_reward = \"hold\"; "
                        "`ledger refuse` refunds the points, `ledger retry` tries again)")
        return refuse(unavailable_reason)
    if isinstance(exc, AdvocateFacingError):
        return refuse(exc.advocate_message)
    if isinstance(exc, ConfigFixable):
        return hold(f"the configuration asks for something the vendor does not offer: {exc} "
                    "(fix the [[rewards]] rule, then `ledger retry`)")
    operator = isinstance(exc, OperatorFacingError)
    kind = ("outcome unknown, will reconcile by key" if isinstance(exc, UnknownOutcome)
            else "needs an operator" if operator else "transient")
    if rules.schedule.exhausted(attempts):
        return hold(f"gave up after {attempts} attempts ({kind}): {exc}", operator)
    return Action(kind=Kind.VENDOR_RETRY, to=State.WAITING, reason=f"{kind}: {exc}",
                  attempts=attempts, operator=operator,
                  retry_after=exc.retry_after if isinstance(exc, TransientVendorError) else None)


def _checked(facts: Facts, event: Event, rules: Rules) -> Action:
    """The answer to RECHECK."""
    if isinstance(event, LookedUp | Answered):
        result = event.result
        if result is None:
            return Action(kind=Kind.HOLD_ORDER, to=State.HELD, reason=(
                "the vendor no longer knows the pending order under its key"))
        if result.status is OrderStatus.PENDING:
            return Action(kind=Kind.STILL_PENDING, to=State.PENDING, result=result,
                          reason="still pending at the vendor")
        return _after_order(result)
    if isinstance(event, NoLookUp):
        # The order exists (the vendor took it as pending). A vendor without a look-up is
        # asked by repeating the identical request, which its idempotency promise makes a
        # read; never from an operator command.
        if not event.in_cycle:
            return Action(kind=Kind.NOTHING)
        if event.error.idempotent_resend:
            return Action(kind=Kind.PLACE_ORDER, reason=str(event.error))
    assert isinstance(event, VendorFailed | NoLookUp)
    exc = event.error
    attempts = facts.attempts + 1
    if isinstance(event, VendorFailed) and isinstance(exc, AdvocateFacingError):
        # The vendor's final word on the pending order is no: nothing was sent, so the
        # advocate gets the points back.
        return _vendor_failed(exc, attempts, event.unavailable_reason, rules)
    # The order exists; only the check failed. It stays PENDING (never WAITING, which
    # would mean "no order known") and is checked again later.
    if rules.schedule.exhausted(attempts):
        return Action(kind=Kind.CHECK_HOLD, to=State.HELD, attempts=attempts, reason=(
            f"could not check the pending vendor order after {attempts} attempts: {exc}"))
    return Action(kind=Kind.CHECK_RETRY, to=State.PENDING, attempts=attempts,
                  retry_after=getattr(exc, "retry_after", None),
                  reason=f"check failed: {exc}")


def _decided(facts: Facts, event: DecisionAnswer, rules: Rules) -> Action:
    fulfil = facts.state is State.ORDERED
    if event.outcome == "taken":
        if fulfil:
            return Action(kind=Kind.FULFILLED, to=State.FULFILLED,
                          reason="fulfilled at Influitive")
        return Action(kind=Kind.REFUSED, to=State.REFUSED, reason="refused at Influitive")
    if event.outcome == "perhaps":
        # Perhaps our own earlier decision whose answer was lost, an admin in the UI, a
        # route that is wrong: not proof; the next complete polls settle it.
        to = State.PERHAPS_FULFILLED if fulfil else State.PERHAPS_REFUSED
        if not facts.polled:
            # Nothing polls a pushed source: its answer is all there is to go on.
            return Action(kind=Kind.DECIDED, to=confirmed(to),
                          reason=f"{event.error}; recorded as decided")
        return Action(kind=Kind.PERHAPS, to=to, reason=(
            f"perhaps already decided ({event.error}): confirmed once complete polls no "
            "longer list it, sent again if they still do"))
    attempts = facts.attempts + 1
    if rules.schedule.exhausted(attempts):
        return Action(kind=Kind.DECISION_HOLD, to=State.HELD, attempts=attempts, reason=(
            f"Influitive did not take the decision after {attempts} attempts: "
            f"{event.error}"))
    return Action(kind=Kind.DECISION_RETRY, to=facts.state, attempts=attempts,
                  retry_after=event.retry_after, reason=f"decision failed: {event.error}")

