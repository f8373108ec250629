"""The ledger contract: one suite, run on MemoryLedger, SQLite and PostgreSQL (see the
``ledger`` fixture in conftest.py). What passes here is what the worker may rely on."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import make_url

from poller.domain.model import Contact, LedgerEntry, Redemption
from poller.domain.states import ACTIVE, TERMINAL, IllegalTransition, State
from poller.ledger import IdempotencyKeyInUse, LedgerUnavailable, open_ledger
from poller.ledger.memory import MemoryLedger
from poller.ledger.sql import SqlLedger
from poller.ports import Changes, LeaseLost, SpendGuard, SpendLimitReached
from tests.system.faults.harness import TcpProxy

AnyLedger = MemoryLedger | SqlLedger

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LEASE = 300.0


def red(
    rid: str,
    *,
    source: str = "influitive",
    email: str | None = None,
    reward_id: str | None = "r1",
    reward_name: str | None = "Gift card",
    raw: dict[str, Any] | None = None,
) -> Redemption:
    return Redemption(
        source=source,
        id=rid,
        reward_id=reward_id,
        reward_name=reward_name,
        contact=Contact(email=email if email is not None else f"advocate{rid}@example.com"),
        raw=raw if raw is not None else {"id": rid, "reward": {"id": reward_id}},
    )


def recorded(ledger: AnyLedger, *rids: str, now: datetime = T0) -> list[LedgerEntry]:
    poll = ledger.start_poll(now)
    ledger.record(poll, [red(r) for r in rids], now)
    out = []
    for r in rids:
        entry = ledger.get("influitive", r)
        assert entry is not None
        out.append(entry)
    return out


def move(
    ledger: AnyLedger, pk: int, *states: State, now: datetime = T0,
    changes: Changes | None = None,
) -> LedgerEntry:
    """Walk a row through legal ``states`` under a lease, then give the lease back."""
    assert ledger.claim(pk, "mover", now, LEASE) is not None
    entry: LedgerEntry | None = None
    for state in states:
        entry = ledger.transition(pk, "mover", state, f"to {state.value}", now, changes)
    ledger.release(pk, "mover")
    assert entry is not None
    return entry


# --- record ------------------------------------------------------------------------------


def test_record_inserts_new_rows_with_their_fields_and_a_recorded_event(ledger: AnyLedger) -> None:
    poll = ledger.start_poll(T0)
    raw = {"id": "17", "contact": {"email": "a@example.com"}, "nested": [1, 2.5, None, True]}
    r = red("17", email="a@example.com", reward_id="rw9", reward_name="Amazon $10", raw=raw)

    assert ledger.record(poll, [r], T0) == 1

    entry = ledger.get("influitive", "17")
    assert entry is not None
    assert entry.state is State.NEW
    assert (entry.source, entry.redemption_id) == ("influitive", "17")
    assert dict(entry.payload) == raw
    assert (entry.reward_id, entry.reward_name) == ("rw9", "Amazon $10")
    assert entry.email == "a@example.com"
    assert entry.attempts == 0
    assert entry.vendor is None and entry.amount is None and entry.idempotency_key is None
    assert entry.created_at == entry.updated_at == T0
    assert entry.last_seen_poll == poll
    assert ledger.get_pk(entry.pk) == entry
    assert ledger.events(entry.pk) == [
        _event(T0, None, State.NEW, "recorded"),
    ]


def _event(
    at: datetime, frm: State | None, to: State, detail: str, actor: str | None = None
) -> Any:
    from poller.domain.model import Event

    return Event(at=at, from_state=frm, to_state=to, detail=detail, actor=actor)


def test_record_is_idempotent_across_polls_and_keeps_the_first_data(ledger: AnyLedger) -> None:
    p1 = ledger.start_poll(T0)
    assert ledger.record(p1, [red("1"), red("2")], T0) == 2
    assert ledger.record(p1, [red("1"), red("2")], T0) == 0  # same poll twice

    later = T0 + timedelta(minutes=5)
    p2 = ledger.start_poll(later)
    changed = red("1", email="changed@example.com", raw={"id": "1", "v": 2})
    assert ledger.record(p2, [changed, red("3")], later) == 1

    one = ledger.get("influitive", "1")
    assert one is not None
    assert one.email == "advocate1@example.com"  # recorded once, never overwritten
    assert one.created_at == T0
    assert one.last_seen_poll == p2
    assert len(ledger.events(one.pk)) == 1
    assert ledger.counts() == {State.NEW: 3}


def test_duplicates_within_one_batch_are_recorded_once(ledger: AnyLedger) -> None:
    poll = ledger.start_poll(T0)
    batch = [red("9", email="first@example.com"), red("8"), red("9", email="second@example.com")]

    assert ledger.record(poll, batch, T0) == 2

    nine = ledger.get("influitive", "9")
    assert nine is not None and nine.email == "first@example.com"
    assert len(ledger.events(nine.pk)) == 1
    assert len(ledger.list()) == 2


def test_the_same_id_from_two_sources_is_two_redemptions(ledger: AnyLedger) -> None:
    poll = ledger.start_poll(T0)
    assert ledger.record(poll, [red("5"), red("5", source="other")], T0) == 2
    a, b = ledger.get("influitive", "5"), ledger.get("other", "5")
    assert a is not None and b is not None and a.pk != b.pk
    assert ledger.get("nowhere", "5") is None


def test_an_empty_batch_records_nothing(ledger: AnyLedger) -> None:
    poll = ledger.start_poll(T0)
    assert ledger.record(poll, [], T0) == 0
    assert ledger.list() == []


def test_last_seen_poll_only_moves_forward(ledger: AnyLedger) -> None:
    p1, p2 = ledger.start_poll(T0), ledger.start_poll(T0)
    ledger.record(p2, [red("1")], T0)
    ledger.record(p1, [red("1")], T0)  # the older poll finishes late
    entry = ledger.get("influitive", "1")
    assert entry is not None and entry.last_seen_poll == p2


def test_a_big_batch_is_recorded_in_one_call(ledger: AnyLedger) -> None:
    poll = ledger.start_poll(T0)
    batch = [red(str(i)) for i in range(1200)]
    assert ledger.record(poll, batch, T0) == 1200
    p2 = ledger.start_poll(T0)
    assert ledger.record(p2, batch, T0) == 0
    assert ledger.unseen_since(p2, ACTIVE) == []
    assert ledger.counts() == {State.NEW: 1200}


def test_text_no_database_can_store_is_replaced_not_fatal(ledger: AnyLedger) -> None:
    poll = ledger.start_poll(T0)
    bad = Redemption(
        id="77", reward_name="Gift\x00card", contact=Contact(email="x\ud800@example.com"),
        raw={"name": "nul\x00 and \ud800 surrogate"},
    )
    assert ledger.record(poll, [bad, red("78")], T0) == 2
    entry = ledger.get("influitive", "77")
    assert entry is not None
    assert entry.reward_name == "Gift\ufffdcard"
    assert entry.email == "x\ufffd@example.com"
    assert entry.payload == {"name": "nul\x00 and \ud800 surrogate"}  # JSON escapes keep it


def test_a_payload_that_is_not_json_fails_the_batch(ledger: AnyLedger) -> None:
    poll = ledger.start_poll(T0)
    with pytest.raises(TypeError):
        ledger.record(poll, [red("1"), red("2", raw={"when": object()})], T0)
    assert ledger.list() == []


# --- leases ------------------------------------------------------------------------------


def test_claim_is_a_compare_and_swap_on_the_lease(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")

    mine = ledger.claim(entry.pk, "w1", T0, 60)
    assert mine is not None and mine.pk == entry.pk and mine.state is State.NEW
    assert ledger.claim(entry.pk, "w2", T0 + timedelta(seconds=59), 60) is None
    # The holder may renew its own lease.
    assert ledger.claim(entry.pk, "w1", T0 + timedelta(seconds=30), 60) is not None
    assert ledger.claim(entry.pk, "w2", T0 + timedelta(seconds=89), 60) is None
    # Expired: anyone may take it, and the old holder has lost it.
    assert ledger.claim(entry.pk, "w2", T0 + timedelta(seconds=91), 60) is not None
    with pytest.raises(LeaseLost):
        ledger.transition(entry.pk, "w1", State.WAITING, "late", T0 + timedelta(seconds=92))


def test_claim_of_a_missing_row_is_none(ledger: AnyLedger) -> None:
    assert ledger.claim(12345, "w1", T0, 60) is None


def test_claim_needs_a_positive_lease(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    with pytest.raises(ValueError):
        ledger.claim(entry.pk, "w1", T0, 0)


def test_release_frees_the_row_only_for_its_holder(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    assert ledger.claim(entry.pk, "w1", T0, 60) is not None
    ledger.release(entry.pk, "w2")  # not w2's: no effect
    assert ledger.claim(entry.pk, "w2", T0, 60) is None
    ledger.release(entry.pk, "w1")
    assert ledger.claim(entry.pk, "w2", T0, 60) is not None
    ledger.release(999_999, "w1")  # a missing row is not an error


def test_claim_transition_takes_the_lease_and_moves_the_row_at_once(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    t1 = T0 + timedelta(seconds=1)
    moved = ledger.claim_transition(
        entry.pk, "w1", State.ORDERING, "placing order", t1, 60,
        Changes(idempotency_key="k1", vendor="tango", amount=Decimal("5"), currency="USD"),
        expect=State.NEW,
    )
    assert moved is not None and moved.state is State.ORDERING
    assert (moved.idempotency_key, moved.vendor, moved.amount) == ("k1", "tango", Decimal("5"))
    assert moved.unfinished_steps == 1 and moved.payload == entry.payload
    assert ledger.get_pk(entry.pk) == moved
    assert ledger.events(entry.pk)[-1] == _event(t1, State.NEW, State.ORDERING,
                                                  "placing order", "w1")
    # The lease is w1's now: nobody else claims it, w1 carries on under it.
    assert ledger.claim(entry.pk, "w2", t1, 60) is None
    ordered = ledger.transition(entry.pk, "w1", State.ORDERED, "placed", t1,
                                expect=State.ORDERING)
    assert ordered.state is State.ORDERED


def test_claim_transition_changes_nothing_unless_the_row_is_free_and_as_expected(
    ledger: AnyLedger,
) -> None:
    a, b = recorded(ledger, "a", "b")
    assert ledger.claim(a.pk, "w2", T0, 60) is not None
    # Held by another worker, in another state than expected, or not there: None.
    assert ledger.claim_transition(a.pk, "w1", State.ORDERING, "x", T0, 60,
                                   expect=State.NEW) is None
    assert ledger.claim_transition(b.pk, "w1", State.ORDERING, "x", T0, 60,
                                   expect=State.WAITING) is None
    assert ledger.claim_transition(999_999, "w1", State.ORDERING, "x", T0, 60,
                                   expect=State.NEW) is None
    with pytest.raises(IllegalTransition):
        ledger.claim_transition(b.pk, "w1", State.FULFILLED, "x", T0, 60, expect=State.NEW)
    with pytest.raises(ValueError):
        ledger.claim_transition(b.pk, "w1", State.ORDERING, "x", T0, 0, expect=State.NEW)
    assert [ledger.get_pk(e.pk) for e in (b,)] == [b]
    assert [e.detail for e in ledger.events(b.pk)] == ["recorded"]
    # An expired lease is taken over, and the step counted on top of the dead one.
    later = T0 + timedelta(seconds=61)
    moved = ledger.claim_transition(a.pk, "w1", State.ORDERING, "x", later, 60,
                                    expect=State.NEW)
    assert moved is not None and moved.unfinished_steps == 2


def test_a_move_can_give_the_lease_back_with_it(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    assert ledger.claim(entry.pk, "w1", T0, 60) is not None
    ledger.transition(entry.pk, "w1", State.REFUSING, "refusing", T0, expect=State.NEW)
    done = ledger.transition(entry.pk, "w1", State.REFUSED, "refused", T0,
                             expect=State.REFUSING, release=True)
    assert done.state is State.REFUSED and done.unfinished_steps == 0
    # Free at once, for anyone, long before the lease would have run out.
    assert ledger.claim(entry.pk, "w2", T0, 60) is not None


# --- transitions -------------------------------------------------------------------------


def test_transitions_set_columns_and_tell_the_story(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    pk = entry.pk
    t1, t2, t3 = (T0 + timedelta(seconds=s) for s in (1, 2, 3))
    assert ledger.claim(pk, "w1", T0, LEASE) is not None

    ordering = ledger.transition(
        pk, "w1", State.ORDERING, "placing order", t1,
        Changes(idempotency_key="rpkey1", vendor="tango", product="amazon-us",
                amount=Decimal("10.50"), currency="USD", attempts=1),
        expect=State.NEW,
    )
    assert ordering.state is State.ORDERING
    assert (ordering.vendor, ordering.product, ordering.currency) == ("tango", "amazon-us", "USD")
    assert ordering.amount == Decimal("10.50") and str(ordering.amount) == "10.50"
    assert ordering.idempotency_key == "rpkey1" and ordering.attempts == 1
    assert ordering.updated_at == t1 and ordering.created_at == T0

    ordered = ledger.transition(
        pk, "w1", State.ORDERED, "vendor confirmed", t2, Changes(vendor_order_id="V-1")
    )
    assert ordered.vendor_order_id == "V-1" and ordered.vendor == "tango"  # None = unchanged
    done = ledger.transition(
        pk, "w1", State.FULFILLED, "fulfilled at Influitive", t3,
        Changes(message="Your card is on its way"), expect=State.ORDERED,
    )
    assert done.state is State.FULFILLED and done.message == "Your card is on its way"
    assert ledger.get_pk(pk) == done

    assert ledger.events(pk) == [
        _event(T0, None, State.NEW, "recorded"),
        _event(t1, State.NEW, State.ORDERING, "placing order", "w1"),
        _event(t2, State.ORDERING, State.ORDERED, "vendor confirmed", "w1"),
        _event(t3, State.ORDERED, State.FULFILLED, "fulfilled at Influitive", "w1"),
    ]


def test_a_transition_without_the_lease_raises_lease_lost_and_changes_nothing(
    ledger: AnyLedger,
) -> None:
    (entry,) = recorded(ledger, "1")
    pk = entry.pk
    with pytest.raises(LeaseLost):  # never claimed
        ledger.transition(pk, "w1", State.WAITING, "x", T0)
    assert ledger.claim(pk, "w2", T0, 60) is not None
    with pytest.raises(LeaseLost):  # someone else's
        ledger.transition(pk, "w1", State.WAITING, "x", T0)
    with pytest.raises(LeaseLost):  # its own, but expired
        ledger.transition(pk, "w2", State.WAITING, "x", T0 + timedelta(seconds=61))
    # Exactly at the end of the lease it is still held.
    ledger.transition(pk, "w2", State.WAITING, "in time", T0 + timedelta(seconds=60))
    ledger.release(pk, "w2")
    with pytest.raises(LeaseLost):  # released
        ledger.transition(pk, "w2", State.ORDERING, "x", T0)
    with pytest.raises(LeaseLost):  # no such row
        ledger.transition(999_999, "w2", State.ORDERING, "x", T0)

    after = ledger.get_pk(pk)
    assert after is not None and after.state is State.WAITING
    assert [e.detail for e in ledger.events(pk)] == ["recorded", "in time"]


def test_a_transition_from_an_unexpected_state_raises_lease_lost(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    assert ledger.claim(entry.pk, "w1", T0, LEASE) is not None
    with pytest.raises(LeaseLost):
        ledger.transition(entry.pk, "w1", State.ORDERED, "x", T0, expect=State.ORDERING)
    assert ledger.get_pk(entry.pk) == entry
    assert len(ledger.events(entry.pk)) == 1


def test_an_illegal_transition_raises_and_changes_nothing(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    assert ledger.claim(entry.pk, "w1", T0, LEASE) is not None
    with pytest.raises(IllegalTransition):
        ledger.transition(
            entry.pk, "w1", State.FULFILLED, "x", T0, Changes(vendor="should-not-stick")
        )
    assert ledger.get_pk(entry.pk) == entry
    ledger.release(entry.pk, "w1")
    done = move(ledger, entry.pk, State.REFUSING, State.REFUSED)
    assert done.state.terminal
    assert ledger.claim(entry.pk, "w1", T0, LEASE) is not None
    with pytest.raises(IllegalTransition):
        ledger.transition(entry.pk, "w1", State.NEW, "back from the dead", T0)


def test_changes_can_clear_columns(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    pk = entry.pk
    held = move(
        ledger, pk, State.HELD,
        changes=Changes(hold_reason="no email", next_attempt_at=T0, last_error="boom"),
    )
    assert (held.hold_reason, held.next_attempt_at, held.last_error) == ("no email", T0, "boom")
    back = move(
        ledger, pk, State.NEW,
        changes=Changes(clear=frozenset({"hold_reason", "next_attempt_at", "last_error"})),
    )
    assert (back.hold_reason, back.next_attempt_at, back.last_error) == (None, None, None)
    assert ledger.claim(pk, "w1", T0, LEASE) is not None
    for bad in ({"attempts"}, {"state"}, {"nonsense"}):
        with pytest.raises(ValueError):
            ledger.transition(pk, "w1", State.WAITING, "x", T0, Changes(clear=frozenset(bad)))


def test_an_idempotency_key_belongs_to_one_redemption(ledger: AnyLedger) -> None:
    a, b = recorded(ledger, "1", "2")
    move(ledger, a.pk, State.ORDERING, changes=Changes(idempotency_key="rpsame"))
    assert ledger.claim(b.pk, "w1", T0, LEASE) is not None
    with pytest.raises(IdempotencyKeyInUse):
        ledger.transition(b.pk, "w1", State.ORDERING, "x", T0, Changes(idempotency_key="rpsame"))
    assert ledger.get_pk(b.pk) == b
    # The row itself may save its key again.
    again = move(ledger, a.pk, State.ORDERING, changes=Changes(idempotency_key="rpsame"))
    assert again.idempotency_key == "rpsame"


def test_a_failed_move_leaves_the_next_moves_working(ledger: AnyLedger) -> None:
    a, b, c = recorded(ledger, "1", "2", "3")
    t1 = T0 + timedelta(seconds=1)
    first = ledger.claim_transition(a.pk, "w1", State.ORDERING, "ordering a", t1, 60,
                                    Changes(idempotency_key="rpk1"), expect=State.NEW)
    assert first is not None
    assert ledger.claim(b.pk, "w1", t1, 60) is not None
    with pytest.raises(IdempotencyKeyInUse):
        ledger.transition(b.pk, "w1", State.ORDERING, "x", t1,
                          Changes(idempotency_key="rpk1"), expect=State.NEW)
    with pytest.raises(LeaseLost):
        ledger.transition(c.pk, "w1", State.ORDERING, "x", t1, expect=State.NEW)
    assert ledger.renew(a.pk, "w1", t1, 120)
    done = ledger.transition(a.pk, "w1", State.ORDERED, "placed", t1, expect=State.ORDERING,
                             release=True)
    ledger.release(b.pk, "w1")
    assert done.state is State.ORDERED and done.unfinished_steps == 0
    assert ledger.get_pk(b.pk) == b
    assert [e.detail for e in ledger.events(b.pk)] == ["recorded"]
    assert [e.detail for e in ledger.events(a.pk)] == ["recorded", "ordering a", "placed"]
    assert ledger.claim(a.pk, "w2", t1, 60) is not None  # released by the move


def test_no_connection_is_held_between_calls(ledger: AnyLedger) -> None:
    if not isinstance(ledger, SqlLedger):
        return  # the memory ledger has no connections
    (entry,) = recorded(ledger, "1")
    assert ledger.claim_transition(entry.pk, "w1", State.ORDERING, "x", T0, 60,
                                   expect=State.NEW) is not None
    assert ledger.renew(entry.pk, "w1", T0, 60)
    with pytest.raises(LeaseLost):
        ledger.transition(entry.pk, "w2", State.ORDERED, "y", T0, expect=State.ORDERING)
    ledger.transition(entry.pk, "w1", State.ORDERED, "z", T0, expect=State.ORDERING,
                      release=True)
    # Each call took a pooled connection for its statement or transaction and gave it back.
    assert ledger.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert [e.detail for e in ledger.events(entry.pk)] == ["recorded", "x", "z"]


@pytest.mark.parametrize(
    "amount",
    ["10.50", "0.000001", "25", "1E+3", "-0", "12345678901234567890.123456789012345678"],
)
def test_amounts_round_trip_exactly(ledger: AnyLedger, amount: str) -> None:
    (entry,) = recorded(ledger, "1")
    moved = move(ledger, entry.pk, State.WAITING, changes=Changes(amount=Decimal(amount)))
    for seen in (moved, ledger.get_pk(entry.pk)):
        assert seen is not None
        assert isinstance(seen.amount, Decimal) and str(seen.amount) == amount


def test_an_amount_must_be_a_finite_decimal(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    assert ledger.claim(entry.pk, "w1", T0, LEASE) is not None
    with pytest.raises(ValueError):
        ledger.transition(entry.pk, "w1", State.WAITING, "x", T0, Changes(amount=Decimal("NaN")))


def test_times_come_back_timezone_aware_in_utc(ledger: AnyLedger) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=paris)  # 12:00:00.123456 UTC
    poll = ledger.start_poll(local)
    ledger.record(poll, [red("1")], local)
    entry = ledger.get("influitive", "1")
    assert entry is not None
    retry_at = datetime(2024, 5, 1, 10, 30, tzinfo=timezone(timedelta(hours=-4)))
    moved = move(ledger, entry.pk, State.WAITING, now=local,
                 changes=Changes(next_attempt_at=retry_at))
    stored = ledger.get_pk(entry.pk)
    assert stored is not None
    for value in (
        stored.created_at, stored.updated_at, stored.next_attempt_at, moved.next_attempt_at,
        ledger.events(entry.pk)[0].at,
    ):
        assert value is not None and value.utcoffset() == timedelta(0)
    assert stored.created_at == local and stored.created_at.hour == 12
    assert stored.created_at.microsecond == 123456
    assert stored.next_attempt_at == retry_at
    ledger.finish_poll(poll, local, ok=True, complete=True, seen=1)
    last = ledger.last_successful_poll()
    assert last is not None and last.started_at == local
    assert last.started_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(ledger: AnyLedger) -> None:
    naive = datetime(2024, 5, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.start_poll(naive)
    poll = ledger.start_poll(T0)
    with pytest.raises(ValueError):
        ledger.record(poll, [red("1")], naive)
    (entry,) = recorded(ledger, "2")
    with pytest.raises(ValueError):
        ledger.claim(entry.pk, "w1", naive, 60)
    assert ledger.claim(entry.pk, "w1", T0, 60) is not None
    with pytest.raises(ValueError):
        ledger.transition(
            entry.pk, "w1", State.WAITING, "x", T0, Changes(next_attempt_at=naive)
        )
    with pytest.raises(ValueError):
        ledger.due(naive, 10)


# --- the worker's queries ----------------------------------------------------------------


def test_due_returns_free_active_rows_whose_time_has_come(ledger: AnyLedger) -> None:
    now = T0 + timedelta(hours=1)
    new, later, past, held, done, leased, expired = recorded(
        ledger, "new", "later", "past", "held", "done", "leased", "expired"
    )
    move(ledger, later.pk, State.WAITING,
         changes=Changes(next_attempt_at=now + timedelta(seconds=1)))
    move(ledger, past.pk, State.WAITING, changes=Changes(next_attempt_at=now))
    move(ledger, held.pk, State.HELD)
    move(ledger, done.pk, State.REFUSING, State.REFUSED)
    assert ledger.claim(leased.pk, "other", now - timedelta(seconds=10), 60) is not None
    assert ledger.claim(expired.pk, "other", now - timedelta(seconds=120), 60) is not None

    due = ledger.due(now, 100)
    assert [e.pk for e in due] == [new.pk, past.pk, expired.pk]
    assert [e.pk for e in ledger.due(now, 2)] == [new.pk, past.pk]
    assert [e.pk for e in ledger.due(now + timedelta(minutes=5), 100)] == [
        new.pk, later.pk, past.pk, leased.pk, expired.pk,
    ]
    with pytest.raises(ValueError):
        ledger.due(now, 0)


def test_unseen_since_lists_rows_the_poll_did_not_see(ledger: AnyLedger) -> None:
    p1 = ledger.start_poll(T0)
    ledger.record(p1, [red("a"), red("b"), red("c"), red("d")], T0)
    d = ledger.get("influitive", "d")
    assert d is not None
    move(ledger, d.pk, State.REFUSING, State.REFUSED)
    p2 = ledger.start_poll(T0)
    ledger.record(p2, [red("b")], T0)

    unseen = ledger.unseen_since(p2, ACTIVE)
    assert [e.redemption_id for e in unseen] == ["a", "c"]
    assert [e.redemption_id for e in ledger.unseen_since(p2, TERMINAL)] == ["d"]
    assert ledger.unseen_since(p1, ACTIVE) == []
    assert ledger.unseen_since(p2, frozenset()) == []


def test_list_is_newest_first_and_filters(ledger: AnyLedger) -> None:
    poll = ledger.start_poll(T0)
    rows = [
        red("1", email="Ann@Example.com", reward_id="r1", reward_name="Amazon"),
        red("2", email="bob@example.com", reward_id="r2", reward_name="Visa"),
        red("3", email="ann@example.com", reward_id="r3", reward_name="Visa", source="other"),
    ]
    for i, r in enumerate(rows):
        ledger.record(poll, [r], T0 + timedelta(days=i))
    one, two, three = (ledger.get(r.source, r.id) for r in rows)
    assert one is not None and two is not None and three is not None
    move(ledger, two.pk, State.ORDERING, changes=Changes(vendor="tango"))

    def ids(**kwargs: Any) -> list[str]:
        return [e.redemption_id for e in ledger.list(**kwargs)]

    assert ids() == ["3", "2", "1"]
    assert ids(limit=2) == ["3", "2"]
    assert ids(states=frozenset({State.NEW})) == ["3", "1"]
    assert ids(states=frozenset()) == []
    assert ids(filters={"vendor": "tango"}) == ["2"]
    assert ids(filters={"reward": "Visa"}) == ["3", "2"]
    assert ids(filters={"reward": "r1"}) == ["1"]
    assert ids(filters={"email": "ann@example.com"}) == ["3", "1"]
    assert ids(filters={"source": "other"}) == ["3"]
    assert ids(filters={"since": T0 + timedelta(days=1)}) == ["3", "2"]
    assert ids(filters={"until": T0 + timedelta(days=1)}) == ["1"]
    assert ids(filters={"since": T0, "until": T0 + timedelta(days=2), "reward": "Visa"}) == ["2"]
    assert ids(filters={"vendor": None}) == ["3", "2", "1"]  # None means "any"
    with pytest.raises(ValueError, match="unknown ledger filter"):
        ledger.list(filters={"colour": "red"})
    with pytest.raises(ValueError):
        ledger.list(filters={"since": "yesterday"})


def test_counts_by_state(ledger: AnyLedger) -> None:
    assert ledger.counts() == {}
    a, b, _ = recorded(ledger, "1", "2", "3")
    move(ledger, a.pk, State.HELD)
    move(ledger, b.pk, State.REFUSING, State.REFUSED)
    assert ledger.counts() == {State.NEW: 1, State.HELD: 1, State.REFUSED: 1}


def test_oldest_waiting_includes_held_and_skips_finished(ledger: AnyLedger) -> None:
    assert ledger.oldest_waiting() is None
    (first,) = recorded(ledger, "1", now=T0)
    (second,) = recorded(ledger, "2", now=T0 + timedelta(hours=1))
    move(ledger, first.pk, State.HELD)
    oldest = ledger.oldest_waiting()
    assert oldest is not None and oldest.pk == first.pk and oldest.state is State.HELD
    move(ledger, first.pk, State.CLOSED_UPSTREAM)
    oldest = ledger.oldest_waiting()
    assert oldest is not None and oldest.pk == second.pk
    move(ledger, second.pk, State.CLOSED_UPSTREAM)
    assert ledger.oldest_waiting() is None


# --- polls -------------------------------------------------------------------------------


def test_polls_are_recorded_and_the_last_good_one_is_found(ledger: AnyLedger) -> None:
    assert ledger.last_successful_poll() is None
    p1 = ledger.start_poll(T0)
    ledger.finish_poll(p1, T0 + timedelta(seconds=3), ok=True, complete=False, seen=7)
    p2 = ledger.start_poll(T0 + timedelta(minutes=1))
    assert p2 > p1
    ledger.finish_poll(p2, T0 + timedelta(minutes=2), ok=False, complete=False, seen=0,
                       error="Influitive answered 503")
    p3 = ledger.start_poll(T0 + timedelta(minutes=3))  # still running

    last = ledger.last_successful_poll()
    assert last is not None
    assert last.id == p1
    assert (last.started_at, last.finished_at) == (T0, T0 + timedelta(seconds=3))
    assert (last.ok, last.complete, last.seen, last.error) == (True, False, 7, None)
    ledger.finish_poll(p3, T0 + timedelta(minutes=4), ok=True, complete=True, seen=2)
    last = ledger.last_successful_poll()
    assert last is not None and last.id == p3 and last.complete
    with pytest.raises(LookupError):
        ledger.finish_poll(999_999, T0, ok=True, complete=True, seen=0)


def test_missing_rows_read_as_none_or_empty(ledger: AnyLedger) -> None:
    assert ledger.get("influitive", "nope") is None
    assert ledger.get_pk(999_999) is None
    assert ledger.events(999_999) == []


# --- for the CLI -------------------------------------------------------------------------


def test_admin_transition_moves_a_row_unless_a_worker_holds_it(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    move(ledger, entry.pk, State.HELD, changes=Changes(hold_reason="unknown reward"))

    retried = ledger.admin_transition(
        entry.pk, State.NEW, "retry requested by an operator", T0,
        Changes(clear=frozenset({"hold_reason"})), actor="alice",
    )
    assert retried.state is State.NEW and retried.hold_reason is None
    assert ledger.events(entry.pk)[-1].detail == "retry requested by an operator"
    assert ledger.events(entry.pk)[-1].actor == "alice"
    # The lease was given back: a worker can take the row at once.
    assert ledger.claim(entry.pk, "worker", T0, 60) is not None
    with pytest.raises(LeaseLost):
        ledger.admin_transition(entry.pk, State.REFUSING, "refuse", T0 + timedelta(seconds=1))
    with pytest.raises(IllegalTransition):  # admin still obeys the state machine
        ledger.admin_transition(entry.pk, State.FULFILLED, "x", T0 + timedelta(minutes=5))
    assert ledger.claim(entry.pk, "worker2", T0 + timedelta(minutes=5), 60) is not None
    with pytest.raises(LookupError):
        ledger.admin_transition(999_999, State.NEW, "x", T0)


def test_ping_answers_while_the_ledger_is_reachable(ledger: AnyLedger) -> None:
    assert ledger.ping() is None


def test_ping_names_the_ledger_when_its_database_goes_away(pg_url: str) -> None:
    """A ledger whose database has gone away answers ping with LedgerUnavailable naming it
    (what ``check`` and the daemon's health read), never with a driver error or silence."""
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    ledger = open_ledger(url.set(port=proxy.port).render_as_string(hide_password=False))
    try:
        assert ledger.ping() is None
        proxy.cut()
        with pytest.raises(LedgerUnavailable, match=f"127.0.0.1:{proxy.port}"):
            ledger.ping()
    finally:
        ledger.close()
        proxy.close()


# --- ordered_at and approved -------------------------------------------------------------


def test_ordered_at_and_approved_round_trip(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    assert entry.ordered_at is None and entry.approved is False
    paris = timezone(timedelta(hours=2))
    at = datetime(2024, 5, 1, 14, 30, 0, 654321, tzinfo=paris)  # 12:30:00.654321 UTC

    moved = move(ledger, entry.pk, State.HELD, changes=Changes(ordered_at=at, approved=True))
    stored = ledger.get_pk(entry.pk)
    assert stored == moved
    assert stored.ordered_at == at and stored.ordered_at.utcoffset() == timedelta(0)
    assert stored.ordered_at.hour == 12 and stored.ordered_at.microsecond == 654321
    assert stored.approved is True

    kept = move(ledger, entry.pk, State.HELD, changes=Changes(hold_reason="still"))
    assert kept.ordered_at == at and kept.approved is True  # None leaves them as they are

    back = move(
        ledger, entry.pk, State.NEW,
        changes=Changes(approved=False, clear=frozenset({"ordered_at"})),
    )
    assert back.ordered_at is None and back.approved is False
    assert ledger.get_pk(entry.pk) == back


def test_approved_cannot_be_cleared_and_ordered_at_must_be_aware(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    assert ledger.claim(entry.pk, "w1", T0, LEASE) is not None
    with pytest.raises(ValueError):
        ledger.transition(
            entry.pk, "w1", State.WAITING, "x", T0, Changes(clear=frozenset({"approved"}))
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.transition(
            entry.pk, "w1", State.WAITING, "x", T0, Changes(ordered_at=datetime(2024, 5, 1))
        )
    assert ledger.get_pk(entry.pk) == entry


# --- the spend guard ---------------------------------------------------------------------

MIDNIGHT = datetime(2024, 5, 1, tzinfo=UTC)


def guard(amount: str, limit: str = "100", currency: str = "USD") -> SpendGuard:
    return SpendGuard(
        currency=currency, amount=Decimal(amount), daily_limit=Decimal(limit), since=MIDNIGHT
    )


def order(
    ledger: AnyLedger, pk: int, amount: str, *, currency: str = "USD", at: datetime = T0,
    spend_guard: SpendGuard | None = None, then: tuple[State, ...] = (),
    vendor_order_id: str | None = None,
) -> LedgerEntry:
    """Move a row to ORDERING the way the worker does (key, amount, ordered_at), optionally
    guarded, then through ``then``; the lease is given back whatever happens."""
    assert ledger.claim(pk, "orderer", at, LEASE) is not None
    try:
        entry = ledger.transition(
            pk, "orderer", State.ORDERING, "placing order", at,
            Changes(idempotency_key=f"key-{pk}", amount=Decimal(amount), currency=currency,
                    ordered_at=at),
            guard=spend_guard,
        )
        for state in then:
            entry = ledger.transition(
                pk, "orderer", state, f"to {state.value}", at,
                Changes(vendor_order_id=vendor_order_id) if state is State.ORDERED else None,
            )
        return entry
    finally:
        ledger.release(pk, "orderer")


def test_a_guarded_order_under_or_up_to_the_limit_goes_through(ledger: AnyLedger) -> None:
    a, b, c = recorded(ledger, "a", "b", "c")
    order(ledger, a.pk, "30", spend_guard=guard("30"))
    order(ledger, b.pk, "29.99", spend_guard=guard("29.99"))
    assert ledger.spent_since("USD", MIDNIGHT) == Decimal("59.99")
    # Reaching the limit exactly is allowed.
    done = order(ledger, c.pk, "40.01", spend_guard=guard("40.01"))
    assert done.state is State.ORDERING and done.ordered_at == T0
    assert ledger.spent_since("USD", MIDNIGHT) == Decimal("100.00")


def test_a_guarded_order_over_the_limit_raises_and_changes_nothing(ledger: AnyLedger) -> None:
    a, b, c = recorded(ledger, "a", "b", "c")
    order(ledger, a.pk, "90")
    assert ledger.claim(b.pk, "w1", T0, LEASE) is not None
    before = ledger.get_pk(b.pk)
    for amount in ("10.01", "500"):
        with pytest.raises(SpendLimitReached) as caught:
            ledger.transition(
                b.pk, "w1", State.ORDERING, "placing order", T0,
                Changes(idempotency_key="kb", amount=Decimal(amount), currency="USD",
                        ordered_at=T0),
                expect=State.NEW, guard=guard(amount),
            )
        err = caught.value
        assert (err.currency, err.spent, err.amount, err.limit) == (
            "USD", Decimal("90"), Decimal(amount), Decimal("100")
        )
        assert "USD" in str(err)
    assert ledger.get_pk(b.pk) == before  # state, key, amount, ordered_at: all as they were
    assert [e.detail for e in ledger.events(b.pk)] == ["recorded"]
    assert ledger.spent_since("USD", MIDNIGHT) == Decimal("90")
    # The lease is still ours: the worker can park the row instead.
    parked = ledger.transition(b.pk, "w1", State.HELD, "daily limit", T0,
                               Changes(hold_reason="spend limit"))
    assert parked.state is State.HELD and parked.idempotency_key is None
    ledger.release(b.pk, "w1")

    order(ledger, c.pk, "10", spend_guard=guard("10"))  # exactly up to the limit
    assert ledger.spent_since("USD", MIDNIGHT) == Decimal("100")
    # Once at the limit, even a cent is refused.
    (d,) = recorded(ledger, "d")
    with pytest.raises(SpendLimitReached):
        order(ledger, d.pk, "0.01", spend_guard=guard("0.01"))
    assert ledger.get_pk(d.pk) == d


def test_the_lease_and_the_state_machine_are_checked_before_the_guard(
    ledger: AnyLedger,
) -> None:
    a, b = recorded(ledger, "a", "b")
    order(ledger, a.pk, "100")
    with pytest.raises(LeaseLost):
        ledger.transition(b.pk, "nobody", State.ORDERING, "x", T0, guard=guard("1"))
    move(ledger, b.pk, State.REFUSING, State.REFUSED)
    assert ledger.claim(b.pk, "w1", T0, LEASE) is not None
    with pytest.raises(IllegalTransition):
        ledger.transition(b.pk, "w1", State.ORDERING, "x", T0, guard=guard("1"))


def test_claim_transition_over_the_limit_takes_no_lease(ledger: AnyLedger) -> None:
    a, b = recorded(ledger, "a", "b")
    order(ledger, a.pk, "95")
    with pytest.raises(SpendLimitReached):
        ledger.claim_transition(
            b.pk, "w1", State.ORDERING, "placing order", T0, LEASE,
            Changes(idempotency_key="kb", amount=Decimal("10"), currency="USD", ordered_at=T0),
            expect=State.NEW, guard=guard("10"),
        )
    assert ledger.get_pk(b.pk) == b
    assert ledger.claim(b.pk, "w2", T0, LEASE) is not None  # the lease was not taken
    ledger.release(b.pk, "w2")
    moved = ledger.claim_transition(
        b.pk, "w1", State.ORDERING, "placing order", T0, LEASE,
        Changes(idempotency_key="kb", amount=Decimal("5"), currency="USD", ordered_at=T0),
        expect=State.NEW, guard=guard("5"),
    )
    assert moved is not None and ledger.spent_since("USD", MIDNIGHT) == Decimal("100")


def test_a_guarded_move_checks_the_lease_before_the_limit(ledger: AnyLedger) -> None:
    a, b = recorded(ledger, "a", "b")
    order(ledger, a.pk, "100")
    with pytest.raises(LeaseLost):
        ledger.transition(b.pk, "nobody", State.ORDERING, "x", T0, expect=State.NEW,
                          guard=guard("1"))


def test_refused_and_closed_without_an_order_do_not_count(ledger: AnyLedger) -> None:
    refused, closed, closed_ordered, ordering, waiting, fulfilled, held, new = recorded(
        ledger, "refused", "closed", "closed_ordered", "ordering", "waiting", "fulfilled",
        "held", "new",
    )
    order(ledger, refused.pk, "1000", then=(State.REFUSING, State.REFUSED))
    order(ledger, closed.pk, "2000", then=(State.CLOSED_UPSTREAM,))
    order(ledger, closed_ordered.pk, "1", vendor_order_id="V-1",
          then=(State.ORDERED, State.CLOSED_UPSTREAM))
    order(ledger, ordering.pk, "2")
    order(ledger, waiting.pk, "4", then=(State.WAITING,))  # outcome unknown: may be spent
    order(ledger, fulfilled.pk, "8", vendor_order_id="V-8",
          then=(State.ORDERED, State.FULFILLED))
    order(ledger, held.pk, "16", then=(State.HELD,))
    assert ledger.spent_since("USD", MIDNIGHT) == Decimal("31")

    order(ledger, new.pk, "69", spend_guard=guard("69"))
    assert ledger.spent_since("USD", MIDNIGHT) == Decimal("100")


def test_other_currencies_other_days_and_the_row_itself_do_not_count(
    ledger: AnyLedger,
) -> None:
    euro, yesterday, midnight, unordered, mine, other = recorded(
        ledger, "euro", "yesterday", "midnight", "unordered", "mine", "other"
    )
    order(ledger, euro.pk, "500", currency="EUR")
    order(ledger, yesterday.pk, "500", at=MIDNIGHT - timedelta(microseconds=1))
    order(ledger, midnight.pk, "10", at=MIDNIGHT)  # since is inclusive
    # An amount decided but never ordered (no ordered_at) is not spent.
    move(ledger, unordered.pk, State.WAITING,
         changes=Changes(amount=Decimal("500"), currency="USD"))
    assert ledger.spent_since("USD", MIDNIGHT) == Decimal("10")
    assert ledger.spent_since("EUR", MIDNIGHT) == Decimal("500")
    assert ledger.spent_since("GBP", MIDNIGHT) == Decimal("0")
    assert ledger.spent_since("USD", MIDNIGHT - timedelta(days=1)) == Decimal("510")

    order(ledger, mine.pk, "90", spend_guard=guard("90"))
    # A retry of the same row re-saves ORDERING: its own earlier amount is not counted twice.
    again = order(ledger, mine.pk, "90", at=T0 + timedelta(minutes=5), spend_guard=guard("90"))
    assert again.state is State.ORDERING
    assert [e.to_state for e in ledger.events(mine.pk)][-2:] == [State.ORDERING] * 2
    with pytest.raises(SpendLimitReached):
        order(ledger, other.pk, "0.5", spend_guard=guard("0.5"))
    # The EUR budget is separate.
    order(ledger, other.pk, "0.5", currency="EUR", spend_guard=guard("0.5", "1000", "EUR"))


def test_spent_since_adds_exactly(ledger: AnyLedger) -> None:
    assert ledger.spent_since("USD", MIDNIGHT) == Decimal(0)
    rows = recorded(ledger, "a", "b", "c")
    for entry, amount in zip(rows, ["0.1", "0.2", "12345678901234567890.123456789"],
                             strict=True):
        order(ledger, entry.pk, amount)
    total = ledger.spent_since("USD", MIDNIGHT)
    assert isinstance(total, Decimal)
    assert total == Decimal("12345678901234567890.423456789")
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.spent_since("USD", datetime(2024, 5, 1))


def test_a_malformed_guard_is_refused(ledger: AnyLedger) -> None:
    (entry,) = recorded(ledger, "1")
    assert ledger.claim(entry.pk, "w1", T0, LEASE) is not None
    bad = [
        SpendGuard(currency="USD", amount=Decimal(1), daily_limit=Decimal(9),
                   since=datetime(2024, 5, 1)),
        SpendGuard(currency="USD", amount=Decimal("NaN"), daily_limit=Decimal(9),
                   since=MIDNIGHT),
        SpendGuard(currency="USD", amount=Decimal(1), daily_limit=Decimal("Infinity"),
                   since=MIDNIGHT),
    ]
    for g in bad:
        with pytest.raises(ValueError):
            ledger.transition(entry.pk, "w1", State.ORDERING, "x", T0, guard=g)
    assert ledger.get_pk(entry.pk) == entry


# --- cache -------------------------------------------------------------------------------


def test_cache_get_put_and_overwrite(ledger: AnyLedger) -> None:
    assert ledger.cache_get("catalog:tango", T0) is None
    ledger.cache_put("catalog:tango", '{"products": []}', None)
    ledger.cache_put("seen:webhook:1", "1", T0 + timedelta(days=1))
    assert ledger.cache_get("catalog:tango", T0) == '{"products": []}'
    assert ledger.cache_get("catalog:tango", T0 + timedelta(days=3650)) == '{"products": []}'
    assert ledger.cache_get("seen:webhook:1", T0) == "1"
    assert ledger.cache_get("catalog:TANGO", T0) is None  # keys are exact

    ledger.cache_put("catalog:tango", "v2 é 🎁", T0 + timedelta(hours=12))
    assert ledger.cache_get("catalog:tango", T0) == "v2 é 🎁"
    assert ledger.cache_get("seen:webhook:1", T0) == "1"  # untouched
    big = "x" * 300_000
    ledger.cache_put("big", big, None)
    assert ledger.cache_get("big", T0) == big
    ledger.cache_put("empty", "", None)
    assert ledger.cache_get("empty", T0) == ""


def test_cache_entries_expire(ledger: AnyLedger) -> None:
    paris = timezone(timedelta(hours=2))
    expires = datetime(2024, 5, 1, 15, 0, tzinfo=paris)  # 13:00 UTC
    ledger.cache_put("k", "v", expires)
    assert ledger.cache_get("k", T0) == "v"
    assert ledger.cache_get("k", expires - timedelta(microseconds=1)) == "v"
    assert ledger.cache_get("k", datetime(2024, 5, 1, 13, 0, tzinfo=UTC)) is None  # <= now
    assert ledger.cache_get("k", expires + timedelta(days=1)) is None
    # Overwriting an expired entry brings it back, with the new expiry.
    ledger.cache_put("k", "v2", None)
    assert ledger.cache_get("k", expires + timedelta(days=1)) == "v2"
    ledger.cache_put("k", "v3", T0 - timedelta(seconds=1))  # already expired
    assert ledger.cache_get("k", T0) is None


def test_cache_refuses_naive_times_and_cleans_text(ledger: AnyLedger) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.cache_put("k", "v", datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.cache_get("k", datetime(2024, 5, 1))
    ledger.cache_put("nul\x00key", "a\x00b\ud800", None)
    assert ledger.cache_get("nul\x00key", T0) == "a\ufffdb\ufffd"


# --- properties --------------------------------------------------------------------------

_counter = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rid=st.text(
        st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
    ),
    payload=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
def test_any_id_and_payload_round_trip(
    ledger: AnyLedger, rid: str, payload: dict[str, Any]
) -> None:
    # The fixture lives across examples: a prefix keeps every example's key new.
    key = f"{next(_counter)}:{rid}"
    poll = ledger.start_poll(T0)
    assert ledger.record(poll, [red(key, raw=payload)], T0) == 1
    entry = ledger.get("influitive", key)
    assert entry is not None
    assert entry.redemption_id == key
    assert entry.payload == payload
    assert ledger.record(poll, [red(key, raw={"other": 1})], T0) == 0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(amount=st.decimals(allow_nan=False, allow_infinity=False))
def test_any_finite_decimal_round_trips(ledger: AnyLedger, amount: Decimal) -> None:
    key = f"dec{next(_counter)}"
    poll = ledger.start_poll(T0)
    ledger.record(poll, [red(key)], T0)
    entry = ledger.get("influitive", key)
    assert entry is not None
    moved = move(ledger, entry.pk, State.WAITING, changes=Changes(amount=amount))
    stored = ledger.get_pk(entry.pk)
    assert stored is not None and moved.amount is not None and stored.amount is not None
    assert str(stored.amount) == str(moved.amount) == str(amount)
