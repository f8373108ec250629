"""``run --run-once`` stopped by SIGTERM or SIGINT in the middle of a cycle, against the
stand-ins with a slow vendor: it stops as the daemon does (the redemption in hand is
finished, nothing new is claimed, no lease is left behind), says so in one JSON line and
exits 128 + the signal; the next run takes what is left at once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.system.cli.conftest import SECRETS, Standins, popen_cli, run_cli
from tests.system.cli.test_cli import wait_for

pytestmark = pytest.mark.e2e


def _leased(config: Path) -> list[tuple[str, str]]:
    """(redemption id, state) of every row that still has a lease owner."""
    db = config.parent / "ledger.db"
    with sqlite3.connect(db) as conn:
        return [(str(r), s) for r, s in conn.execute(
            "SELECT redemption_id, state FROM redemptions WHERE lease_owner IS NOT NULL")]


def _states(config: Path) -> dict[str, str]:
    out = run_cli("ledger", "list", "--json", config=config)
    assert out.returncode == 0, out.stderr
    return {r["redemption_id"]: r["state"] for r in json.loads(out.stdout)}


def _stop(proc: subprocess.Popen[str], *signals: signal.Signals) -> tuple[str, str]:
    try:
        for n, sig in enumerate(signals):
            if n:
                # Two signals before Python's handler runs are one: let the first be taken.
                time.sleep(0.5)
            proc.send_signal(sig)
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _lines(err: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    for secret in SECRETS:
        assert secret not in err
    return lines


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_cycle_stops_after_the_calls_in_hand(
    standins: Standins, sig: signal.Signals, code: int
) -> None:
    ids = range(1, 13)
    standins.seed(*ids)
    standins.tremendous.set_delay(0.5)  # every vendor request takes half a second
    # A lease far longer than the test: a row left leased would be skipped by the next run.
    config = standins.config(lease_seconds="300")
    proc = popen_cli("run", "--run-once", config=config)
    wait_for(lambda: len(standins.tremendous.received) >= 1, what="the first vendor order")
    out, err = _stop(proc, sig)

    assert proc.returncode == code, err
    assert "Aborted" not in err
    about = [ln for ln in _lines(err) if ln["event"] == "run.interrupted"]
    assert len(about) == 1, err
    line = about[0]
    assert line["signal"] == sig.name and line["exit_code"] == code
    assert line["steps"] + line["released"] + line["not_started"] == len(ids)
    assert line["not_started"] >= 1
    assert "Stopped early on a signal" in out
    # Every vendor call in flight was finished and its answer recorded (ordered, or further
    # for those done before the signal); no lease is left behind, nothing new was started.
    assert _leased(config) == []
    states = _states(config)
    sent = [r for r, s in states.items() if s in ("ordered", "fulfilled")]
    assert len(standins.tremendous.received) == len(sent) < len(ids)
    assert {s for r, s in states.items() if r not in sent} <= {"new", "ordering"}

    # The next run takes everything left at once: no lease to wait out, no backoff.
    standins.tremendous.set_delay(0)
    again = run_cli("run", "--run-once", config=config)
    assert again.returncode == 0, again.stderr
    assert set(_states(config).values()) == {"fulfilled"}
    assert [c["created"] for c in standins.tremendous.counts().values()] == [1] * len(ids)


def test_a_second_signal_stops_at_once_and_dry_run_says_the_row_is_leased(
    standins: Standins,
) -> None:
    standins.seed(7)
    # The vendor creates the order, then its answer hangs: the worker is mid-call.
    standins.tremendous.lose_answers(1, mode="hang", hang_seconds=30)
    config = standins.config(lease_seconds="300")
    proc = popen_cli("run", "--run-once", config=config)
    wait_for(lambda: len(standins.tremendous.orders) == 1, what="the vendor order")
    _, err = _stop(proc, signal.SIGTERM, signal.SIGTERM)

    assert proc.returncode == 143, err
    about = [ln for ln in _lines(err) if ln["event"] == "run.interrupted"]
    assert len(about) == 1 and about[0]["stopped"].startswith("at once"), err
    # Stopped at once: the row sent to the vendor keeps its lease, and the plan says the next
    # run skips it, not that it would look it up.
    assert _leased(config) == [("7", "ordering")]
    plan = run_cli("run", "--dry-run", config=config)
    assert plan.returncode == 0, plan.stderr
    row = next(line for line in plan.stdout.splitlines() if line.startswith("7 "))
    assert "skip" in row and "reconcile" not in row and "leased by a run" in row
    assert "1 leased by another run" in plan.stdout
