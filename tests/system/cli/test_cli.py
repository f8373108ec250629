"""The CLI as a user runs it: exit codes, a run that fulfils, a run that does nothing, a
kill -9 in the middle of a vendor call, the daemon and its graceful stop."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.system.cli.conftest import SECRETS, Standins, popen_cli, run_cli

pytestmark = pytest.mark.e2e


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_once_fulfils_then_does_nothing(standins: Standins) -> None:
    standins.seed(1, 2, 3)
    config = standins.config()
    first = run_cli("run", "--run-once", config=config)
    assert first.returncode == 0, first.stderr
    assert standins.accepted() == {"1": ["fulfill"], "2": ["fulfill"], "3": ["fulfill"]}
    assert all(c["created"] == 1 for c in standins.tremendous.counts().values())
    second = run_cli("run", "--run-once", config=config)
    assert second.returncode == 0
    assert len(standins.tremendous.received) == 3  # no vendor call at all the second time
    # Every log line is JSON on stderr and names its redemption when it is about one.
    lines = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    about = [ln for ln in lines
             if "vendor_order_id" in ln and ln.get("event") != "vendor.order.placed"]
    assert about and all("redemption_id" in ln for ln in about)
    assert first.stdout.startswith("run: polled 3 outstanding redemptions (3 new)")


def test_status_and_ledger_commands(standins: Standins) -> None:
    standins.seed(1)
    standins.seed(2, reward_id=99, reward_name="Swag")
    config = standins.config()
    assert run_cli("run", "--run-once", config=config).returncode == 0

    status = run_cli("status", config=config)
    assert status.returncode == 0
    counts = dict(line.split() for line in status.stdout.splitlines()[1:11])
    assert counts["fulfilled"] == "1" and counts["held"] == "1" and counts["new"] == "0"
    assert "last successful poll:" in status.stdout

    listing = run_cli("ledger", "list", "--state", "held", "--json", config=config)
    rows = json.loads(listing.stdout)
    assert [r["redemption_id"] for r in rows] == ["2"]
    assert "reward_id='99'" in rows[0]["hold_reason"]

    show = run_cli("ledger", "show", "1", config=config)
    assert show.returncode == 0
    for step in ("recorded", "ordering", "placed", "fulfilled at Influitive"):
        assert step in show.stdout

    missing = run_cli("ledger", "show", "404", config=config)
    assert missing.returncode == 1 and "no redemption '404'" in missing.stderr

    refused = run_cli("ledger", "refuse", "2", "--message", "Not available this quarter",
                      config=config)
    assert refused.returncode == 0, refused.stderr
    assert standins.accepted()["2"] == ["refuse"]
    decisions = [d for d in standins.influitive.decisions() if d.id == "2"]
    assert decisions[0].message == "Not available this quarter"

    again = run_cli("ledger", "refuse", "1", "--message", "x", config=config)
    assert again.returncode == 1 and "vendor order" in again.stderr


def test_ledger_retry_releases_a_held_redemption(standins: Standins) -> None:
    standins.seed(5, reward_id=99, reward_name="Swag")
    config = standins.config()
    run_cli("run", "--run-once", config=config)
    # The operator adds a rule for the reward, then releases it.
    fixed = standins.config(extra='\n[[rewards]]\nreward_id = "99"\nvendor = "tremendous"\n'
                                  'product = "VISA-US"\namount = "10"\ncurrency = "USD"\n')
    retry = run_cli("ledger", "retry", "5", config=fixed)
    assert retry.returncode == 0, retry.stderr
    assert "held -> new" in retry.stdout
    assert run_cli("run", "--run-once", config=fixed).returncode == 0
    assert standins.accepted() == {"5": ["fulfill"]}


def test_exit_codes(standins: Standins, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[influitive]\norg_id = 'x'\n")
    usage = run_cli("run", "--run-once", config=bad)
    assert usage.returncode == 2
    assert "influitive.api_token: required key is missing" in usage.stderr

    assert run_cli("run", "--bogus").returncode == 2

    config = standins.config()
    wrong_token = config.read_text().replace(SECRETS[0], "not-the-token-123")
    config.write_text(wrong_token)
    auth = run_cli("run", "--run-once", config=config)
    assert auth.returncode == 1
    assert "401" in auth.stderr

    unreachable = standins.config(ledger_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    down = run_cli("run", "--run-once", config=unreachable)
    assert down.returncode == 1
    assert len(standins.tremendous.received) == 0


def test_influitive_down_exits_1_and_orders_nothing(standins: Standins) -> None:
    standins.seed(1)
    standins.influitive.fail_next(503, 503, 503, 503)
    result = run_cli("run", "--run-once", config=standins.config())
    assert result.returncode == 1
    assert "poll failed" in result.stderr
    assert standins.tremendous.received == []


def test_kill_9_during_the_vendor_call_never_orders_twice(standins: Standins) -> None:
    standins.seed(7)
    # The vendor creates the order, then the answer hangs: the worker is mid-call.
    standins.tremendous.lose_answers(1, mode="hang", hang_seconds=30)
    config = standins.config(lease_seconds="1")
    worker = popen_cli("run", "--run-once", config=config)
    try:
        wait_for(lambda: len(standins.tremendous.orders) == 1, what="the vendor order")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert standins.accepted() == {}
    time.sleep(1.2)  # the dead worker's lease runs out
    resumed = run_cli("run", "--run-once", config=config)
    assert resumed.returncode == 0, resumed.stderr
    assert standins.accepted() == {"7": ["fulfill"]}
    counts = standins.tremendous.counts()
    assert [c["created"] for c in counts.values()] == [1]
    show = run_cli("ledger", "show", "7", config=config)
    assert "placed" in show.stdout


def test_daemon_runs_cycles_and_stops_cleanly_on_sigterm(standins: Standins) -> None:
    standins.seed(1)
    config = standins.config(interval_seconds="0.5")
    daemon = popen_cli("run", config=config)
    try:
        wait_for(lambda: standins.accepted() == {"1": ["fulfill"]}, what="first cycle")
        standins.seed(2)  # arrives later: picked up by a later cycle
        wait_for(lambda: "2" in standins.accepted(), what="a later cycle")
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    assert "daemon.stopped" in err
    for secret in SECRETS:
        assert secret not in err


def test_a_manual_reward_that_cannot_be_sent_can_be_refused(standins: Standins) -> None:
    standins.seed(9, reward_id=54, reward_name="Hoodie")
    config = standins.config(extra='\n[vendors.manual]\n\n[[rewards]]\nreward_id = "54"\n'
                                   'vendor = "manual"\namount = "40"\ncurrency = "USD"\n')
    assert run_cli("run", "--run-once", config=config).returncode == 0
    shown = json.loads(run_cli("ledger", "show", "9", "--json", config=config).stdout)
    assert shown["state"] == "pending" and shown["vendor"] == "manual"
    # The manual vendor takes no product: none is named, never "product None".
    story = run_cli("ledger", "show", "9", config=config).stdout
    assert "ordering 40.00 USD from manual (route config:reward_id=54)" in story
    assert "None" not in story
    refused = run_cli("ledger", "refuse", "9", "-m", "Out of hoodies in your size",
                      config=config)
    assert refused.returncode == 0, refused.stderr
    assert standins.accepted() == {"9": ["refuse"]}
