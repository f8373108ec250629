"""The benchmark suite's building blocks run and produce numbers (``make bench`` itself is
too long for a test). Nothing here judges speed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from bench import ledger_path as lp
from bench.peers import budget_use
from bench.serve import KEY, ORG, TOKEN, RequestBudget
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.sandbox import influitive, tremendous
from poller.sandbox.server import ServerThread
from tests.ledger.conftest import pg_schema

ROOT = Path(__file__).resolve().parents[3]


def _check_path(ledger: Any, n: int) -> dict[str, Any]:
    per_call: dict[str, list[str]] = {}
    result = lp.ledger_path(ledger, n, 1, per_call=per_call)
    assert ledger.counts() == {State.FULFILLED: n}
    assert result["seconds"] > 0
    assert result["statements"] > result["commits"] > 0
    # Counted per statement sent: whole numbers for the n redemptions.
    assert sum(result["kinds"].values()) * n == pytest.approx(result["statements"] * n)
    assert (result["commits"] * n) == pytest.approx(round(result["commits"] * n))
    assert result["own_statements"] + result["paged_statements"] == pytest.approx(
        result["statements"])
    assert [name.split(" ")[0] for name in per_call] == [
        "record", "due", "claim_transition", "transition", "transition"]
    assert all(per_call.values()), per_call
    # One durable commit per move (a COMMIT, or a single statement in autocommit): three per
    # redemption.
    assert result["own_commits"] == pytest.approx(3), per_call
    return result


def test_ledger_path_counts_the_statements_of_each_call_on_sqlite(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'path.db'}", migrate=True)
    try:
        result = _check_path(ledger, 30)
    finally:
        ledger.close()
    assert result["own_commits"] > 0


@pytest.mark.postgres
def test_ledger_path_counts_begin_and_commit_on_postgres() -> None:
    with pg_schema("bench") as url:
        ledger = open_ledger(url, migrate=True)
        try:
            result = _check_path(ledger, 30)
        finally:
            ledger.close()
    assert result["own_commits"] > 0


@pytest.mark.parametrize("autocommit", [False, True])
def test_probe_counts_a_write_outside_a_transaction_as_its_own_commit(
    tmp_path: Path, autocommit: bool
) -> None:
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_engine(f"sqlite:///{tmp_path / 'probe.db'}", **options)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        probe = lp.StatementProbe(engine)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
                conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        finally:
            probe.close()
    finally:
        engine.dispose()
    # Two writes: one transaction committed once, or two that committed alone.
    assert probe.commits == (2 if autocommit else 1)
    assert probe.kinds["INSERT"] == 2


@pytest.mark.postgres
def test_probe_counts_begin_only_when_psycopg_sends_one() -> None:
    with pg_schema("probe") as url:
        for autocommit in (False, True):
            engine = create_engine(url, isolation_level="AUTOCOMMIT") if autocommit \
                else create_engine(url)
            probe = lp.StatementProbe(engine)
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql("SELECT 1")
            finally:
                probe.close()
                engine.dispose()
            assert probe.kinds["BEGIN"] == (0 if autocommit else 1)


def test_request_budget_blocks_as_the_waf_does_and_logs_every_request() -> None:
    app = RequestBudget(influitive.create_app(influitive.InfluitiveState(), api_token=TOKEN,
                                              org_id=ORG))
    headers = {"Authorization": f"Token {TOKEN}", "X_ORG_ID": ORG}
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/_bench/budget", json={"requests": 3, "window": 60}).status_code == 200
        answers = [http.get("/reward_redemptions", headers=headers) for _ in range(5)]
        http.get("/_standin/requests")  # the stand-in's admin API is not counted
        log = http.get("/_bench/requests").json()["requests"]
        http.post("/_bench/reset")
        after_reset = http.get("/reward_redemptions", headers=headers)
    assert [a.status_code for a in answers] == [200, 200, 200, 403, 403]
    blocked = answers[-1]
    assert blocked.headers["content-type"].startswith("text/html")
    assert "www-authenticate" not in blocked.headers
    assert [row[3] for row in log] == [200, 200, 200, 403, 403]
    assert all(isinstance(row[0], float) for row in log)
    assert after_reset.status_code == 200


def test_budget_use_counts_whole_windows_peak_and_blocked() -> None:
    # 10 a second for 3 s against a budget of 10 per second, then one blocked request.
    log = [(100.0 + i / 10, "POST", "/x", 200) for i in range(31)]
    log.append((103.05, "POST", "/x", 403))
    use = budget_use(log, requests=10, window=1.0)
    assert use["windows"] == 3
    assert use["share"] == pytest.approx(1.0)
    assert use["peak"] == 10
    assert use["blocked"] == 1
    half = budget_use(log[::2], requests=10, window=1.0)
    assert half["share"] == pytest.approx(0.5)


def test_baseline_script_orders_and_decides_each_redemption_once(tmp_path: Path) -> None:
    source = influitive.InfluitiveState()
    source.seed({"id": i, "reward_id": 37, "reward_name": "$25 card",
                 "contact": {"id": 100 + i, "email": f"a{i}@example.com",
                             "first_name": "A"}} for i in (1, 2, 3))
    vendor = tremendous.TremendousState(balance_cents=10**9)
    with (ServerThread(influitive.create_app(source, api_token=TOKEN, org_id=ORG)) as inf,
          ServerThread(tremendous.create_app(vendor, api_key=KEY)) as ven):
        cmd = [sys.executable, "-m", "bench.baseline_script", "--influitive", inf,
               "--token", TOKEN, "--org", ORG, "--vendor", ven, "--key", KEY,
               "--db", str(tmp_path / "script.db")]
        first = json.loads(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True,
                                          text=True).stdout)
        source.seed([{"id": 1, "reward_id": 37, "contact": {"id": 101}}])  # listed again
        again = json.loads(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True,
                                          text=True).stdout)
    # Tremendous answers a new order 200 (201 is a repeated external_id).
    assert first == {"seen": 3, "vendor_answers": {"200": 3}, "decisions": 3, "accepted": 3}
    assert again["decisions"] == 0 and again["vendor_answers"] == {}
    assert sorted(d.id for d in source.decisions() if d.accepted) == ["1", "2", "3"]
    assert {k: v["created"] for k, v in vendor.counts().items()} == {
        "script-1": 1, "script-2": 1, "script-3": 1}


def test_peak_reports_the_peak_rss_of_its_child() -> None:
    # 64 MiB, every page touched (bytearray zero-fills it).
    child = [sys.executable, "-c", "x = bytearray(64 * 1024 * 1024)"]
    done = subprocess.run([sys.executable, "-m", "bench.peak", *child], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    result = json.loads(done.stdout)
    assert result["returncode"] == 0
    assert result["peak_rss_kib"] >= 64 * 1024
    assert result["cpu_s"] >= 0 and result["wall_s"] > 0


def test_cpu_hog_keeps_one_spinning_process_per_requested_core_until_the_block_ends() -> None:
    from bench.harness import cpu_hog
    from bench.stats import proc_cpu_seconds

    with cpu_hog(2) as hogs:
        assert len(hogs) == 2
        time.sleep(0.5)
        assert all(h.poll() is None for h in hogs)  # still running
        spent = [proc_cpu_seconds(Path(f"/proc/{h.pid}/stat").read_text()) for h in hogs]
        assert sum(spent) > 0  # spinning, not sleeping
    assert all(h.returncode is not None for h in hogs)  # killed and reaped


def test_tango_section_gives_a_config_that_routes_its_reward_to_tango(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from bench.harness import TANGO_REWARD, tango_section, write_config
    from poller.config import load_config

    standins: Any = SimpleNamespace(influitive_url="http://127.0.0.1:9",
                                    tremendous_url="http://127.0.0.1:9",
                                    tango_url="http://127.0.0.1:9")
    config = load_config(write_config(tmp_path / "c.toml", standins,
                                      f"sqlite:///{tmp_path / 'l.db'}",
                                      extra=tango_section(standins, rate=1.0)))
    rules = {r.reward_id: r.vendor for r in config.rewards}
    assert rules == {"37": "tremendous", str(TANGO_REWARD): "tango"}
