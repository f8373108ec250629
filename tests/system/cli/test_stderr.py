"""What the command line writes on stderr when it is not a terminal (a pipe, a file, the
journal): one JSON object per line, whatever wrote it (a log line, the command's failure, a
configuration error, click's usage errors, a note); under systemd each line starts with its
journald priority. On a terminal the same failures read as plain text."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.system.cli.conftest import SECRETS, TOKEN, Standins, cli_env

pytestmark = pytest.mark.e2e

BAD_CONFIG = """
[influitive]
api_tokn = "x"
org_id = 5

[ledger]
urll = "sqlite:///x.db"
"""


def run(*args: str, cwd: Path, env: dict[str, str] | None = None,
        stderr: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """The CLI as a service runs it: no --log-format, stderr not a terminal."""
    result = subprocess.run([sys.executable, "-m", "poller", *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, timeout=60, cwd=cwd,
                            env={**cli_env(), **(env or {})})
    for secret in SECRETS:
        assert secret not in result.stdout and secret not in (result.stderr or "")
    return result


def objects(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line as the JSON object it must be (a plain line fails the test)."""
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    parsed = [json.loads(line) for line in lines]
    for obj in parsed:
        assert {"event", "level", "timestamp"} <= obj.keys(), obj
    return parsed


def private(config: Path) -> Path:
    config.chmod(0o600)  # no readable-by-others warning in the way
    return config


def test_a_config_with_several_mistakes_is_one_json_object(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(BAD_CONFIG)
    result = run("--config", str(config), "run", "--run-once", cwd=tmp_path)
    assert result.returncode == 2
    [line] = objects(result.stderr)
    assert line["event"] == "config.invalid" and line["level"] == "error"
    assert line["message"] == f"invalid configuration ({config})"
    assert line["exit_code"] == 2
    assert line["problems"] == [
        "influitive.api_token: required key is missing",
        "influitive.org_id: Input should be a valid string",
        "influitive.api_tokn: unknown key (did you mean api_token?)",
        "ledger.urll: unknown key (did you mean url?)",
    ]


def test_a_missing_config_and_usage_errors_are_json(tmp_path: Path) -> None:
    missing = run("--config", str(tmp_path / "nope.toml"), "status", cwd=tmp_path)
    assert missing.returncode == 2
    [line] = objects(missing.stderr)
    assert line["event"] == "config.invalid"
    assert line["message"].startswith(f"config file {tmp_path / 'nope.toml'} not found")

    for args, usage, said in (
        (["ledger", "list", "--limit", "0"], "reward-poller ledger list", "'--limit'"),
        (["no-such-command"], "reward-poller [OPTIONS]", "No such command"),
        (["--log-level", "loud", "status"], "reward-poller [OPTIONS]", "'loud'"),
    ):
        bad = run(*args, cwd=tmp_path)
        assert bad.returncode == 2, args
        [line] = objects(bad.stderr)
        assert line["event"] == "cli.usage_error" and line["exit_code"] == 2
        assert line["usage"].startswith(usage) and said in line["message"]
        assert line["hint"].startswith("Try 'reward-poller")


def test_run_once_rejected_by_influitive_ends_with_a_structured_line(
    standins: Standins,
) -> None:
    config = private(standins.config())
    config.write_text(config.read_text().replace(TOKEN, "not-the-token-123456"))
    result = run("--config", str(config), "run", "--run-once", cwd=standins.workdir)
    assert result.returncode == 1
    lines = objects(result.stderr)
    last = lines[-1]
    assert last["event"] == "cli.failed" and last["level"] == "error"
    assert last["source"] == "influitive" and last["cause"] == "influitive.credentials"
    assert last["fix"] == ("check [influitive] api_token and org_id, then run "
                           "`reward-poller check`")
    assert "HTTP 401" in last["message"] and last["exit_code"] == 1
    # Said once: no log line repeats the failure before the command's own line.
    assert [ln["event"] for ln in lines if ln["level"] in ("warning", "error")] == [
        "cli.failed"]


def test_a_note_and_a_shortened_listing_are_json(standins: Standins) -> None:
    standins.seed(1, 2, 3)
    config = private(standins.config())
    assert run("--config", str(config), "run", "--run-once", cwd=standins.workdir
               ).returncode == 0
    limited = run("--config", str(config), "ledger", "list", "--limit", "2",
                  cwd=standins.workdir)
    assert limited.returncode == 0
    [line] = [ln for ln in objects(limited.stderr) if ln["event"] == "cli.rows.limited"]
    assert line["message"] == "showing 2 of 3 (raise --limit to see more)"
    assert (line["shown"], line["total"], line["level"]) == (2, 3, "info")


def test_under_systemd_every_line_carries_its_priority(standins: Standins) -> None:
    """JOURNAL_STREAM names stderr's device and inode: each line starts with ``<N>``
    (sd-daemon(3)), then the JSON object."""
    standins.seed(1)
    standins.seed(2, reward_id=99, reward_name="Swag")  # no rule: held, a warning
    config = private(standins.config())
    wrong = standins.workdir / "wrong.toml"
    wrong.write_text(config.read_text().replace(TOKEN, "not-the-token-123456"))
    private(wrong)
    err = standins.workdir / "stderr"
    with err.open("w") as sink:
        status = os.fstat(sink.fileno())
        journal = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        worked = run("--log-level", "debug", "--config", str(config), "run", "--run-once",
                     cwd=standins.workdir, env=journal, stderr=sink)
        rejected = run("--config", str(wrong), "run", "--run-once", cwd=standins.workdir,
                       env=journal, stderr=sink)
    assert (worked.returncode, rejected.returncode) == (0, 1)
    priorities = {"debug": "7", "info": "6", "warning": "4", "error": "3"}
    seen = set()
    lines = err.read_text().splitlines()
    for line in lines:
        found = re.fullmatch(r"<(\d)>(\{.*\})", line)
        assert found, line
        obj = json.loads(found.group(2))
        assert found.group(1) == priorities[obj["level"]], line
        seen.add(obj["level"])
    assert seen == set(priorities)
    assert lines[-1].startswith("<3>") and json.loads(lines[-1][3:])["event"] == "cli.failed"

    # A JOURNAL_STREAM inherited by a process whose stderr goes elsewhere: no prefix.
    elsewhere = run("--config", str(standins.workdir / "nope.toml"), "status",
                    cwd=standins.workdir, env=journal)
    assert elsewhere.stderr.startswith("{") and objects(elsewhere.stderr)


def on_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; (exit code, what the terminal got)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "poller", *args], stdout=subprocess.PIPE,
                            stderr=follower, env=cli_env(), cwd=cwd)
    os.close(follower)
    chunks: list[bytes] = []
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
    code = proc.wait(timeout=60)
    os.close(leader)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


def test_on_a_terminal_the_same_errors_read_as_text(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(BAD_CONFIG)
    code, text = on_terminal("--config", str(config), "status", cwd=tmp_path)
    assert code == 2
    assert text == (
        f"reward-poller: invalid configuration ({config}):\n"
        "  influitive.api_token: required key is missing\n"
        "  influitive.org_id: Input should be a valid string\n"
        "  influitive.api_tokn: unknown key (did you mean api_token?)\n"
        "  ledger.urll: unknown key (did you mean url?)\n")
    code, text = on_terminal("ledger", "list", "--limit", "0", cwd=tmp_path)
    assert code == 2
    assert text.startswith("Usage: reward-poller ledger list [OPTIONS]\n")
    assert text.endswith("Error: Invalid value for '--limit': 0 is not in the range x>=1.\n")
