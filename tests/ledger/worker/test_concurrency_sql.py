"""Exactly once under concurrency, on the real ledgers: a SQLite file and PostgreSQL.

Eight threads per worker (and two workers, each with its own database connections as two
processes would have) work through hundreds of redemptions. Afterwards every redemption was
ordered exactly once, decided exactly once, and its story in the ledger is the one story of
a fulfilled redemption. The leases in the ledger are what makes this hold, not the threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from poller.compose import Runtime
from poller.config import load_config
from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule
from poller.domain.model import OrderRequest, OrderResult
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.sql import SqlLedger
from poller.sandbox import influitive as influitive_standin
from poller.sandbox import tremendous as tremendous_standin
from poller.sandbox.server import ServerThread
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.fake import FakeVendor
from poller.worker.cycle import Worker, WorkerPolicy

RULES = [RewardRule(reward_id="37", vendor="fake", product="CARD25", amount=Decimal("25"),
                    currency="USD")]
N = 300
FULFILLED_STORY = [State.NEW, State.ORDERING, State.ORDERED, State.FULFILLED]


def redemption(rid: int) -> dict[str, Any]:
    return {"id": rid, "reward_id": 37, "reward_name": "$25 gift card",
            "contact": {"id": rid, "email": f"a{rid}@example.com", "name": f"Advocate {rid}"}}


class SlowVendor(FakeVendor):
    """Each order takes a millisecond, so the threads really overlap."""

    def place_order(self, request: OrderRequest) -> OrderResult:
        time.sleep(0.001)
        return super().place_order(request)


def worker(ledger: SqlLedger, source: FakeInfluitive, vendor: FakeVendor, owner: str) -> Worker:
    return Worker(
        source=source, ledger=ledger, vendors=lambda name: vendor, vendor_names={"fake"},
        rules=RULES, owner=owner,
        policy=WorkerPolicy(namespace="org", lease_seconds=60, concurrency=8,
                            schedule=RetrySchedule(max_attempts=3, initial_seconds=30)),
    )


@pytest.fixture
def ledgers(ledger_url: str) -> Iterator[tuple[SqlLedger, SqlLedger]]:
    """Two ledgers on the same database, each with its own engine (connection pool)."""
    first, second = open_ledger(ledger_url), open_ledger(ledger_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def assert_exactly_once(ledger: SqlLedger, source: FakeInfluitive, vendor: FakeVendor) -> None:
    entries = ledger.list(limit=N + 10)
    assert len(entries) == N
    assert Counter(e.state for e in entries) == {State.FULFILLED: N}
    assert vendor.order_count == N and set(vendor.created.values()) == {1}
    assert len({e.vendor_order_id for e in entries}) == N
    accepted = Counter(d.redemption_id for d in source.accepted_decisions())
    assert len(accepted) == N and set(accepted.values()) == {1}
    assert set(Counter(d.redemption_id for d in source.decisions).values()) == {1}
    for entry in entries:
        assert [e.to_state for e in ledger.events(entry.pk)] == FULFILLED_STORY


def test_eight_threads_order_and_decide_each_redemption_exactly_once(
    ledgers: tuple[SqlLedger, SqlLedger],
) -> None:
    ledger = ledgers[0]
    source, vendor = FakeInfluitive(), SlowVendor()
    source.seed(*(redemption(i) for i in range(1, N + 1)))
    w = worker(ledger, source, vendor, "w1")
    report = w.run_cycle()
    assert report.ok and report.new == N
    assert report.steps == N and report.outcomes == {"fulfilled": N}
    assert w.run_cycle().steps == 0
    assert_exactly_once(ledger, source, vendor)


def test_two_workers_of_eight_threads_at_once_order_each_redemption_exactly_once(
    ledgers: tuple[SqlLedger, SqlLedger],
) -> None:
    source, vendor = FakeInfluitive(), SlowVendor()
    source.seed(*(redemption(i) for i in range(1, N + 1)))
    workers = [worker(ledgers[0], source, vendor, "w1"), worker(ledgers[1], source, vendor, "w2")]
    steps: Counter[str] = Counter()
    errors: list[BaseException] = []

    def run(w: Worker) -> None:
        try:
            for _ in range(3):
                steps[w.owner] += w.run_cycle().steps
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(steps.values()) == N
    assert_exactly_once(ledgers[0], source, vendor)


TOKEN, ORG, KEY = "int-token-0001", "int-org", "int-key-0001"


def test_the_app_keeps_under_the_vendor_rate_limit_with_eight_threads(
    ledger_url: str, tmp_path: Path,
) -> None:
    """The wiring end to end: ``[schedule] concurrency`` and ``rate_limit_per_second`` from
    the config, the Tremendous stand-in counting requests per second."""
    i_state = influitive_standin.InfluitiveState(page_size=25)
    t_state = tremendous_standin.TremendousState()
    t_state.set_rate_limit(40)
    n = 75
    i_state.seed([redemption(i) for i in range(1, n + 1)])
    with ServerThread(influitive_standin.create_app(i_state, api_token=TOKEN, org_id=ORG)) as iu, \
            ServerThread(tremendous_standin.create_app(t_state, api_key=KEY)) as tu:
        config = tmp_path / "config.toml"
        config.write_text(f"""
[influitive]
base_url = "{iu}"
api_token = "{TOKEN}"
org_id = "{ORG}"

[ledger]
url = "{ledger_url}"

[schedule]
concurrency = 8

[retry]
http_attempts = 1

[vendors.tremendous]
base_url = "{tu}/api/v2"
api_key = "{KEY}"
rate_limit_per_second = 25

[[rewards]]
reward_id = "37"
vendor = "tremendous"
product = "AMZN-US"
amount = "25.00"
""")
        began = time.monotonic()
        with Runtime(load_config(config)) as runtime:
            report = runtime.worker.run_cycle()
            again = runtime.worker.run_cycle()
        elapsed = time.monotonic() - began
    assert report.outcomes == {"fulfilled": n} and again.steps == 0
    received = t_state.snapshot()["received"]
    assert [r for r in received if r["status"] == 429] == []
    assert len(received) == n and all(r["created"] for r in received)
    assert set(t_state.counts()[k]["created"] for k in t_state.counts()) == {1}
    accepted = Counter(d.id for d in i_state.decisions() if d.accepted)
    assert len(accepted) == n and set(accepted.values()) == {1}
    # 75 orders at 25 a second cannot take less than 74/25 s: the limiter was in the way.
    assert elapsed >= (n - 1) / 25 - 0.05
