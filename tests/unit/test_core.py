"""The core without I/O: states, routing, parsing, decisions, keys, backoff, messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poller.core.backoff import RetrySchedule
from poller.core.decide import (
    Hold,
    Order,
    Refuse,
    RewardRule,
    RouteProblem,
    plan_intake,
    route,
    route_from_metadata,
)
from poller.core.nextstep import Action, Facts, Rules, VendorFailed, next_step
from poller.domain.errors import (
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
)
from poller.domain.keys import idempotency_key
from poller.domain.messages import MessageTemplates, unknown_placeholders
from poller.domain.states import (
    ACTIVE,
    TERMINAL,
    UNCONFIRMED,
    IllegalTransition,
    State,
    check_transition,
    confirmed,
    reopen_to,
)
from poller.sources.influitive.wire import Unkeyable, parse_page, parse_redemption

RULES = [
    RewardRule(reward_id="37", vendor="tremendous", product="OKMHM2X2OHYV",
               amount=Decimal("25.00"), currency="USD"),
    RewardRule(reward_name="Coffee card", vendor="tremendous", product="COFFEE",
               amount=Decimal("5"), currency="USD"),
]


def item(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 4812, "reward_id": 37, "reward_name": "$25 gift card", "contact_id": 1021,
        "quantity": 1,
    }
    base.update(over)
    return base


CONTACTS = {"1021": {"id": 1021, "email": "advocate@example.com", "name": "Test Advocate"}}


# --- states --------------------------------------------------------------------------------

REOPEN = {
    State.FULFILLED: {State.ORDERED, State.HELD},
    State.REFUSED: {State.REFUSING, State.HELD},
    State.CLOSED_UPSTREAM: {State.NEW, State.ORDERED, State.HELD},
}


def test_finished_states_only_reopen_to_send_the_same_decision_again() -> None:
    # A finished row moves only when a complete poll still lists it: back to where the
    # same decision is sent again (or the row is worked afresh when nothing was ordered).
    assert set(REOPEN) == TERMINAL
    for terminal in TERMINAL:
        for target in State:
            if target in REOPEN[terminal]:
                check_transition(terminal, target)
            else:
                with pytest.raises(IllegalTransition):
                    check_transition(terminal, target)


def test_reopen_targets_and_confirmations() -> None:
    assert reopen_to(State.FULFILLED, order_placed=True) is State.ORDERED
    assert reopen_to(State.PERHAPS_FULFILLED, order_placed=True) is State.ORDERED
    assert reopen_to(State.REFUSED, order_placed=False) is State.REFUSING
    assert reopen_to(State.PERHAPS_REFUSED, order_placed=False) is State.REFUSING
    assert reopen_to(State.CLOSED_UPSTREAM, order_placed=False) is State.NEW
    assert reopen_to(State.CLOSED_UPSTREAM, order_placed=True) is State.ORDERED
    assert reopen_to(State.ORDERED, order_placed=True) is None
    assert confirmed(State.PERHAPS_FULFILLED) is State.FULFILLED
    assert confirmed(State.PERHAPS_REFUSED) is State.REFUSED
    assert confirmed(State.ORDERED) is None
    # Unconfirmed rows are neither finished nor picked up as due work.
    assert not UNCONFIRMED & (TERMINAL | ACTIVE)


def after_vendor_error(exc: VendorError, *, attempts: int, max_attempts: int) -> Action:
    """Where a failed order leaves a redemption that had ``attempts - 1`` before it."""
    return next_step(Facts(state=State.ORDERING, key_saved=True, attempts=attempts - 1),
                     VendorFailed(error=exc),
                     Rules(schedule=RetrySchedule(max_attempts=max_attempts)))


def test_config_fixable_is_held_at_once_never_refused_nor_retried() -> None:
    after = after_vendor_error(ConfigFixable("unknown UTID U999"), attempts=1, max_attempts=8)
    assert after.to is State.HELD and after.operator
    assert "U999" in after.reason and "[[rewards]]" in after.reason


def test_an_order_is_never_placed_twice_by_the_state_machine() -> None:
    # Once ordered, the only ways on are deciding at Influitive or a person.
    with pytest.raises(IllegalTransition):
        check_transition(State.ORDERED, State.ORDERING)
    with pytest.raises(IllegalTransition):
        check_transition(State.ORDERED, State.REFUSING)
    with pytest.raises(IllegalTransition):
        check_transition(State.FULFILLED, State.ORDERING)
    with pytest.raises(IllegalTransition):
        check_transition(State.PERHAPS_FULFILLED, State.ORDERING)


# --- parsing ---------------------------------------------------------------------------------

def test_side_loaded_contact_is_joined_and_folded_into_the_payload() -> None:
    r = parse_redemption(item(), CONTACTS)
    assert r.id == "4812"
    assert r.contact.email == "advocate@example.com"
    assert r.reward_id == "37"
    assert r.problems == ()
    # The stored payload alone parses to the same redemption.
    assert parse_redemption(r.raw) == r


def test_nested_contact_and_nested_reward() -> None:
    r = parse_redemption({"id": "abc", "reward": {"id": 9, "name": "Mug"},
                          "contact": {"email": "a@example.com", "first_name": "Ann"}})
    assert (r.id, r.reward_id, r.reward_name) == ("abc", "9", "Mug")
    assert r.contact.display_name == "Ann"


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"contact_id": None}, "no email"),
        ({"contact_id": 999}, "no email"),
        ({"reward_metadata": "oops"}, "reward_metadata is not an object"),
        ({"quantity": 3}, "more than one"),
        ({"quantity": "x"}, "not a positive integer"),
    ],
)
def test_malformed_redemptions_carry_their_problem(over: dict[str, object], problem: str) -> None:
    r = parse_redemption(item(**over), CONTACTS)
    assert any(problem in p for p in r.problems), r.problems


@pytest.mark.parametrize("bad", [None, "", "  ", True, 1.5, {"x": 1}, [1], "x" * 500])
def test_unkeyable_ids(bad: object) -> None:
    with pytest.raises(Unkeyable):
        parse_redemption(item(id=bad))


def test_parse_page_shapes() -> None:
    items, contacts = parse_page({"reward_redemptions": [item()], "contacts": [CONTACTS["1021"]]})
    assert len(items) == 1 and "1021" in contacts
    assert parse_page([item()])[0] == [item()]
    with pytest.raises(ValueError):
        parse_page({"something": []})
    with pytest.raises(ValueError):
        parse_page("<html>")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(
    st.sampled_from(["id", "reward_id", "reward_name", "contact", "contact_id", "quantity",
                     "reward_metadata", "shipping", "points", "reward"]),
    json_values,
))
def test_parser_never_fails_but_unkeyable(data: dict[str, object]) -> None:
    try:
        r = parse_redemption(data, CONTACTS)
    except Unkeyable:
        return
    assert r.id
    assert parse_redemption(r.raw).id == r.id
    # Whatever the payload, planning it never raises.
    plan_intake(r, RULES, unmapped="hold", unmapped_reason="x", vendors={"tremendous"})


# --- routing ---------------------------------------------------------------------------------

def test_config_rules_match_on_id_then_name() -> None:
    assert route(parse_redemption(item(), CONTACTS), RULES).product == "OKMHM2X2OHYV"  # type: ignore[union-attr]
    by_name = parse_redemption(item(reward_id=1, reward_name="coffee CARD"), CONTACTS)
    assert route(by_name, RULES).product == "COFFEE"  # type: ignore[union-attr]
    assert route(parse_redemption(item(reward_id=2, reward_name="?"), CONTACTS), RULES) is None


def test_metadata_wins_over_rules() -> None:
    r = parse_redemption(item(reward_metadata={"vendor": "Tremendous", "product": "P1",
                                               "amount": "10", "currency": "eur"}), CONTACTS)
    got = route(r, RULES)
    assert got is not None
    assert (got.vendor, got.product, got.amount, got.currency, got.origin) == (
        "tremendous", "P1", Decimal("10"), "EUR", "metadata")


def test_metadata_without_amount_falls_back_to_rules() -> None:
    r = parse_redemption(item(reward_metadata={"vendor": "tremendous", "product": "P"}),
                         CONTACTS)
    assert route(r, RULES).origin == "config:reward_id=37"  # type: ignore[union-attr]


@pytest.mark.parametrize("amount", ["-5", "0", "abc", "1e9", True, "NaN"])
def test_absurd_metadata_amounts_are_problems(amount: object) -> None:
    with pytest.raises(RouteProblem):
        route_from_metadata({"vendor": "tremendous", "product": "P", "amount": amount})


# --- intake decisions ------------------------------------------------------------------------

def test_plan_intake_branches() -> None:
    ok = parse_redemption(item(), CONTACTS)
    kw = {"unmapped_reason": "no", "vendors": {"tremendous"}}
    assert isinstance(plan_intake(ok, RULES, unmapped="hold", **kw), Order)  # type: ignore[arg-type]
    unmapped = parse_redemption(item(reward_id=99, reward_name="Swag"), CONTACTS)
    held = plan_intake(unmapped, RULES, unmapped="hold", **kw)  # type: ignore[arg-type]
    assert isinstance(held, Hold) and "reward_id='99'" in held.reason
    assert isinstance(plan_intake(unmapped, RULES, unmapped="refuse", **kw), Refuse)  # type: ignore[arg-type]
    no_email = parse_redemption(item(contact_id=None), CONTACTS)
    assert isinstance(plan_intake(no_email, RULES, unmapped="refuse", **kw), Hold)  # type: ignore[arg-type]
    other = parse_redemption(item(reward_metadata={"vendor": "tango", "amount": 5}), CONTACTS)
    h = plan_intake(other, RULES, unmapped="hold", **kw)  # type: ignore[arg-type]
    assert isinstance(h, Hold) and "[vendors.tango]" in h.reason


def test_vendor_error_classes_decide_the_next_state() -> None:
    kw = {"attempts": 1, "max_attempts": 3}
    assert after_vendor_error(AdvocateFacingError("gone"), **kw).to is State.REFUSING
    op = after_vendor_error(OperatorFacingError("funds"), **kw)
    assert op.to is State.WAITING and op.operator
    tr = after_vendor_error(TransientVendorError("503", retry_after=90), **kw)
    assert tr.to is State.WAITING and tr.retry_after == 90
    assert after_vendor_error(UnknownOutcome("reset"), **kw).to is State.WAITING
    # Operator-facing errors never refuse, even when attempts run out: a person decides.
    assert after_vendor_error(OperatorFacingError("funds"), attempts=3,
                              max_attempts=3).to is State.HELD


# --- keys, backoff, messages ------------------------------------------------------------------

def test_idempotency_keys_are_stable_and_distinct() -> None:
    a = idempotency_key(namespace="org", source="influitive", redemption_id="1")
    assert a == idempotency_key(namespace="org", source="influitive", redemption_id="1")
    assert a != idempotency_key(namespace="org2", source="influitive", redemption_id="1")
    assert a != idempotency_key(namespace="org", source="influitive", redemption_id="1",
                                generation=1)
    assert a.isalnum() and len(a) <= 100


def test_backoff_doubles_caps_and_honours_retry_after() -> None:
    s = RetrySchedule(max_attempts=5, initial_seconds=30, max_seconds=100)
    assert [s.delay(n) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]
    assert s.delay(1, retry_after=500) == 500
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert s.next_at(now, 2) == now + timedelta(seconds=60)
    assert s.exhausted(5) and not s.exhausted(4)


def test_messages_render_and_check_placeholders() -> None:
    assert unknown_placeholders("Hi {recipient_name}, {oops}") == ["oops"]
    text = MessageTemplates.render("Your {reward_name}: {delivery}.", {"reward_name": "card"})
    assert text == "Your card: ."
