"""How the command line ends when a command is interrupted, aborted or crashes: one line on
stderr (a JSON object when stderr is not a terminal) and the documented exit code."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import structlog

from poller import logs
from poller.cli import context
from poller.cli.main import EXIT_INTERRUPTED, run_command

SECRET = "cli-stderr-token-4c9e21b7"


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """``run_command`` configures logging for the process: put it back for the next test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logs._json_lines = None
    logs._journal = None


def failing_config(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def config(self: context.Context) -> Any:
        raise error

    monkeypatch.setattr(context.Context, "config", config)


def one_json_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    [line] = capsys.readouterr().err.splitlines()
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_ctrl_c_is_one_json_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    failing_config(monkeypatch, KeyboardInterrupt())
    assert run_command(["--config", str(tmp_path / "c.toml"), "status"]) == EXIT_INTERRUPTED
    line = one_json_line(capsys)
    assert line["event"] == "cli.interrupted" and line["exit_code"] == 130
    assert line["level"] == "warning"


def test_an_abort_is_one_json_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    failing_config(monkeypatch, click.Abort())
    assert run_command(["--config", str(tmp_path / "c.toml"), "status"]) == 1
    line = one_json_line(capsys)
    assert line["event"] == "cli.aborted" and line["exit_code"] == 1


def test_a_crash_is_one_json_line_with_the_traceback_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    logs.redactor.add([SECRET])
    failing_config(monkeypatch, RuntimeError(f"boom with {SECRET}"))
    assert run_command(["--config", str(tmp_path / "c.toml"), "status"]) == 1
    line = one_json_line(capsys)
    assert line["event"] == "cli.crashed" and line["level"] == "critical"
    assert line["message"] == "unexpected error: RuntimeError: boom with [redacted]"
    assert "Traceback (most recent call last)" in line["exception"]
    assert SECRET not in json.dumps(line)


def test_help_and_success_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(["--help"]) == 0
    assert run_command(["--version"]) == 0
    captured = capsys.readouterr()
    assert "Usage: reward-poller" in captured.out and captured.err == ""


def test_the_console_format_keeps_click_s_words(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    failing_config(monkeypatch, KeyboardInterrupt())
    args = ["--log-format", "console", "--config", str(tmp_path / "c.toml"), "status"]
    assert run_command(args) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "Aborted!\n"
    failing_config(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):  # Python shows the traceback
        run_command(args)


def test_the_journal_prefix_needs_stderr_to_be_the_journal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    import sys

    with (tmp_path / "err").open("w") as sink:
        monkeypatch.setattr(sys, "stderr", sink)
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")
        assert not logs.journal_stderr()
        stat = (tmp_path / "err").stat()
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        assert logs.journal_stderr()
        logs.configure("json")
        logs.stderr_line("cli.note", "hello", level="warning", extra=1)
        structlog.get_logger("t").info("thing.happened", n=2)
        structlog.get_logger("t").debug("not.shown")
        logging.getLogger("some.library").error("library says %s", "no")
    lines = (tmp_path / "err").read_text().splitlines()
    assert [line[:3] for line in lines] == ["<4>", "<6>", "<3>"]
    assert [json.loads(line[3:])["event"] for line in lines] == [
        "cli.note", "thing.happened", logs.LIBRARY_EVENT]


def test_an_exception_no_thread_caught_is_one_log_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    import sys
    import threading

    def work() -> None:
        raise RuntimeError(f"lost in a thread {SECRET}")

    logs.redactor.add([SECRET])
    with (tmp_path / "err").open("w") as sink:
        monkeypatch.setattr(sys, "stderr", sink)
        monkeypatch.setattr(threading, "excepthook", logs.log_thread_crash)
        logs.configure("json")
        thread = threading.Thread(target=work, name="worker-1")
        thread.start()
        thread.join()
    [line] = (tmp_path / "err").read_text().splitlines()
    parsed = json.loads(line)
    assert parsed["event"] == "thread.crashed" and parsed["level"] == "critical"
    assert parsed["thread"] == "worker-1"
    assert "RuntimeError: lost in a thread [redacted]" in parsed["exception"]
