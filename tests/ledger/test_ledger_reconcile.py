"""The ledger queries behind reconciliation, on every ledger: rows still listed, complete
polls missed, lease renewal and steps that never finished."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from poller.domain.model import Redemption
from poller.domain.states import State
from poller.ports import Changes, Ledger

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
BEFORE = frozenset({State.NEW, State.WAITING, State.HELD, State.ORDERING})


def poll(ledger: Ledger, ids: list[str], *, complete: bool = True,
         at: datetime = T0) -> int:
    poll_id = ledger.start_poll(at)
    ledger.record(poll_id, [Redemption(id=i, raw={"id": i}) for i in ids], at)
    ledger.finish_poll(poll_id, at, ok=True, complete=complete, seen=len(ids))
    return poll_id


def test_gone_needs_the_given_number_of_complete_polls(ledger: Ledger) -> None:
    poll(ledger, ["a", "b"])
    p2 = poll(ledger, ["b"])
    assert [e.redemption_id for e in ledger.unseen_since(p2, BEFORE, polls=2)] == []
    assert [e.redemption_id for e in ledger.unseen_since(p2, BEFORE)] == ["a"]
    p3 = poll(ledger, ["b"], complete=False)  # an incomplete poll does not count
    assert ledger.unseen_since(p3, BEFORE, polls=2) == []
    p4 = poll(ledger, [])
    assert [e.redemption_id for e in ledger.unseen_since(p4, BEFORE, polls=2)] == ["a"]
    assert [e.redemption_id for e in ledger.unseen_since(p4, BEFORE, polls=3)] == []
    # Seen again: the count starts over.
    p5 = poll(ledger, ["a"])
    p6 = poll(ledger, [])
    assert [e.redemption_id for e in ledger.unseen_since(p6, BEFORE, polls=2)] == ["b"]
    assert p5 < p6


def test_seen_since_finds_finished_rows_still_listed(ledger: Ledger) -> None:
    poll(ledger, ["a", "b"])
    a = ledger.get("influitive", "a")
    assert a is not None
    assert ledger.claim(a.pk, "w1", T0, 60) is not None
    ledger.transition(a.pk, "w1", State.CLOSED_UPSTREAM, "gone", T0)
    ledger.release(a.pk, "w1")
    finished = frozenset({State.CLOSED_UPSTREAM, State.FULFILLED})
    p2 = poll(ledger, ["b"])
    assert ledger.seen_since(p2, finished) == []
    p3 = poll(ledger, ["a", "b"])
    assert [e.redemption_id for e in ledger.seen_since(p3, finished)] == ["a"]
    assert ledger.seen_since(p3, frozenset()) == []


def test_renew_extends_only_a_live_lease_of_its_owner(ledger: Ledger) -> None:
    poll(ledger, ["a"])
    a = ledger.get("influitive", "a")
    assert a is not None
    assert ledger.claim(a.pk, "w1", T0, 10) is not None
    assert ledger.renew(a.pk, "w1", T0 + timedelta(seconds=8), 10)
    # Still ours at 15 s thanks to the renewal: another worker cannot take it.
    assert ledger.claim(a.pk, "w2", T0 + timedelta(seconds=15), 10) is None
    assert not ledger.renew(a.pk, "w2", T0 + timedelta(seconds=15), 10)
    # Run out: no renewal, and the next worker may take it.
    assert not ledger.renew(a.pk, "w1", T0 + timedelta(seconds=30), 10)
    assert ledger.claim(a.pk, "w2", T0 + timedelta(seconds=30), 10) is not None


def test_unfinished_steps_count_claims_until_a_release(ledger: Ledger) -> None:
    poll(ledger, ["a"])
    a = ledger.get("influitive", "a")
    assert a is not None and a.unfinished_steps == 0
    first = ledger.claim(a.pk, "w1", T0, 10)
    assert first is not None and first.unfinished_steps == 1
    # w1 died; after its lease ran out w2 takes the row.
    second = ledger.claim(a.pk, "w2", T0 + timedelta(seconds=11), 10)
    assert second is not None and second.unfinished_steps == 2
    ledger.release(a.pk, "w1")  # not the owner any more: nothing changes
    after = ledger.get_pk(a.pk)
    assert after is not None and after.unfinished_steps == 2
    ledger.release(a.pk, "w2")
    after = ledger.get_pk(a.pk)
    assert after is not None and after.unfinished_steps == 0


def test_a_perhaps_refused_order_is_not_counted_as_spent(ledger: Ledger) -> None:
    poll(ledger, ["a"])
    a = ledger.get("influitive", "a")
    assert a is not None
    assert ledger.claim(a.pk, "w1", T0, 60) is not None
    ledger.transition(a.pk, "w1", State.ORDERING, "o", T0, Changes(
        idempotency_key="k-a", vendor="fake", amount=Decimal("10"), currency="USD",
        ordered_at=T0))
    assert ledger.spent_since("USD", T0) == Decimal("10")
    ledger.transition(a.pk, "w1", State.REFUSING, "vendor refused", T0)
    ledger.transition(a.pk, "w1", State.PERHAPS_REFUSED, "404", T0)
    assert ledger.spent_since("USD", T0) == Decimal("0")
