"""The metrics every deployment gets: build and process information, the oldest open
redemption, request durations per upstream and outcome, money in integer minor units, the
spend against the daily limit, and the node_exporter textfile of ``run --run-once``."""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import structlog.testing
from prometheus_client.parser import text_string_to_metric_families

from poller import __version__
from poller.config import ConfigError, load_config
from poller.daemon.metrics import (
    ALERTING_INFLUITIVE_ERRORS,
    ALERTING_VENDOR_ERRORS,
    Recorder,
    minor_units,
    outcome_of,
)
from poller.domain.errors import OperatorFacingError
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.domain.states import State
from poller.ports import PollRecord
from poller.transport import RetryPolicy, send
from tests.system.cli.conftest import Standins, run_cli

NOW = 1_800_000_000.0


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@dataclass
class FakeLedger:
    """The four reads the metrics make."""

    oldest_at: datetime | None = None
    spent: dict[str, Decimal] = field(default_factory=dict)
    last_poll: datetime | None = None
    fail: bool = False
    spent_asked: list[tuple[str, datetime]] = field(default_factory=list)

    def counts(self) -> dict[State, int]:
        return {State.HELD: 2, State.FULFILLED: 5}

    def oldest_waiting(self) -> Any:
        if self.fail:
            raise RuntimeError("database is locked")
        return None if self.oldest_at is None else SimpleNamespace(created_at=self.oldest_at)

    def last_successful_poll(self) -> PollRecord | None:
        if self.last_poll is None:
            return None
        return PollRecord(id=1, started_at=self.last_poll, finished_at=self.last_poll,
                          complete=True, ok=True, seen=0, error=None)

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        self.spent_asked.append((currency, since))
        return self.spent.get(currency, Decimal(0))


def test_build_info_and_process_metrics() -> None:
    found = samples(Recorder(clock=lambda: NOW).exposition())
    info = [k for k in found if k[0] == "reward_poller_build_info"]
    assert info and dict(info[0][1])["version"] == __version__
    assert found[info[0]] == 1
    assert ("process_resident_memory_bytes", ()) in found
    assert ("process_cpu_seconds_total", ()) in found
    assert ("process_start_time_seconds", ()) in found


def test_a_textfile_recorder_has_no_process_metrics() -> None:
    """node_exporter exports its own process_* series: a textfile must not clash with them."""
    found = samples(Recorder(process=False).exposition())
    assert not [k for k in found if k[0].startswith("process_")]
    assert [k for k in found if k[0] == "reward_poller_build_info"]


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("25.00", "USD", 2500), ("0.10", "EUR", 10), ("19.99", "usd", 1999),
    ("500", "JPY", 500), ("1.234", "KWD", 1234), ("0.005", "USD", 1), ("1e3", "GBP", 100000),
])
def test_minor_units(amount: str, currency: str, minor: int) -> None:
    assert minor_units(Decimal(amount), currency) == minor


def test_spend_is_counted_in_integer_minor_units() -> None:
    recorder = Recorder(process=False)
    request = OrderRequest(vendor="tremendous", product="AMZN", amount=Decimal("0.10"),
                           currency="USD", idempotency_key="k", source="influitive",
                           recipient_email="a@example.com", recipient_name="A",
                           redemption_id="1")
    for _ in range(3):  # 0.1 + 0.1 + 0.1 is not 0.3 in floats; 10 + 10 + 10 is 30
        recorder.order(request, OrderResult(status=OrderStatus.COMPLETE, vendor_order_id="o"))
    found = samples(recorder.exposition())
    assert value(found, "reward_poller_spend_minor_units_total", vendor="tremendous",
                 currency="USD") == 30
    assert not [k for k in found if k[0] == "reward_poller_spend_total"]


def test_oldest_open_redemption_age_is_read_at_scrape_time() -> None:
    clock = [NOW]
    recorder = Recorder(clock=lambda: clock[0], process=False)
    ledger = FakeLedger(oldest_at=datetime.fromtimestamp(NOW - 90, UTC))
    recorder.attach_ledger(ledger)
    found = samples(recorder.exposition())
    assert value(found, "reward_poller_oldest_open_redemption_age_seconds") == 90
    clock[0] += 60
    found = samples(recorder.exposition())
    assert value(found, "reward_poller_oldest_open_redemption_age_seconds") == 150
    ledger.oldest_at = None
    found = samples(recorder.exposition())
    assert value(found, "reward_poller_oldest_open_redemption_age_seconds") == 0


def test_spend_today_against_the_daily_limit() -> None:
    recorder = Recorder(clock=lambda: NOW, process=False)
    ledger = FakeLedger(spent={"USD": Decimal("812.50")})
    recorder.attach_ledger(ledger, {"USD": Decimal("1000.00"), "JPY": Decimal("50000")})
    found = samples(recorder.exposition())
    assert value(found, "reward_poller_spend_today_minor_units", currency="USD") == 81250
    assert value(found, "reward_poller_daily_spend_limit_minor_units", currency="USD") == 100000
    assert value(found, "reward_poller_spend_today_minor_units", currency="JPY") == 0
    assert value(found, "reward_poller_daily_spend_limit_minor_units", currency="JPY") == 50000
    midnight = datetime.fromtimestamp(NOW, UTC).replace(hour=0, minute=0, second=0)
    assert ("USD", midnight) in ledger.spent_asked


def test_a_ledger_that_cannot_answer_leaves_its_gauges_out_not_the_scrape() -> None:
    recorder = Recorder(clock=lambda: NOW, process=False)
    ledger = FakeLedger(oldest_at=datetime.fromtimestamp(NOW - 5, UTC))
    recorder.attach_ledger(ledger, {"USD": Decimal("10")})
    ledger.fail = True
    found = samples(recorder.exposition())
    assert not [k for k in found if k[0] == "reward_poller_oldest_open_redemption_age_seconds"]
    assert value(found, "reward_poller_redemptions", state="held") == 2


def test_the_ledgers_last_successful_poll_is_taken_at_attach() -> None:
    recorder = Recorder(clock=lambda: NOW, process=False)
    recorder.attach_ledger(FakeLedger(last_poll=datetime.fromtimestamp(NOW - 300, UTC)))
    found = samples(recorder.exposition())
    assert value(found, "reward_poller_last_successful_poll_timestamp_seconds") == NOW - 300
    recorder.observe_cycle(True, 0)  # this process's own success is newer
    recorder.observe_ledger(FakeLedger(last_poll=datetime.fromtimestamp(NOW - 300, UTC)))
    found = samples(recorder.exposition())
    assert value(found, "reward_poller_last_successful_poll_timestamp_seconds") == NOW


# --- request durations -------------------------------------------------------------------


def _client(handler: Any) -> httpx.Client:
    return httpx.Client(base_url="http://upstream.invalid", transport=httpx.MockTransport(handler))


def test_each_attempt_is_timed_by_upstream_and_outcome() -> None:
    answers = iter([429, 200, 503, 503, 404])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), headers={"Retry-After": "0"})

    recorder = Recorder(process=False)
    policy = RetryPolicy(attempts=2, initial_wait=0, max_wait=0)
    with _client(handler) as client:
        with recorder.calling("influitive"):
            send(client, "GET", "/a", policy=policy, sleep=lambda s: None)  # 429, then 200
        with recorder.calling("tremendous"):
            send(client, "POST", "/b", policy=policy, sleep=lambda s: None)  # 503, 503
            send(client, "GET", "/c", policy=policy, sleep=lambda s: None)  # 404
    found = samples(recorder.exposition())
    count = "reward_poller_request_duration_seconds_count"
    assert value(found, count, upstream="influitive", outcome="429") == 1
    assert value(found, count, upstream="influitive", outcome="2xx") == 1
    assert value(found, count, upstream="tremendous", outcome="5xx") == 2
    assert value(found, count, upstream="tremendous", outcome="4xx") == 1


def test_timeouts_and_network_errors_are_outcomes_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("timed out", request=request)
        raise httpx.ConnectError("refused", request=request)

    recorder = Recorder(process=False)
    policy = RetryPolicy(attempts=1)
    with _client(handler) as client, recorder.calling("giftbit"):
        for path in ("/slow", "/down"):
            with pytest.raises(httpx.TransportError):
                send(client, "GET", path, policy=policy, sleep=lambda s: None)
    found = samples(recorder.exposition())
    count = "reward_poller_request_duration_seconds_count"
    assert value(found, count, upstream="giftbit", outcome="timeout") == 1
    assert value(found, count, upstream="giftbit", outcome="network_error") == 1
    assert outcome_of(None, ValueError("x")) == "error"


def test_calls_outside_a_recorder_and_in_other_threads_are_not_mixed_up() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    first, second = Recorder(process=False), Recorder(process=False)
    policy = RetryPolicy(attempts=1)
    with _client(handler) as client:
        send(client, "GET", "/nobody", policy=policy)

        def call(recorder: Recorder, upstream: str) -> None:
            with recorder.calling(upstream):
                send(client, "GET", "/x", policy=policy)

        threads = [threading.Thread(target=call, args=(first, "tango")),
                   threading.Thread(target=call, args=(second, "http"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    count = "reward_poller_request_duration_seconds_count"
    one, two = samples(first.exposition()), samples(second.exposition())
    assert [k for k in one if k[0] == count] == [(count, (("outcome", "2xx"),
                                                          ("upstream", "tango")))]
    assert [k for k in two if k[0] == count] == [(count, (("outcome", "2xx"),
                                                          ("upstream", "http")))]


# --- the textfile ----------------------------------------------------------------------------


def test_write_textfile_replaces_the_file_whole_and_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "reward-poller.prom"
    target.write_text("old\n")
    old_umask = os.umask(0o077)
    try:
        Recorder(process=False).write_textfile(target)
    finally:
        os.umask(old_umask)
    assert "reward_poller_build_info" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reward-poller.prom"]


def test_write_textfile_into_a_missing_folder_fails_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Recorder(process=False).write_textfile(tmp_path / "missing" / "x.prom")
    assert list(tmp_path.iterdir()) == []


def _run(target: Path, *, errors: int = 0, seconds: float | None = None,
         held: int = 0) -> Recorder:
    """One ``run --run-once``'s Recorder: a new process's counters, written at its end."""
    recorder = Recorder(process=False)
    recorder.expect_vendors(["tremendous"])
    for _ in range(errors):
        recorder.vendor_error("tremendous", OperatorFacingError("rejected"))
    if seconds is not None:
        recorder.request_duration.labels(upstream="tremendous", outcome="4xx").observe(seconds)
    recorder.redemptions.labels(state="held").set(held)
    recorder.write_textfile(target)
    return recorder


def test_textfile_counters_continue_from_the_previous_run(tmp_path: Path) -> None:
    """Two runs that each met the same errors write a growing counter (else Prometheus sees
    the same value twice and increase() is 0); gauges are each run's own."""
    target = tmp_path / "reward-poller.prom"
    rejected = ("reward_poller_vendor_errors_total", (("error_class", "OperatorFacingError"),
                                                       ("vendor", "tremendous")))
    count = ("reward_poller_request_duration_seconds_count",
             (("outcome", "4xx"), ("upstream", "tremendous")))
    total = ("reward_poller_request_duration_seconds_sum", count[1])
    bucket = ("reward_poller_request_duration_seconds_bucket",
              (("le", "+Inf"), ("outcome", "4xx"), ("upstream", "tremendous")))

    _run(target, errors=2, seconds=0.5, held=1)
    first = samples(target.read_text())
    assert first[rejected] == 2 and first[count] == 1 and first[total] == 0.5

    _run(target, errors=2, seconds=1.5, held=0)
    second = samples(target.read_text())
    assert second[rejected] == 4
    assert (second[count], second[total], second[bucket]) == (2, 2.0, 2)
    assert value(second, "reward_poller_redemptions", state="held") == 0

    _run(target)  # a run that met none: what earlier runs counted stays
    third = samples(target.read_text())
    assert (third[rejected], third[count], third[total]) == (4, 2, 2.0)


def test_a_recorder_writing_again_adds_only_what_it_counted_since(tmp_path: Path) -> None:
    target = tmp_path / "reward-poller.prom"
    _run(target, errors=3)
    recorder = _run(target, errors=1)
    recorder.write_textfile(target)
    key = ("reward_poller_vendor_errors_total",
           (("error_class", "OperatorFacingError"), ("vendor", "tremendous")))
    assert samples(target.read_text())[key] == 4
    recorder.vendor_error("tremendous", OperatorFacingError("rejected"))
    recorder.write_textfile(target)
    assert samples(target.read_text())[key] == 5


def test_runs_ending_together_each_add_their_counts(tmp_path: Path) -> None:
    target = tmp_path / "reward-poller.prom"
    recorders = [Recorder(process=False) for _ in range(8)]
    for recorder in recorders:
        recorder.vendor_error("tango", OperatorFacingError("rejected"))
    threads = [threading.Thread(target=r.write_textfile, args=(target,)) for r in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert value(samples(target.read_text()), "reward_poller_vendor_errors_total",
                 vendor="tango", error_class="OperatorFacingError") == 8


def test_an_unreadable_previous_textfile_starts_the_counters_again(tmp_path: Path) -> None:
    target = tmp_path / "reward-poller.prom"
    target.write_text("not an exposition\n")
    with structlog.testing.capture_logs() as logs:
        _run(target, errors=1)
    assert value(samples(target.read_text()), "reward_poller_vendor_errors_total",
                 vendor="tremendous", error_class="OperatorFacingError") == 1
    assert [entry for entry in logs if entry["event"] == "metrics.textfile.unreadable"
            and entry["path"] == str(target)]


def test_the_series_the_alert_rules_page_on_exist_at_zero_before_the_first_error() -> None:
    recorder = Recorder(process=False)
    recorder.expect_vendors(["tango", "giftbit"])
    found = samples(recorder.exposition())
    for vendor in ("tango", "giftbit"):
        for error_class in ALERTING_VENDOR_ERRORS:
            assert value(found, "reward_poller_vendor_errors_total", vendor=vendor,
                         error_class=error_class) == 0
    for operation in ("poll", "fulfill", "refuse"):
        for error_class in ALERTING_INFLUITIVE_ERRORS:
            assert value(found, "reward_poller_influitive_errors_total", operation=operation,
                         error_class=error_class) == 0


def test_textfile_must_be_a_prom_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[influitive]\napi_token = "t"\norg_id = "o"\n\n'
                      '[metrics]\ntextfile = "/var/lib/node_exporter/reward-poller.txt"\n')
    with pytest.raises(ConfigError, match="prom"):
        load_config(config)


def test_run_once_writes_the_textfile(standins: Standins) -> None:
    textfile = standins.workdir / "reward-poller.prom"
    standins.seed(1, 2)
    standins.seed(3, reward_id=99, reward_name="Swag")  # unmapped: held, still open
    config = standins.config(extra=f'\n[metrics]\ntextfile = "{textfile}"\n')
    result = run_cli("run", "--run-once", config=config)
    assert result.returncode == 0, result.stderr
    found = samples(textfile.read_text())
    assert value(found, "reward_poller_redemptions", state="fulfilled") == 2
    assert value(found, "reward_poller_redemptions", state="held") == 1
    assert value(found, "reward_poller_oldest_open_redemption_age_seconds") >= 0
    assert value(found, "reward_poller_last_successful_poll_timestamp_seconds") > NOW - 10**9
    assert value(found, "reward_poller_spend_minor_units_total", vendor="tremendous",
                 currency="USD") == 5000
    count = "reward_poller_request_duration_seconds_count"
    assert value(found, count, upstream="influitive", outcome="2xx") >= 3  # poll, 2 decisions
    assert value(found, count, upstream="tremendous", outcome="2xx") >= 2
    assert not [k for k in found if k[0].startswith("process_")]
    # The daemon's cycle series would read 0 cycles here: they are left out.
    assert not [k for k in found if "cycle" in k[0]]
    assert sorted(p.name for p in textfile.parent.iterdir() if "prom" in p.name) == [
        "reward-poller.prom"]
    # The configured vendor's operator-facing series exist before its first error.
    assert value(found, "reward_poller_vendor_errors_total", vendor="tremendous",
                 error_class="OperatorFacingError") == 0

    standins.seed(4)
    again = run_cli("run", "--run-once", config=config)
    assert again.returncode == 0, again.stderr
    after = samples(textfile.read_text())  # the next run's counters continue from these
    assert value(after, "reward_poller_spend_minor_units_total", vendor="tremendous",
                 currency="USD") == 7500
    assert value(after, count, upstream="tremendous", outcome="2xx") > value(
        found, count, upstream="tremendous", outcome="2xx")


def test_a_textfile_that_cannot_be_written_is_logged_not_hidden(standins: Standins) -> None:
    textfile = standins.workdir / "missing" / "reward-poller.prom"
    standins.seed(1)
    config = standins.config(extra=f'\n[metrics]\ntextfile = "{textfile}"\n')
    result = run_cli("run", "--run-once", config=config)
    assert "metrics.textfile.failed" in result.stderr + result.stdout
    assert str(textfile) in result.stderr + result.stdout


def test_attaching_a_ledger_that_cannot_answer_does_not_raise() -> None:
    class Broken(FakeLedger):
        def counts(self) -> dict[State, int]:
            raise RuntimeError("database is locked")

    recorder = Recorder(process=False)
    recorder.attach_ledger(Broken(oldest_at=datetime.fromtimestamp(NOW, UTC)))
    assert b"reward_poller_build_info" in recorder.exposition()
