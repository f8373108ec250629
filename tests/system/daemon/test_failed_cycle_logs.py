"""A daemon cycle that fails says so once: one ``cycle.failed`` error line with the cause
(and, for an operator-facing cause, the fix), not the same failure from the adapter, the
worker, the scheduler and the service in turn."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from poller.daemon.scheduler import Daemon
from poller.domain.errors import SourceAuthError
from poller.ledger import LedgerUnavailable
from poller.sandbox.server import free_port
from poller.worker.cycle import CycleReport
from tests.system.cli.conftest import TOKEN, Standins, popen_cli

from .conftest import wait_for


def daemon_of(cycle: Callable[[], CycleReport], **kwargs: Any) -> Daemon:
    return Daemon(cycle, interval_seconds=60, stop=threading.Event(), **kwargs)


def loud(captured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in captured if c["log_level"] in ("warning", "error", "critical")]


def failed_poll() -> CycleReport:
    report = CycleReport()
    report.errors.append("poll failed: Influitive redemption list could not be read: page 1: "
                         "ConnectError (GET 127.0.0.1:9/reward_redemptions)")
    return report


def rejected() -> CycleReport:
    raise SourceAuthError("Influitive rejected the API token or org id (HTTP 401)")


def crashed() -> CycleReport:
    raise RuntimeError("a bug")


@pytest.mark.parametrize(("cycle", "error", "traceback"), [
    (failed_poll, "poll failed: Influitive redemption list could not be read: page 1: "
                  "ConnectError (GET 127.0.0.1:9/reward_redemptions)", False),
    (rejected, "Influitive rejected the API token or org id (HTTP 401)", False),
    (crashed, "RuntimeError: a bug", True),
])
def test_each_failed_cycle_is_one_error_line(
    cycle: Callable[[], CycleReport], error: str, traceback: bool,
) -> None:
    daemon = daemon_of(cycle, explain=lambda report, exc: {"fix": "do this"})
    with capture_logs() as captured:
        daemon._one_cycle()
        daemon._one_cycle()
    lines = loud(captured)
    assert [ln["event"] for ln in lines] == ["cycle.failed", "cycle.failed"]
    assert [ln["failures_in_a_row"] for ln in lines] == [1, 2]
    assert all(ln["error"] == error and ln["fix"] == "do this" for ln in lines)
    assert all((ln.get("exc_info") is not None) is traceback for ln in lines)


def test_a_ledger_outage_is_one_line_without_a_traceback() -> None:
    def unavailable() -> CycleReport:
        raise LedgerUnavailable("the ledger database is unavailable")

    with capture_logs() as captured:
        daemon_of(unavailable)._one_cycle()
    [line] = loud(captured)
    assert line["event"] == "cycle.failed" and line.get("exc_info") is None


def test_a_good_cycle_logs_no_failure() -> None:
    with capture_logs() as captured:
        daemon_of(lambda: CycleReport(poll_ok=True))._one_cycle()
    assert loud(captured) == []


# --- the daemon as a service runs it ---------------------------------------------------------


def daemon_failures(config: Any, cycles: int) -> list[dict[str, Any]]:
    """The daemon's warning and error lines once it has failed ``cycles`` cycles, after
    SIGTERM (a run skipped because a cycle outlasted the interval is another happening)."""
    config.chmod(0o600)
    proc = popen_cli("run", config=config)
    seen: list[dict[str, Any]] = []
    assert proc.stderr is not None

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: sum(ln["event"] == "cycle.failed" for ln in seen) >= cycles,
                 what="failed cycles")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(timeout=10)
    assert proc.returncode == 0
    return [ln for ln in seen if ln["level"] in ("warning", "error")
            and ln["event"] != "scheduler.run.skipped"]


def test_a_daemon_rejected_by_influitive_logs_each_cycle_once(standins: Standins) -> None:
    config = standins.config(interval_seconds="0.3")
    config.write_text(config.read_text().replace(TOKEN, "not-the-token-123456"))
    failures = daemon_failures(config, cycles=3)
    assert {ln["event"] for ln in failures} == {"cycle.failed"}
    assert [ln["failures_in_a_row"] for ln in failures][:3] == [1, 2, 3]
    assert failures[0]["cause"] == "influitive.credentials"
    assert failures[0]["fix"].startswith("check [influitive] api_token and org_id")


def test_a_daemon_that_cannot_reach_influitive_logs_each_cycle_once(
    standins: Standins,
) -> None:
    config = standins.config(interval_seconds="0.3")
    port = free_port()  # nothing listens there
    config.write_text(config.read_text().replace(standins.influitive_url,
                                                 f"http://127.0.0.1:{port}"))
    failures = daemon_failures(config, cycles=2)
    assert [ln["failures_in_a_row"] for ln in failures][:2] == [1, 2]
    assert {ln["event"] for ln in failures} == {"cycle.failed"}
    assert f"ConnectError (GET 127.0.0.1:{port}/reward_redemptions)" in failures[0]["error"]
