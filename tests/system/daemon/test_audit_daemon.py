"""The daemon's scheduled books audit (poller.daemon.audit_job): run by the daemon's own
scheduler on ``[audit] interval``, reading only the vendors' order lists, each run
kept in the ledger, the discrepancies on ``/metrics`` as a gauge that the alert rule reads
(raised once per discrepancy, however often the audit runs, and back to 0 when cleared)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poller.config import Config, load_config
from poller.daemon.audit_job import AuditJob
from poller.daemon.metrics import Recorder
from poller.daemon.scheduler import Daemon, schedule_audit
from poller.domain.errors import NotAuditable
from poller.domain.keys import idempotency_key
from poller.domain.orders import OrderStatus, VendorOrder
from poller.ledger import open_ledger
from poller.ledger.audit import last_run
from poller.ledger.sql import SqlLedger
from poller.ports import OrderBook
from poller.vendors.fake import FakeOrderBook
from poller.worker.cycle import CycleReport
from tests.system.daemon.conftest import wait_for

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
STRAY = VendorOrder(
    vendor="tremendous", order_id="o-stray",
    external_id=idempotency_key(namespace="org", source="influitive", redemption_id="gone"),
    created_at=NOW - timedelta(days=1), status=OrderStatus.COMPLETE, raw_status="EXECUTED",
    amount_minor=2500, currency="USD")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[influitive]
api_token = "t"
org_id = "org"

[ledger]
url = "sqlite:///{tmp_path / 'ledger.db'}"

[audit]
interval = "1h"
window_days = 2

[vendors.tremendous]
api_key = "k"

[vendors.manual]
""")
    return load_config(path)


@pytest.fixture
def ledger(config: Config) -> Iterator[SqlLedger]:
    opened = open_ledger(config.ledger.url)
    yield opened
    opened.close()


class Books:
    def __init__(self) -> None:
        self.tremendous = FakeOrderBook("tremendous", [STRAY])
        self.opened: list[str] = []

    def __call__(self, name: str) -> OrderBook:
        self.opened.append(name)
        if name == "manual":
            raise NotAuditable("manual fulfilment keeps no order list")
        return self.tremendous


def samples(recorder: Recorder) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = recorder.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("reward_poller_audit_")}


ORPHANS = ("reward_poller_audit_discrepancies", (("kind", "orphan"), ("vendor", "tremendous")))


def test_each_run_sets_the_gauge_to_what_it_found_and_is_kept(
    config: Config, ledger: SqlLedger,
) -> None:
    recorder = Recorder(process=False)
    books = Books()
    job = AuditJob(config, ledger.engine, recorder, open_book=books, clock=lambda: NOW)
    assert samples(recorder)[("reward_poller_audit_last_run_timestamp_seconds", ())] == 0

    for _ in range(2):  # the same orphan, found twice: still one discrepancy
        result = job()
        assert result is not None and not result.balanced
        assert samples(recorder)[ORPHANS] == 1
    found = samples(recorder)
    assert found[("reward_poller_audit_last_run_balanced", ())] == 0
    assert found[("reward_poller_audit_last_run_timestamp_seconds", ())] > 0
    assert ("reward_poller_audit_discrepancies",
            (("kind", "orphan"), ("vendor", "manual"))) not in found
    assert books.opened == ["manual", "tremendous"] * 2
    # Read a margin wider than the trailing window_days.
    assert books.tremendous.asked[-1] == (NOW - timedelta(days=3), NOW + timedelta(days=1))
    stored = last_run(ledger.engine)
    assert stored is not None and stored.actor == "daemon" and not stored.balanced
    assert [d.order_id for d in stored.discrepancies] == ["o-stray"]

    books.tremendous = FakeOrderBook("tremendous", [])  # cancelled and gone: the books balance
    job()
    assert samples(recorder)[ORPHANS] == 0
    assert samples(recorder)[("reward_poller_audit_last_run_balanced", ())] == 1


def test_a_failed_run_is_logged_and_counted_without_raising(
    config: Config, ledger: SqlLedger, capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(name: str) -> OrderBook:
        raise RuntimeError("boom")

    recorder = Recorder(process=False)
    job = AuditJob(config, ledger.engine, recorder, open_book=broken, clock=lambda: NOW)
    assert job() is None
    assert samples(recorder)[("reward_poller_audit_last_run_balanced", ())] == 0
    assert job.runs == 1


def test_the_daemon_runs_the_audit_on_its_own_scheduler(config: Config,
                                                        ledger: SqlLedger) -> None:
    recorder = Recorder(process=False)
    job = AuditJob(config, ledger.engine, recorder, open_book=Books(), clock=lambda: NOW)
    daemon = Daemon(CycleReport, interval_seconds=3600, stop=threading.Event())
    assert schedule_audit(daemon.scheduler, job, config.audit.interval,
                          first_after=0)
    jobs: dict[str, Any] = {j.id: j for j in daemon.scheduler.get_jobs()}
    assert jobs["audit"].trigger.interval == timedelta(seconds=3600)
    runner = threading.Thread(target=daemon.scheduler.start, daemon=True)
    runner.start()
    try:
        wait_for(lambda: job.runs >= 1, what="the scheduled audit")
    finally:
        daemon.scheduler.shutdown(wait=True)
        runner.join(10)
    assert job.runs == 1
    assert samples(recorder)[ORPHANS] == 1


def test_an_interval_of_0_schedules_nothing(config: Config, ledger: SqlLedger) -> None:
    daemon = Daemon(CycleReport, interval_seconds=3600, stop=threading.Event())
    assert not schedule_audit(daemon.scheduler, lambda: None, 0)
    assert "audit" not in {j.id for j in daemon.scheduler.get_jobs()}


def test_the_requests_of_a_list_are_timed_as_that_vendors(
    config: Config, ledger: SqlLedger,
) -> None:
    from poller.daemon import metrics

    class Timed(FakeOrderBook):
        def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
            metrics._observe_request(0.2, None, RuntimeError())  # as the transport's hook does
            return super().orders(since, until)

    books = Books()
    books.tremendous = Timed("tremendous", [])
    recorder = Recorder(process=False)
    AuditJob(config, ledger.engine, recorder, open_book=books, clock=lambda: NOW)()
    text = recorder.exposition().decode()
    counts = {tuple(sorted(s.labels.items())): s.value
              for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "reward_poller_request_duration_seconds_count"}
    assert counts == {(("outcome", "error"), ("upstream", "tremendous")): 1}
