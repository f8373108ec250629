"""The shared Influitive request budget: the pure wait logic, the SQL request log on SQLite
and PostgreSQL, two processes sharing one ledger, and the client taking a unit before every
request it sends."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from poller.core.budget import (
    BudgetLimit,
    BudgetWaitAborted,
    Grant,
    MemoryRequestLog,
    RequestBudget,
)
from poller.domain.errors import SourceUnavailable
from poller.ledger import open_ledger
from poller.ledger.budget import SqlRequestLog
from poller.sources.influitive.client import InfluitiveClient
from tests.ledger.worker.conftest import ledger_url, pg_url  # noqa: F401

from .conftest import FAST, ORG, TOKEN, Sleeps, Standin, item

T0 = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)


class Clock:
    """A clock that moves only when the budget waits."""

    def __init__(self) -> None:
        self.now = T0
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)
        return False


def test_takes_up_to_the_limit_then_waits_for_the_oldest_unit() -> None:
    clock = Clock()
    limit = BudgetLimit(scope="influitive", max_requests=3, window_seconds=10)
    budget = RequestBudget(MemoryRequestLog(), limit, clock=clock, wait=clock.wait)

    for _ in range(3):
        assert budget.take() == 0.0
    clock.now += timedelta(seconds=4)
    waited = budget.take()

    assert waited == pytest.approx(6.0)  # the first unit leaves the window at T0 + 10 s
    assert budget.log.taken(limit, clock()) == 1  # the three from T0 have left


class CountingLog(MemoryRequestLog):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def try_take(self, limit: BudgetLimit, clock: Callable[[], datetime]) -> Grant:
        self.calls += 1
        return super().try_take(limit, clock)


def test_every_request_takes_its_own_unit_from_the_log() -> None:
    clock = Clock()
    log = CountingLog()
    limit = BudgetLimit(scope="influitive", max_requests=100, window_seconds=60)
    budget = RequestBudget(log, limit, clock=clock, wait=clock.wait)
    for _ in range(5):
        budget.take()
    # One unit per request, none taken ahead: the log holds exactly what was sent.
    assert log.calls == 5
    assert log.taken(limit, clock()) == 5


def test_a_stop_request_ends_the_wait_and_nothing_is_taken() -> None:
    stop = threading.Event()
    limit = BudgetLimit(scope="influitive", max_requests=1, window_seconds=60)
    log = MemoryRequestLog()
    budget = RequestBudget(log, limit, stop=stop)
    budget.take()
    threading.Timer(0.2, stop.set).start()

    with pytest.raises(BudgetWaitAborted, match="stopping"):
        budget.take()
    assert log.taken(limit, datetime.now(UTC)) == 1


def test_a_budget_that_stays_spent_gives_up_after_a_window() -> None:
    class Full:
        def try_take(self, limit: BudgetLimit, clock: Callable[[], datetime]) -> Grant:
            return Grant(False, 1.0)

        def taken(self, limit: BudgetLimit, now: datetime) -> int:
            return limit.max_requests

    clock = Clock()
    limit = BudgetLimit(scope="influitive", max_requests=2, window_seconds=10)
    budget = RequestBudget(Full(), limit, clock=clock, wait=clock.wait)

    with pytest.raises(BudgetWaitAborted, match="stayed spent"):
        budget.take()
    assert 10 <= sum(clock.waits) <= 17


def test_the_sql_log_counts_a_rolling_window_and_prunes(ledger_url: str) -> None:  # noqa: F811
    ledger = open_ledger(ledger_url)
    try:
        # Time moved by hand: the log goes by the clock it is given, on PostgreSQL too.
        log = SqlRequestLog(ledger.engine, process_clock=True)
        limit = BudgetLimit(scope="influitive", max_requests=2, window_seconds=10)
        other = BudgetLimit(scope="elsewhere", max_requests=1, window_seconds=10)

        assert log.try_take(limit, lambda: T0) == Grant(True)
        assert log.try_take(limit, lambda: T0 + timedelta(seconds=3)) == Grant(True)
        wait = log.try_take(limit, lambda: T0 + timedelta(seconds=5))
        assert not wait.taken and wait.free_in == pytest.approx(5.0)
        assert log.try_take(other, lambda: T0 + timedelta(seconds=5)) == Grant(True)  # own
        assert log.taken(limit, T0 + timedelta(seconds=5)) == 2
        # Ten seconds after the first unit it has left the window: one is free again, and
        # one only.
        assert log.try_take(limit, lambda: T0 + timedelta(seconds=10)) == Grant(True)
        assert not log.try_take(limit, lambda: T0 + timedelta(seconds=10)).taken
        with ledger.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM request_log WHERE scope = 'influitive'").scalar_one()
        assert rows == 2  # the unit from T0 was pruned
    finally:
        ledger.close()


_TAKER = textwrap.dedent("""
    import json, sys
    from datetime import UTC, datetime
    from poller.core.budget import BudgetLimit, RequestBudget
    from poller.ledger import open_ledger
    from poller.ledger.budget import SqlRequestLog

    url, count = sys.argv[1], int(sys.argv[2])
    ledger = open_ledger(url)
    stamps = []

    class Recording(SqlRequestLog):
        def try_take(self, limit, clock):
            # Stamped by the log's clock: the caller's on SQLite, the server's on PostgreSQL.
            answer = super().try_take(limit, lambda: datetime.now(UTC))
            if answer.taken:
                stamps.append(answer.at.isoformat())
            return answer

    budget = RequestBudget(Recording(ledger.engine),
                           BudgetLimit(scope="influitive", max_requests=6, window_seconds=1.5))
    for _ in range(count):
        budget.take()
    ledger.close()
    print(json.dumps(stamps))
""")


def test_two_processes_on_one_ledger_share_the_budget(
    ledger_url: str, tmp_path: Path  # noqa: F811
) -> None:
    open_ledger(ledger_url).close()  # migrated before the two start
    procs = [subprocess.Popen([sys.executable, "-c", _TAKER, ledger_url, "9"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    stamps: list[datetime] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        stamps += [datetime.fromisoformat(s) for s in json.loads(out)]

    stamps.sort()
    assert len(stamps) == 18
    window = timedelta(seconds=1.5)
    busiest = max(sum(1 for t in stamps if s - window < t <= s) for s in stamps)
    assert busiest <= 6
    # 18 units at 6 per 1.5 s need at least two more windows after the first.
    assert stamps[-1] - stamps[0] >= 2 * window


# --- the client -------------------------------------------------------------------------


def _budget(limit: int) -> tuple[RequestBudget, Clock]:
    clock = Clock()
    return RequestBudget(MemoryRequestLog(), BudgetLimit(scope="influitive", max_requests=limit,
                                                         window_seconds=60),
                         clock=clock, wait=clock.wait), clock


def test_every_request_takes_a_unit_first_retries_included(
    standin: Standin, sleeps: Sleeps
) -> None:
    standin.state.seed([item(1), item(2)])
    standin.state.configure(page_size=1)
    standin.state.fail_next(503)
    budget, clock = _budget(2)
    client = InfluitiveClient(standin.url, TOKEN, ORG, policy=FAST, sleep=sleeps, budget=budget)

    result = client.poll()  # 503 + page 1 (after a wait) + page 2: three requests
    client.fulfill("1", "sent")  # a fourth

    assert result.complete and len(result.redemptions) == 2
    assert len(standin.state.requests()) == 4
    assert len(clock.waits) >= 1 and sum(clock.waits) >= 60  # two windows were needed
    assert budget.log.taken(budget.limit, clock()) == 2


def test_a_wait_that_is_aborted_sends_nothing(standin: Standin, sleeps: Sleeps) -> None:
    standin.state.seed([item(1)])
    stop = threading.Event()
    stop.set()
    budget = RequestBudget(MemoryRequestLog(),
                           BudgetLimit(scope="influitive", max_requests=5, window_seconds=60),
                           stop=stop)
    client = InfluitiveClient(standin.url, TOKEN, ORG, policy=FAST, sleep=sleeps, budget=budget)

    with pytest.raises(SourceUnavailable, match=r"not sent.*stopping"):
        client.poll()
    with pytest.raises(SourceUnavailable, match=r"not sent.*stopping"):
        client.refuse("1", "no")
    assert standin.state.requests() == []


def test_without_a_budget_the_firewall_blocks_past_its_limit(
    standin: Standin, sleeps: Sleeps
) -> None:
    standin.state.seed([item(1), item(2), item(3)])
    standin.state.configure(waf_limit=2, waf_window=60)
    client = InfluitiveClient(standin.url, TOKEN, ORG, policy=FAST, sleep=sleeps)

    client.poll()
    client.fulfill("1", "sent")
    with pytest.raises(SourceUnavailable, match="firewall"):
        client.fulfill("2", "sent")
    assert standin.state.waf_blocked() == 1
    assert standin.state.outstanding_ids() == ["2", "3"]


def test_memory_log_answers_like_the_protocol() -> None:
    log = MemoryRequestLog()
    limit = BudgetLimit(scope="s", max_requests=1, window_seconds=5)
    assert log.try_take(limit, lambda: T0) == Grant(True, at=T0)
    assert log.try_take(limit, lambda: T0 + timedelta(seconds=2)) == Grant(
        False, pytest.approx(3.0))
    taken = log.try_take(limit, lambda: T0 + timedelta(seconds=5))
    assert taken.taken and taken.at == T0 + timedelta(seconds=5)
    assert not log.try_take(limit, lambda: T0 + timedelta(seconds=5)).taken


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        BudgetLimit(scope="s", max_requests=0, window_seconds=5)
    with pytest.raises(ValueError):
        BudgetLimit(scope="s", max_requests=1, window_seconds=0)


def test_the_budget_window_leaves_a_margin_for_requests_on_their_way() -> None:
    from poller.compose import budget_window

    # A second at most on Influitive's five minutes; 5% of a short window.
    assert budget_window(300) == 301
    assert budget_window(2) == pytest.approx(2.1)
