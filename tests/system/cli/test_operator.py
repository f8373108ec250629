"""What the operator is told, as the CLI tells it (a subprocess against the stand-ins): every
mistake is one clear line and a non-zero exit, never a silent success.

One test per promise: ``check`` proves Influitive and names what failed; ``run --run-once``
exits 1 on an operator-facing error and says the fix; the daemon alerts at once and
``/healthz`` says why; config mistakes name the file or variable; every stderr line is JSON;
read-only commands never create a ledger and read one on a read-only mount; one table
renderer; who ran an operator command and the message sent; CSV cells never start a formula;
progress on a terminal.
"""

from __future__ import annotations

import getpass
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from poller.sandbox.server import ServerThread
from tests.system.cli.conftest import (
    KEY,
    ORG,
    SECRETS,
    TOKEN,
    Standins,
    cli_env,
    popen_cli,
    run_cli,
)
from tests.system.daemon.conftest import free_port, wait_for

pytestmark = pytest.mark.e2e

WRONG_KEY = "e2e-wrong-tremendous-key-000"


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def last_json(text: str) -> dict[str, Any]:
    """The last stderr line, parsed: off a terminal the command line's own lines (its
    failure, a configuration error) are JSON objects like the log lines."""
    parsed: dict[str, Any] = json.loads(last_line(text))
    return parsed


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line parsed as JSON (a plain-text line fails the test)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def with_key(config: Path, old: str, new: str) -> Path:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    return config


def run_env(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poller", "--log-format", "json", *args],
                          capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def run_on_terminal(*args: str, config: Path, env: dict[str, str] | None = None,
                    terminal: str = "stdout") -> tuple[str, str]:
    """Run the CLI with stdout (or stderr) on a pseudo-terminal; (terminal text, other)."""
    leader, follower = pty.openpty()
    cmd = [sys.executable, "-m", "poller", "--log-format", "json", "--config", str(config),
           *args]
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, terminal: follower}
    proc = subprocess.Popen(cmd, env={**cli_env(), **(env or {})}, text=False, **streams)
    os.close(follower)
    chunks: list[bytes] = []
    other = proc.stderr if terminal == "stdout" else proc.stdout
    assert other is not None
    rest: list[bytes] = []
    reader = threading.Thread(target=lambda: rest.append(other.read()), daemon=True)
    reader.start()
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    os.close(leader)
    return b"".join(chunks).decode(), b"".join(rest).decode()


# --- check ---------------------------------------------------------------------------------


def _rows(stdout: str) -> dict[tuple[str, str], str]:
    rows = {}
    for line in stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("influitive", "tremendous"):
            rows[(parts[0], parts[1])] = next(p for p in parts[2:] if p in ("ok", "FAIL"))
    return rows


def test_check_proves_influitive_and_names_what_failed(standins: Standins) -> None:
    standins.seed(1, 2)
    standins.seed(3, reward_id=99, reward_name="Swag")
    config = standins.config()
    good = run_cli("check", config=config)
    assert good.returncode == 0, good.stderr
    assert _rows(good.stdout)[("influitive", "credentials")] == "ok"
    assert "3 outstanding, 2 of them routed by [[rewards]] rules or reward metadata" in (
        good.stdout)
    assert "(2 list requests)" in good.stdout  # page_size 2: two pages, two requests
    assert "all checks passed" in good.stdout

    with_key(config, f'api_token = "{TOKEN}"', 'api_token = "e2e-not-the-token-1234"')
    wrong = run_cli("check", config=config)
    assert wrong.returncode == 1
    assert _rows(wrong.stdout)[("influitive", "credentials")] == "FAIL"
    assert "credentials or org id rejected" in wrong.stdout
    assert last_json(wrong.stderr)["event"] == "cli.failed"
    assert last_json(wrong.stderr)["message"] == "check found 1 problem: influitive"

    with_key(config, f'base_url = "{standins.influitive_url}"', 'base_url = "http://127.0.0.1:9"')
    with_key(config, f'base_url = "{standins.tremendous_url}/api/v2"',
             'base_url = "http://127.0.0.1:9/api/v2"')
    down = run_cli("check", config=config)
    assert down.returncode == 1
    assert "unreachable" in down.stdout
    assert ("tremendous", "problem") in _rows(down.stdout)
    assert "FAIL" in {_rows(down.stdout)[("tremendous", "problem")]}
    assert last_json(down.stderr)["message"].endswith("influitive, tremendous")
    assert "all checks passed" not in down.stdout


# --- run --run-once --------------------------------------------------------------------------


def test_run_once_exits_1_naming_the_vendor_and_the_fix(standins: Standins) -> None:
    standins.seed(1, 2)
    config = with_key(standins.config(), f'api_key = "{KEY}"', f'api_key = "{WRONG_KEY}"')
    result = run_cli("run", "--run-once", config=config)
    assert result.returncode == 1, result.stderr
    failed = last_json(result.stderr)
    last = failed["message"]
    assert failed["event"] == "cli.failed" and failed["exit_code"] == 1
    assert last.startswith("vendor tremendous rejected the credentials")
    assert "2 redemptions wait on it, nothing was refused" in last
    assert "Fix: check the credentials in [vendors.tremendous]" in last
    [problem] = failed["problems"]
    assert problem["cause"] == "tremendous.credentials" and problem["redemptions"] == 2
    assert problem["fix"].startswith("check the credentials in [vendors.tremendous]")
    # One paragraph on stdout: what was done and why the rest waits.
    assert result.stdout.count("\n") == 1
    assert result.stdout.startswith("run: polled 2 outstanding redemptions (2 new)")
    assert "waiting 2" in result.stdout
    assert "Reasons: 2 x waiting: Tremendous rejected the API key" in result.stdout
    assert standins.accepted() == {}  # nothing refused, nothing decided
    waiting = json.loads(run_cli("ledger", "list", "--state", "waiting", "--json",
                                 config=config).stdout)
    assert sorted(r["redemption_id"] for r in waiting) == ["1", "2"]


def test_run_once_exits_1_when_the_poll_stops_at_max_pages(standins: Standins) -> None:
    standins.seed(1, 2, 3, 4, 5)  # three pages of two
    config = with_key(standins.config(), f'org_id = "{ORG}"', f'org_id = "{ORG}"\nmax_pages = 1')
    result = run_cli("run", "--run-once", config=config)
    assert result.returncode == 1
    assert "[influitive] max_pages = 1" in last_json(result.stderr)["message"]
    assert "Fix: raise [influitive] max_pages" in last_json(result.stderr)["message"]
    assert "list incomplete" in result.stdout


def test_progress_n_of_m_on_a_terminal(standins: Standins) -> None:
    standins.seed(*range(1, 26))
    err, out = run_on_terminal("run", "--run-once", config=standins.config(),
                               terminal="stderr")
    assert "working 25 of 25" in err
    assert out.startswith("run: polled 25 outstanding redemptions (25 new); ordered 25")


# --- the daemon --------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    posts: list[str] = []

    async def hook(request: Request) -> Response:
        posts.append((await request.json())["text"])
        return Response("ok")

    with ServerThread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        yield f"{url}/hook", posts


def test_daemon_alerts_at_once_and_healthz_says_why(
    standins: Standins, receiver: tuple[str, list[str]]
) -> None:
    hook, posts = receiver
    standins.seed(1, 2)
    port = free_port()
    extra = (f'\n[server]\nlisten = "127.0.0.1:{port}"\n'
             f'\n[alerts]\nwebhook_url = "{hook}"\nmin_interval_seconds = 600\n')
    config = with_key(standins.config(interval_seconds="0.5", extra=extra),
                      f'api_key = "{KEY}"', f'api_key = "{WRONG_KEY}"')
    daemon = popen_cli("run", config=config)
    try:
        wait_for(lambda: any("tremendous" in p for p in posts), what="the alert")
        first = next(p for p in posts if "tremendous" in p)
        assert "rejected the credentials" in first and "2 redemptions wait on it" in first
        health = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 503
        body = health.json()
        assert [p["cause"] for p in body["problems"]] == ["tremendous.credentials"]
        assert "[vendors.tremendous]" in body["reason"]
        # Retries meet the same error again: once per cause per min_interval_seconds.
        time.sleep(3)  # several cycles, each retry backoff (1-2 s) run out at least once
        assert len([p for p in posts if "tremendous" in p]) == 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, err
    assert standins.accepted() == {}
    events = [line["event"] for line in json_lines(err)]
    assert "alert.problem.posted" in events and "cycle.problem" in events


def test_daemon_logs_only_json_while_the_scheduler_skips_runs(standins: Standins) -> None:
    standins.seed(1)
    standins.influitive.configure(delay=0.4)  # each cycle reads the list twice: ~1 s
    daemon = popen_cli("run", config=standins.config(interval_seconds="0.2"))
    try:
        time.sleep(4)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    lines = json_lines(err)  # every stderr line is one JSON object
    events = [line["event"] for line in lines]
    assert "scheduler.run.skipped" in events
    assert events[-1] == "daemon.stopped"
    for secret in SECRETS:
        assert secret not in err


# --- configuration mistakes -------------------------------------------------------------


def test_config_mistakes_exit_2_naming_the_file_or_the_variable(
    standins: Standins, tmp_path: Path
) -> None:
    config = standins.config()
    env = cli_env()

    missing = run_env("status", cwd=tmp_path, env={
        **env, "REWARD_POLLER_CONFIG": str(tmp_path / "nope.toml"),
        "REWARD_POLLER_INFLUITIVE__ORG_ID": "x"})
    assert missing.returncode == 2
    assert last_json(missing.stderr)["event"] == "config.invalid"
    assert last_json(missing.stderr)["message"].startswith(
        f"config file {tmp_path}/nope.toml not found")

    def env_error(name: str, value: str) -> str:
        result = run_env("--config", str(config), "status", cwd=tmp_path,
                         env={**env, name: value})
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        return result.stderr

    assert ("REWARD_POLLER_FULFILMENT__MAX_ORDER_AMOUNT: no such configuration key (did you "
            "mean REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT?)") in env_error(
        "REWARD_POLLER_FULFILMENT__MAX_ORDER_AMOUNT", '{"USD": "5"}')
    assert ("REWARD_POLLER_FULFILLMENT_MAX_ORDER_AMOUNT: no such configuration key (did you "
            "mean REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT?)") in env_error(
        "REWARD_POLLER_FULFILLMENT_MAX_ORDER_AMOUNT", '{"USD": "5"}')
    assert "REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT: not valid JSON" in env_error(
        "REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT", '{"USD": ')
    assert ("schedule.interval_seconds: Input should be a valid number, unable to parse "
            "string as a number (from REWARD_POLLER_SCHEDULE__INTERVAL_SECONDS)") in env_error(
        "REWARD_POLLER_SCHEDULE__INTERVAL_SECONDS", "often")

    with_key(config, "[schedule]\n", "[schedule]\nintervl_seconds = 5\n")
    typo = run_cli("status", config=config)
    assert typo.returncode == 2
    assert f"invalid configuration ({config})" in typo.stderr
    assert "schedule.intervl_seconds: unknown key (did you mean interval_seconds?)" in (
        typo.stderr)


def test_a_config_file_others_can_read_with_a_secret_is_warned_about(
    standins: Standins,
) -> None:
    private = standins.config()
    run_cli("db", "upgrade", config=private)
    private.chmod(0o644)
    assert "readable_by_others" not in run_cli("status", config=private).stderr  # 0700 above
    shared = Path(tempfile.mkdtemp(prefix="reward-poller-e2e-", dir="/tmp"))
    shared.chmod(0o755)
    config = shared / "config.toml"
    shutil.copy(private, config)
    config.chmod(0o644)
    warned = [line for line in json_lines(run_cli("status", config=config).stderr)
              if line["event"] == "config.file.readable_by_others"]
    assert len(warned) == 1
    assert warned[0]["file"] == str(config) and warned[0]["mode"] == "0644"
    assert warned[0]["secret_keys"] == ["influitive.api_token", "vendors.tremendous.api_key"]
    config.chmod(0o600)
    assert "readable_by_others" not in run_cli("status", config=config).stderr
    shutil.rmtree(shared)


# --- read-only commands -------------------------------------------------------------------


def test_read_only_commands_never_create_a_ledger(standins: Standins) -> None:
    config = standins.config()
    path = standins.workdir / "ledger.db"
    for args in (["status"], ["ledger", "list"], ["ledger", "show", "1"],
                 ["report", "--since", "2026-01-01"]):
        result = run_cli(*args, config=config)
        assert result.returncode == 1, args
        assert last_json(result.stderr)["message"].startswith(f"no ledger at {path}")
        assert not path.exists()
    bad = run_cli("ledger", "list", "--limit", "0", config=config)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--limit" in bad.stderr


def test_status_and_dry_run_read_a_ledger_on_a_read_only_mount(standins: Standins) -> None:
    data = standins.workdir / "data"
    data.mkdir()
    standins.seed(1)
    config = standins.config(ledger_url=f"sqlite:///{data / 'ledger.db'}")
    assert run_cli("run", "--run-once", config=config).returncode == 0
    standins.seed(2)
    inner = (f"mount --bind {data} {data} && mount -o remount,bind,ro {data} && "
             f"{sys.executable} -m poller --log-format json --config {config} status && "
             f"{sys.executable} -m poller --log-format json --config {config} run --dry-run")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", inner], capture_output=True,
                            text=True, timeout=60, env=cli_env())
    assert result.returncode == 0, result.stderr
    assert re.search(r"^fulfilled +1$", result.stdout, re.M), result.stdout
    assert "dry run: polled 1 outstanding; 1 to order" in result.stdout


# --- one table renderer ------------------------------------------------------------------


NASTY = "Swag \x1b[31mred\x1b[0m \x1b]0;pwned\x07pack\r\nInjected row " + "long " * 20


def test_one_table_renderer_for_pipes_and_terminals(standins: Standins) -> None:
    for rid in (1, 2, 3):
        standins.seed(rid, reward_id=90 + rid, reward_name=NASTY)
    config = standins.config()
    assert run_cli("run", "--run-once", config=config).returncode == 0

    piped = run_cli("ledger", "list", config=config)
    lines = piped.stdout.splitlines()
    assert len(lines) == 4  # the header and one whole line per row, however long
    assert all("\x1b" not in line and "\r" not in line for line in lines)
    # The reward name column and the reason (which quotes the name) are whole, uncut.
    assert all(line.count("Injected row " + "long " * 19 + "long") == 2
               and line.rstrip().endswith("long')") for line in lines[1:])
    assert piped.stderr.count("showing") == 0

    limited = run_cli("ledger", "list", "--limit", "2", config=config)
    assert len(limited.stdout.splitlines()) == 3
    assert "showing 2 of 3 (raise --limit to see more)" in limited.stderr

    out, _ = run_on_terminal("ledger", "list", config=config, env={"COLUMNS": "100"})
    shown = out.replace("\r\n", "\n").splitlines()
    assert len(shown) > 4 and all(len(line) <= 100 for line in shown if "\x1b" not in line)
    assert "\x1b[1m" in out  # the header in bold on a terminal
    plain, _ = run_on_terminal("ledger", "list", config=config,
                               env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert "\x1b" not in plain
    assert all(len(line) <= 100 for line in plain.replace("\r\n", "\n").splitlines())

    status = json.loads(run_cli("status", "--json", config=config).stdout)
    assert status["counts"]["held"] == 3 and status["last_successful_poll"]["outstanding"] == 3


# --- who did it, and what they said -----------------------------------------------------


def test_operator_commands_record_who_and_the_message(standins: Standins) -> None:
    standins.seed(1, reward_id=99, reward_name="Swag")
    standins.seed(2, reward_id=98, reward_name="Mug")
    config = standins.config()
    assert run_cli("run", "--run-once", config=config).returncode == 0

    refused = run_cli("ledger", "refuse", "1", "--by", "Ana Ops", "-m", "Out of stock, sorry",
                      config=config)
    assert refused.returncode == 0, refused.stderr
    show = run_cli("ledger", "show", "1", config=config).stdout
    line = next(ln for ln in show.splitlines() if "ledger refuse" in ln)
    assert "Ana Ops" in line and '"Out of stock, sorry"' in line
    assert "message        Out of stock, sorry" in show

    assert run_cli("ledger", "retry", "2", config=config).returncode == 0
    events = json.loads(run_cli("ledger", "show", "2", "--json", config=config).stdout)["events"]
    assert events[-1]["actor"] == getpass.getuser()
    assert events[-1]["detail"].startswith("released by an operator (ledger retry)")


# --- CSV ------------------------------------------------------------------------------------


def test_report_csv_cells_never_start_a_formula(standins: Standins) -> None:
    standins.seed(1, contact={"id": 9001, "email": "=1+2@example.com", "name": "A"})
    standins.seed(2, contact={"id": 9002, "email": "-3+4@example.com", "name": "B"})
    config = standins.config()
    assert run_cli("run", "--run-once", config=config).returncode == 0
    report = run_cli("report", "--since", "2000-01-01", config=config)
    assert report.returncode == 0, report.stderr
    emails = sorted(row.split(",")[2] for row in report.stdout.splitlines()[1:])
    assert emails == ["'-3+4@example.com", "'=1+2@example.com"]
