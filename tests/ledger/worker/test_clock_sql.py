"""Two workers on one PostgreSQL ledger whose hosts' clocks are ten minutes apart: the
reconciliation's "finished in the ledger before this poll began" goes by the database
server's clock, so neither worker reopens what the other just finished, nor misses what
was finished before its poll; and a retry's backoff is counted from the server's time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from poller.core.backoff import RetrySchedule
from poller.domain.model import PollResult
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.sql import SqlLedger
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.fake import FakeVendor
from poller.worker.cycle import Worker, WorkerPolicy
from tests.unit.test_worker import RULES, redemption

pytestmark = pytest.mark.postgres

SKEW = timedelta(minutes=10)


def fast() -> datetime:
    return datetime.now(UTC) + SKEW


def slow() -> datetime:
    return datetime.now(UTC) - SKEW


CLOCKS = {"fast": fast, "slow": slow}
OTHER = {"fast": slow, "slow": fast}


class DuringPoll(FakeInfluitive):
    """Runs ``during`` once, after the list was read and before the poll returns it: what
    another worker does while this poll is on its way back."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], None] | None = None

    def poll(self) -> PollResult:
        result = super().poll()
        during, self.during = self.during, None
        if during is not None:
            during()
        return result


@pytest.fixture
def hosts(pg_url: str) -> Iterator[tuple[SqlLedger, SqlLedger]]:
    first, second = open_ledger(pg_url), open_ledger(pg_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def worker(ledger: SqlLedger, source: FakeInfluitive, vendor: FakeVendor, owner: str,
           clock: Callable[[], datetime]) -> Worker:
    return Worker(
        source=source, ledger=ledger, vendors=lambda name: vendor, vendor_names={"fake"},
        rules=RULES, owner=owner, clock=clock,
        policy=WorkerPolicy(namespace="org", lease_seconds=60,
                            schedule=RetrySchedule(max_attempts=3, initial_seconds=30)),
    )


def story(ledger: SqlLedger) -> list[str]:
    entry = ledger.get("influitive", "1")
    assert entry is not None
    return [e.detail for e in ledger.events(entry.pk)]


@pytest.mark.parametrize("poller", ["fast", "slow"])
def test_a_redemption_finished_while_another_worker_polls_is_not_reopened(
    hosts: tuple[SqlLedger, SqlLedger], poller: str
) -> None:
    source, vendor = DuringPoll(), FakeVendor("fake")
    source.seed(redemption(1))
    mine = worker(hosts[0], source, vendor, "mine", CLOCKS[poller])
    theirs = worker(hosts[1], source, vendor, "theirs", OTHER[poller])
    # My poll reads the list (redemption 1 on it); before it returns, the other worker
    # records, orders and fulfils it.
    source.during = theirs.run_cycle
    mine.run_cycle()

    entry = hosts[0].get("influitive", "1")
    assert entry is not None and entry.state is State.FULFILLED
    assert not any("discrepancy" in detail for detail in story(hosts[0]))
    assert vendor.order_count == 1
    assert len(source.accepted_decisions()) == 1


@pytest.mark.parametrize("poller", ["fast", "slow"])
def test_a_decision_that_did_not_take_effect_is_reopened_by_the_other_worker(
    hosts: tuple[SqlLedger, SqlLedger], poller: str
) -> None:
    source, vendor = FakeInfluitive(), FakeVendor("fake")
    source.seed(redemption(1))
    source.ignore_next("fulfill")  # answered as accepted, applied nothing: still listed
    theirs = worker(hosts[1], source, vendor, "theirs", OTHER[poller])
    mine = worker(hosts[0], source, vendor, "mine", CLOCKS[poller])
    theirs.run_cycle()
    assert hosts[1].get("influitive", "1").state is State.FULFILLED  # type: ignore[union-attr]

    # My poll, after theirs finished, still lists it: a discrepancy, the decision is sent
    # again after the first retry's backoff (30 s from now by the server's clock).
    mine.run_cycle()
    assert any("discrepancy" in detail for detail in story(hosts[0]))
    entry = hosts[0].get("influitive", "1")
    assert entry is not None and entry.state is State.ORDERED
    assert entry.next_attempt_at is not None
    due_in = (entry.next_attempt_at - hosts[0].now(datetime.now(UTC))).total_seconds()
    assert 0 < due_in <= 30
    assert vendor.order_count == 1
