"""One clock for a shared ledger: on PostgreSQL, workers on hosts whose clocks differ by ten
minutes go by the database server's clock, for the request budget, the leases and the
reconciliation's "finished before this poll began".

Each worker here is a ledger of its own (its own engine and connections, as on another
host) with its own injected clock, ten minutes away from the other's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from poller.core.budget import BudgetLimit
from poller.domain.model import Redemption
from poller.domain.states import TERMINAL, State
from poller.ledger import open_ledger
from poller.ledger.budget import SqlRequestLog
from poller.ledger.sql import SqlLedger
from poller.ledger.tables import redemptions
from poller.ports import Changes, LeaseLost
from tests.ledger.conftest import _empty_pg

pytestmark = pytest.mark.postgres

SKEW = timedelta(minutes=10)
Clock = Callable[[], datetime]


def real() -> datetime:
    return datetime.now(UTC)


def fast() -> datetime:
    return datetime.now(UTC) + SKEW


def slow() -> datetime:
    return datetime.now(UTC) - SKEW


CLOCKS = {"fast": fast, "slow": slow}
OTHER = {"fast": slow, "slow": fast}


@pytest.fixture
def hosts(pg_url: str) -> Iterator[tuple[SqlLedger, SqlLedger]]:
    """Two workers' ledgers on one database, as on two hosts."""
    _empty_pg(pg_url)
    first, second = open_ledger(pg_url), open_ledger(pg_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def server_now(ledger: SqlLedger) -> datetime:
    with ledger.engine.connect() as conn:
        found = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    assert isinstance(found, datetime)
    return found


def lease_until(ledger: SqlLedger, pk: int) -> datetime | None:
    with ledger.engine.connect() as conn:
        found = conn.execute(select(redemptions.c.lease_until)
                             .where(redemptions.c.pk == pk)).scalar_one()
    assert found is None or isinstance(found, datetime)
    return found


def close_to(value: datetime | None, expected: datetime, seconds: float = 30) -> bool:
    """Within ``seconds`` of ``expected``: far tighter than the ten minutes between clocks."""
    return value is not None and abs((value - expected).total_seconds()) < seconds


def one_row(ledger: SqlLedger, clock: Clock, rid: str = "a") -> int:
    poll = ledger.start_poll(clock())
    ledger.record(poll, [Redemption(id=rid, raw={"id": rid})], clock())
    entry = ledger.get("influitive", rid)
    assert entry is not None
    return entry.pk


# --- the request budget -----------------------------------------------------------------


@pytest.mark.parametrize("first", ["slow", "fast"])
def test_two_hosts_ten_minutes_apart_never_take_more_than_the_budget(
    hosts: tuple[SqlLedger, SqlLedger], first: str
) -> None:
    one, two = hosts
    with one.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM request_log")
    limit = BudgetLimit(scope="influitive", max_requests=5, window_seconds=300)
    a, b = SqlRequestLog(one.engine), SqlRequestLog(two.engine)
    clock_a, clock_b = CLOCKS[first], OTHER[first]

    taken_a = [a.try_take(limit, clock_a) for _ in range(4)]
    taken_b = [b.try_take(limit, clock_b) for _ in range(4)]
    again_a = a.try_take(limit, clock_a)

    # All within seconds of each other, in one real window: 5 in all, never more.
    assert [g.taken for g in taken_a] == [True] * 4
    assert [g.taken for g in taken_b] == [True, False, False, False]
    assert not again_a.taken
    assert 250 < again_a.free_in <= 300  # the first units leave the window in ~5 minutes
    now = server_now(one)
    assert close_to(taken_a[0].at, now) and close_to(taken_b[0].at, now)
    assert a.taken(limit, clock_a()) == b.taken(limit, clock_b()) == 5


# --- leases -----------------------------------------------------------------------------


@pytest.mark.parametrize("holder", ["fast", "slow"])
def test_a_lease_lasts_its_length_whatever_the_clocks_of_the_workers(
    hosts: tuple[SqlLedger, SqlLedger], holder: str
) -> None:
    mine, theirs = hosts
    my_clock, their_clock = CLOCKS[holder], OTHER[holder]
    pk = one_row(mine, my_clock)
    lease = 2.0

    claimed = mine.claim(pk, "holder", my_clock(), lease)
    assert claimed is not None
    assert close_to(lease_until(mine, pk), server_now(mine) + timedelta(seconds=lease), 5)
    # Not expired early for the other worker, whichever way its clock is off...
    assert theirs.claim(pk, "other", their_clock(), lease) is None
    assert pk not in [e.pk for e in theirs.due(their_clock(), 10)]
    with pytest.raises(LeaseLost):
        theirs.transition(pk, "other", State.WAITING, "not mine", their_clock())
    # ...and live for its holder, whose heartbeat extends it by the server's clock.
    assert mine.renew(pk, "holder", my_clock(), lease)
    moved = mine.transition(pk, "holder", State.WAITING, "held on", my_clock(),
                            Changes(next_attempt_at=my_clock()), expect=State.NEW)
    assert moved.state is State.WAITING
    assert theirs.claim(pk, "other", their_clock(), lease) is None

    # Nor late: once its length has passed on the server's clock, the other worker takes it
    # (ten minutes early or late by a host's clock, it would not be 2 s).
    time.sleep(lease + 0.5)
    assert pk in [e.pk for e in theirs.due(their_clock(), 10)]
    taken = theirs.claim(pk, "other", their_clock(), lease)
    assert taken is not None and taken.unfinished_steps == 2  # the holder's, then this
    with pytest.raises(LeaseLost, match="lease of 'holder' is gone"):
        mine.transition(pk, "holder", State.HELD, "too late", my_clock(), expect=State.WAITING)
    with pytest.raises(LeaseLost, match="lease of 'holder' is gone"):
        mine.transition(pk, "holder", State.HELD, "too late", my_clock())


def test_a_claim_with_its_move_takes_the_lease_by_the_server_clock(
    hosts: tuple[SqlLedger, SqlLedger]
) -> None:
    mine, theirs = hosts
    pk = one_row(mine, slow)
    moved = mine.claim_transition(pk, "holder", State.ORDERING, "ordering", slow(), 60,
                                  Changes(idempotency_key="k", ordered_at=slow()),
                                  expect=State.NEW)
    assert moved is not None
    now = server_now(mine)
    assert close_to(lease_until(mine, pk), now + timedelta(seconds=60), 5)
    assert close_to(moved.ordered_at, now) and close_to(moved.updated_at, now)
    assert theirs.claim(pk, "other", fast(), 60) is None


# --- the times the ledger stores --------------------------------------------------------


@pytest.mark.parametrize("name", ["fast", "slow"])
def test_stored_times_are_the_server_s_and_relative_ones_keep_their_distance(
    hosts: tuple[SqlLedger, SqlLedger], name: str
) -> None:
    ledger, _ = hosts
    clock = CLOCKS[name]
    pk = one_row(ledger, clock)
    now = server_now(ledger)
    assert close_to(ledger.now(clock()), now)
    entry = ledger.get_pk(pk)
    assert entry is not None
    assert close_to(entry.created_at, now) and close_to(entry.updated_at, now)
    ledger.finish_poll(1, clock(), ok=True, complete=True, seen=1)
    poll = ledger.last_successful_poll()
    assert poll is not None
    assert close_to(poll.started_at, now) and close_to(poll.finished_at, now)
    assert ledger.claim(pk, "w", clock(), 60) is not None
    # A retry in an hour, by the worker's clock, is an hour from now by the server's: in the
    # one-statement move and in the transition that reads the row first.
    hour = timedelta(hours=1)
    moved = ledger.transition(pk, "w", State.WAITING, "later", clock(),
                              Changes(next_attempt_at=clock() + hour), expect=State.NEW)
    assert close_to(moved.next_attempt_at, now + hour)
    again = ledger.transition(pk, "w", State.HELD, "held", clock(),
                              Changes(next_attempt_at=clock() + hour))
    assert close_to(again.next_attempt_at, now + hour)
    assert close_to(again.updated_at, now)
    assert all(close_to(e.at, now) for e in ledger.events(pk))


def test_a_guarded_order_is_counted_on_the_server_clock(
    hosts: tuple[SqlLedger, SqlLedger]
) -> None:
    from poller.ports import SpendGuard, SpendLimitReached

    ledger, _ = hosts
    midnight = server_now(ledger).replace(hour=0, minute=0, second=0, microsecond=0)
    pks = [one_row(ledger, fast, rid) for rid in ("a", "b")]

    def guard(amount: str) -> SpendGuard:
        return SpendGuard(currency="USD", amount=Decimal(amount), daily_limit=Decimal("15"),
                          since=midnight)

    for n, pk in enumerate(pks):
        assert ledger.claim(pk, "w", fast(), 60) is not None
        changes = Changes(idempotency_key=f"k{pk}", amount=Decimal("10"), currency="USD",
                          ordered_at=fast())
        if n == 0:
            ledger.transition(pk, "w", State.ORDERING, "o", fast(), changes,
                              expect=State.NEW, guard=guard("10"))
        else:
            with pytest.raises(SpendLimitReached):
                ledger.transition(pk, "w", State.ORDERING, "o", fast(), changes,
                                  guard=guard("10"))
    assert ledger.spent_since("USD", midnight) == Decimal("10")


# --- the reconciliation's "finished before this poll began" ------------------------------


@pytest.mark.parametrize("poller", ["fast", "slow"])
def test_a_row_finished_during_a_poll_is_not_taken_for_finished_before_it(
    hosts: tuple[SqlLedger, SqlLedger], poller: str
) -> None:
    mine, theirs = hosts
    my_clock, their_clock = CLOCKS[poller], OTHER[poller]
    pk = one_row(mine, my_clock)
    # A poll begins (its start on the ledger's clock, as the worker reads it) and lists
    # the row; meanwhile the other worker finishes it.
    started = mine.now(my_clock())
    poll = mine.start_poll(started)
    assert theirs.claim(pk, "other", their_clock(), 60) is not None
    theirs.transition(pk, "other", State.CLOSED_UPSTREAM, "decided elsewhere",
                      their_clock(), release=True)
    mine.record(poll, [Redemption(id="a", raw={"id": "a"})], my_clock())
    mine.finish_poll(poll, my_clock(), ok=True, complete=True, seen=1)
    listed = mine.seen_since(poll, TERMINAL)
    assert [e.pk for e in listed] == [pk]
    # Finished after the poll began: not a discrepancy, whichever clock is ahead.
    assert [e.pk for e in listed if e.updated_at < started] == []
    # A later poll still listing it is one.
    later = mine.now(my_clock())
    assert [e.pk for e in listed if e.updated_at < later] == [pk]
