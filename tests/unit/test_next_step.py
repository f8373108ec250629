"""``next_step``, the one function deciding what happens to a redemption: every state and
every event walked through it, against tables that say what each means."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule, SpendPolicy
from poller.core.nextstep import (
    Answered,
    DecisionAnswer,
    Due,
    Facts,
    Kind,
    Listing,
    LookedUp,
    NoLookUp,
    Rules,
    VendorFailed,
    next_step,
)
from poller.domain.errors import (
    AdvocateFacingError,
    ConfigFixable,
    LookupUnavailable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
)
from poller.domain.model import OrderResult, OrderStatus
from poller.domain.states import State, can_transition
from poller.sources.influitive.wire import parse_redemption

RULES = Rules(
    rules=[RewardRule(vendor="tremendous", product="AMZN", amount=Decimal("25.00"),
                      currency="USD", reward_id="37")],
    vendors={"tremendous"}, unmapped="hold", unmapped_reason="not automatic",
    schedule=RetrySchedule(max_attempts=3),
)
ROUTED = parse_redemption({"id": "1", "reward_id": "37", "reward_name": "Gift",
                           "contact": {"email": "a@example.com", "name": "A"}})
UNMAPPED = parse_redemption({"id": "2", "reward_id": "99", "reward_name": "Mug",
                             "contact": {"email": "b@example.com", "name": "B"}})

# The facts a row has in each state in the ordinary course: a key from ORDERING on, an
# order id from PENDING on (none for a refusal or a close).
KEYED = {State.ORDERING, State.PENDING, State.ORDERED, State.FULFILLED,
         State.PERHAPS_FULFILLED}


def facts(state: State, **over: object) -> Facts:
    base = Facts(state=state, key_saved=state in KEYED,
                 order_id="V-1" if state in KEYED - {State.ORDERING} else None,
                 redemption=ROUTED if state in (State.NEW, State.WAITING) else None)
    return replace(base, **over)  # type: ignore[arg-type]


LISTED = Due(listing=Listing.LISTED, before_poll=True)
EVENTS = {
    Listing.NO_POLL: Due(listing=Listing.NO_POLL),
    Listing.UNLISTED: Due(listing=Listing.UNLISTED),
    Listing.LISTED: LISTED,
    Listing.GONE: Due(listing=Listing.GONE),
}

N, W, U = Kind.NOTHING, Kind.WAIT, Kind.LOOK_UP
# state -> what a due step does for each listing: no poll, not listed, listed, gone.
DUE_TABLE: dict[State, tuple[Kind, Kind, Kind, Kind]] = {
    State.NEW: (N, N, Kind.START_ORDER, Kind.CLOSE),
    State.WAITING: (N, N, Kind.START_ORDER, Kind.CLOSE),
    State.HELD: (W, W, W, Kind.CLOSE),
    State.ORDERING: (N, N, U, U),
    State.PENDING: (Kind.RECHECK,) * 4,  # type: ignore[dict-item]
    State.ORDERED: (Kind.FULFILL,) * 4,  # type: ignore[dict-item]
    State.REFUSING: (Kind.SEND_REFUSAL,) * 4,  # type: ignore[dict-item]
    State.FULFILLED: (N, N, Kind.REOPEN, N),
    State.REFUSED: (N, N, Kind.REOPEN, N),
    State.CLOSED_UPSTREAM: (N, N, Kind.REOPEN, N),
    State.PERHAPS_FULFILLED: (N, N, Kind.REOPEN, Kind.CONFIRM),
    State.PERHAPS_REFUSED: (N, N, Kind.REOPEN, Kind.CONFIRM),
}
# The same for a row in NEW, WAITING or HELD with a saved key (an earlier attempt's order
# may exist): looked up by key, never ordered afresh, never closed unasked.
KEYED_TABLE: dict[State, tuple[Kind, Kind, Kind, Kind]] = {
    State.NEW: (N, N, U, U),
    State.WAITING: (N, N, U, U),
    State.HELD: (W, W, W, U),
}


def test_the_tables_cover_every_state() -> None:
    assert set(DUE_TABLE) == set(State)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("listing", list(Listing))
def test_every_state_and_listing(state: State, listing: Listing) -> None:
    want = DUE_TABLE[state][list(Listing).index(listing)]
    action = next_step(facts(state), EVENTS[listing], RULES)
    assert action.kind is want
    if action.to is not None:
        assert can_transition(state, action.to) or action.to is state
    if state in KEYED_TABLE:
        keyed = next_step(facts(state, key_saved=True),
                          EVENTS[listing], RULES)
        assert keyed.kind is KEYED_TABLE[state][list(Listing).index(listing)]
        assert keyed.gone is (listing is Listing.GONE)


@pytest.mark.parametrize(("state", "back"), [
    (State.FULFILLED, State.ORDERED), (State.PERHAPS_FULFILLED, State.ORDERED),
    (State.REFUSED, State.REFUSING), (State.PERHAPS_REFUSED, State.REFUSING),
    (State.CLOSED_UPSTREAM, State.NEW),
])
def test_a_finished_row_still_listed_is_reopened_only_after_the_poll_began(
    state: State, back: State
) -> None:
    action = next_step(facts(state), LISTED, RULES)
    assert action.kind is Kind.REOPEN and action.to is back
    # Finished while (or after) the poll read: the poll is not proof it is still open.
    late = next_step(facts(state), Due(listing=Listing.LISTED, before_poll=False), RULES)
    assert late.kind is Kind.NOTHING


def test_a_closed_row_with_an_order_reopens_to_ordered() -> None:
    action = next_step(facts(State.CLOSED_UPSTREAM, order_id="V-9"), LISTED, RULES)
    assert action.to is State.ORDERED


def test_a_discrepancy_past_the_attempts_is_held_and_a_404_names_the_refuse_verb() -> None:
    action = next_step(facts(State.REFUSED, attempts=2, last_error="404 not found"),
                       LISTED, RULES)
    assert action.kind is Kind.HOLD_DISCREPANCY and action.attempts == 3
    assert "refuse_verb" in action.reason


def test_a_confirmed_decision_becomes_final() -> None:
    gone = Due(listing=Listing.GONE)
    assert next_step(facts(State.PERHAPS_FULFILLED), gone, RULES).to is State.FULFILLED
    assert next_step(facts(State.PERHAPS_REFUSED), gone, RULES).to is State.REFUSED


def test_a_pushed_source_counts_as_listed_and_never_as_gone() -> None:
    pushed = facts(State.NEW, polled=False)
    assert next_step(pushed, EVENTS[Listing.NO_POLL], RULES).kind is Kind.START_ORDER
    assert next_step(pushed, EVENTS[Listing.GONE], RULES).kind is Kind.START_ORDER


@pytest.mark.parametrize("state", [State.NEW, State.WAITING, State.ORDERING, State.PENDING,
                                   State.ORDERED, State.REFUSING, State.PERHAPS_REFUSED])
def test_steps_that_keep_dying_are_held(state: State) -> None:
    action = next_step(facts(state, earlier_unfinished=3), LISTED, RULES)
    assert action.kind is Kind.HOLD_UNFINISHED and action.to is State.HELD
    assert next_step(facts(state, earlier_unfinished=2), LISTED, RULES).kind is not (
        Kind.HOLD_UNFINISHED)


def test_a_row_not_due_waits_unless_it_left_the_list() -> None:
    later = facts(State.WAITING, due=False, next_attempt="2026-01-01 00:00:00 UTC",
                  last_error="503", key_saved=True)
    action = next_step(later, LISTED, RULES)
    assert action.kind is Kind.WAIT and action.reason == (
        "next attempt at 2026-01-01 00:00:00 UTC (last error: 503)")
    assert next_step(later, EVENTS[Listing.GONE], RULES).kind is Kind.LOOK_UP


# --- routing a redemption nothing was ordered for --------------------------------------


def test_intake_routes_holds_refuses_and_guards_spending() -> None:
    start = next_step(facts(State.NEW), LISTED, RULES)
    assert start.kind is Kind.START_ORDER and start.route is not None
    assert start.route.amount == Decimal("25.00") and not start.guarded
    unmapped = facts(State.NEW, redemption=UNMAPPED)
    assert next_step(unmapped, LISTED, RULES).kind is Kind.HOLD
    refusing = replace(RULES, unmapped="refuse")
    refused = next_step(unmapped, LISTED, refusing)
    assert refused.kind is Kind.REFUSE and refused.reason == "not automatic"
    unreadable = next_step(facts(State.NEW, redemption="no id"), LISTED, RULES)
    assert unreadable.kind is Kind.HOLD_UNREADABLE and unreadable.reason == "no id"


def test_the_spend_guard_holds_unless_approved() -> None:
    capped = replace(RULES, spend=SpendPolicy(max_order={"USD": Decimal("10")}))
    assert next_step(facts(State.NEW), LISTED, capped).kind is Kind.HOLD_SPEND
    approved = next_step(facts(State.NEW, approved=True), LISTED, capped)
    assert approved.kind is Kind.START_ORDER
    daily = replace(RULES, spend=SpendPolicy(daily_limit={"USD": Decimal("30")}))
    # The worker leaves the daily sum to the ledger's guard on the move to ORDERING...
    guarded = next_step(facts(State.NEW), LISTED, daily)
    assert guarded.kind is Kind.START_ORDER and guarded.guarded
    # ... a dry run, which knows it, holds what would pass the limit.
    over = next_step(facts(State.NEW, spent_today={"USD": Decimal("10")}), LISTED, daily)
    assert over.kind is Kind.HOLD_SPEND and "daily spend limit" in over.reason


# --- the vendor's answers --------------------------------------------------------------


def order(status: OrderStatus) -> OrderResult:
    return OrderResult(vendor_order_id="V-1", status=status)


TRANSIENT = TransientVendorError("503", vendor="tremendous", status=503, retry_after=60)
NO_LOOKUP = LookupUnavailable("no look-up", vendor="http", idempotent_resend=True)
NO_REPEAT = LookupUnavailable("no look-up", vendor="http", idempotent_resend=False)

ORDERING_ANSWERS = [
    (LookedUp(result=None), Kind.PLACE_ORDER),
    (LookedUp(result=None, gone=True), Kind.CLOSE),
    (LookedUp(result=order(OrderStatus.COMPLETE), gone=True), Kind.MARK_ORDERED),
    (LookedUp(result=order(OrderStatus.PENDING)), Kind.MARK_PENDING),
    (Answered(result=order(OrderStatus.COMPLETE)), Kind.MARK_ORDERED),
    (Answered(result=order(OrderStatus.NEEDS_PERSON)), Kind.HOLD_ORDER),
    (Answered(result=order(OrderStatus.FAILED)), Kind.HOLD_ORDER),
    (NoLookUp(error=NO_LOOKUP), Kind.PLACE_ORDER),
    (NoLookUp(error=NO_LOOKUP, gone=True), Kind.HOLD_UNCONFIRMABLE),
    (NoLookUp(error=NO_REPEAT), Kind.HOLD_UNCONFIRMABLE),
    (VendorFailed(error=TRANSIENT), Kind.VENDOR_RETRY),
    (VendorFailed(error=UnknownOutcome("timeout")), Kind.VENDOR_RETRY),
    (VendorFailed(error=OperatorFacingError("401", status=401)), Kind.VENDOR_RETRY),
    (VendorFailed(error=ConfigFixable("unknown product")), Kind.VENDOR_HOLD),
    (VendorFailed(error=AdvocateFacingError("bad email")), Kind.VENDOR_REFUSE),
]


@pytest.mark.parametrize("state", [State.NEW, State.WAITING, State.ORDERING, State.HELD])
@pytest.mark.parametrize(("event", "want"), ORDERING_ANSWERS)
def test_every_answer_to_an_order_or_a_look_up(state: State, event: object,
                                               want: Kind) -> None:
    action = next_step(facts(state, key_saved=True), event, RULES)  # type: ignore[arg-type]
    assert action.kind is want
    if action.to is not None:
        # From ORDERING, where the order step moves the row before the call.
        assert can_transition(State.ORDERING, action.to)


def test_vendor_errors_count_attempts_and_give_up() -> None:
    retry = next_step(facts(State.ORDERING, attempts=1), VendorFailed(error=TRANSIENT), RULES)
    assert retry.attempts == 2 and retry.retry_after == 60
    last = next_step(facts(State.ORDERING, attempts=2), VendorFailed(error=TRANSIENT), RULES)
    assert last.kind is Kind.VENDOR_HOLD and last.attempts == 3


PENDING_ANSWERS = [
    (LookedUp(result=None), Kind.HOLD_ORDER),
    (LookedUp(result=order(OrderStatus.PENDING)), Kind.STILL_PENDING),
    (LookedUp(result=order(OrderStatus.COMPLETE)), Kind.MARK_ORDERED),
    (LookedUp(result=order(OrderStatus.FAILED)), Kind.HOLD_ORDER),
    (Answered(result=order(OrderStatus.PENDING)), Kind.STILL_PENDING),
    (NoLookUp(error=NO_LOOKUP), Kind.PLACE_ORDER),
    (NoLookUp(error=NO_LOOKUP, in_cycle=False), Kind.NOTHING),
    (NoLookUp(error=NO_REPEAT), Kind.CHECK_RETRY),
    (VendorFailed(error=TRANSIENT), Kind.CHECK_RETRY),
    (VendorFailed(error=AdvocateFacingError("refused")), Kind.VENDOR_REFUSE),
]


@pytest.mark.parametrize(("event", "want"), PENDING_ANSWERS)
def test_every_answer_about_a_pending_order(event: object, want: Kind) -> None:
    action = next_step(facts(State.PENDING), event, RULES)  # type: ignore[arg-type]
    assert action.kind is want
    if action.to is not None:
        assert can_transition(State.PENDING, action.to)


def test_a_pending_check_that_keeps_failing_is_held() -> None:
    action = next_step(facts(State.PENDING, attempts=2), VendorFailed(error=TRANSIENT), RULES)
    assert action.kind is Kind.CHECK_HOLD and action.attempts == 3


# --- Influitive's answers --------------------------------------------------------------

DECISION_TABLE = [
    (State.ORDERED, DecisionAnswer(outcome="taken"), True, Kind.FULFILLED, State.FULFILLED),
    (State.REFUSING, DecisionAnswer(outcome="taken"), True, Kind.REFUSED, State.REFUSED),
    (State.ORDERED, DecisionAnswer(outcome="perhaps", error="409"), True, Kind.PERHAPS,
     State.PERHAPS_FULFILLED),
    (State.REFUSING, DecisionAnswer(outcome="perhaps", error="409"), True, Kind.PERHAPS,
     State.PERHAPS_REFUSED),
    (State.ORDERED, DecisionAnswer(outcome="perhaps", error="409"), False, Kind.DECIDED,
     State.FULFILLED),
    (State.REFUSING, DecisionAnswer(outcome="perhaps", error="409"), False, Kind.DECIDED,
     State.REFUSED),
    (State.ORDERED, DecisionAnswer(outcome="failed", error="503"), True, Kind.DECISION_RETRY,
     State.ORDERED),
    (State.REFUSING, DecisionAnswer(outcome="failed", error="503"), True,
     Kind.DECISION_RETRY, State.REFUSING),
]


@pytest.mark.parametrize(("state", "event", "polled", "kind", "to"), DECISION_TABLE)
def test_every_answer_to_a_decision(state: State, event: DecisionAnswer, polled: bool,
                                    kind: Kind, to: State) -> None:
    action = next_step(facts(state, polled=polled), event, RULES)
    assert action.kind is kind and action.to is to
    assert can_transition(state, to)


def test_a_decision_that_keeps_failing_is_held() -> None:
    action = next_step(facts(State.ORDERED, attempts=2),
                       DecisionAnswer(outcome="failed", error="503"), RULES)
    assert action.kind is Kind.DECISION_HOLD and action.to is State.HELD
