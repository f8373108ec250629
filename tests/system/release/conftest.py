"""Helpers for the release tests: the CLI as a subprocess, free loopback ports, the stand-ins
of tests/e2e."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from poller.sandbox.services import SERVICES
from tests.system.cli.conftest import standins  # noqa: F401  (the fixture, shared with tests/e2e)


def free_port_base(count: int = len(SERVICES)) -> int:
    """A port such that it and the next ``count - 1`` are free on loopback now."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        try:
            for port in range(base, base + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free run of loopback ports")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str, cwd: Path, command: Sequence[str] = (sys.executable, "-m", "poller"),
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=clean_env())


def start(*args: str, cwd: Path,
          command: Sequence[str] = (sys.executable, "-m", "poller")) -> subprocess.Popen[str]:
    return subprocess.Popen([*command, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=clean_env())


def read_until(process: subprocess.Popen[str], done: Callable[[str], bool],
               timeout: float = 60) -> str:
    """The process's output up to the first line for which ``done`` is true."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if done(line):
            return "".join(seen)
    raise AssertionError("never came:\n" + "".join(seen))


def stop(process: subprocess.Popen[str], timeout: float = 15) -> str:
    """SIGTERM, then the rest of the output; the exit code must be 0."""
    process.terminate()
    rest, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, rest
    return rest or ""
