"""Operator-facing tests: the CLI and the daemon as subprocesses against the stand-ins of
tests/e2e (same fixture, same helpers), plus the systemd units and the listener over HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from tests.system.cli.conftest import standins  # noqa: F401  (the fixture, shared with tests/e2e)


def wait_for(predicate: Callable[[], object], timeout: float = 20.0,
             what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
