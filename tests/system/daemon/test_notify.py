"""The sd_notify protocol: datagrams on a socket the test binds, as systemd would; then the
real daemon (``python -m poller run``) under a fake ``NOTIFY_SOCKET``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from poller.daemon.scheduler import Notifier, socket_address, watchdog_seconds
from tests.system.cli.conftest import SECRETS, Standins, cli_env
from tests.system.daemon.conftest import wait_for


class Listener:
    """A bound AF_UNIX datagram socket collecting notifications."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(fields)

    def has(self, key: str) -> bool:
        return any(key in m for m in self.drain())


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        address = path
    else:
        name = f"reward-poller-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        address = "@" + name
    sock.setblocking(False)
    try:
        yield Listener(sock, address)
    finally:
        sock.close()


def test_notifications_reach_the_socket(listener: Listener) -> None:
    n = Notifier(listener.address)
    assert n.enabled
    assert n.ready("polling every 300s")
    assert n.watchdog()
    assert n.stopping("bye\nSTATUS=injected")  # a newline cannot add a line
    msgs = listener.drain()
    assert msgs == [
        {"READY": "1", "STATUS": "polling every 300s"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1", "STATUS": "bye STATUS=injected"},
    ]


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier.from_environment({})
    assert not n.enabled and not n.ready() and n.watchdog_interval is None


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "gone.sock")).ready() is False


def test_addresses_and_watchdog_settings() -> None:
    assert socket_address("@name") == b"\0name"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("vsock:2:1234") is None and socket_address("") is None
    pid = os.getpid()
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}, pid) == 30
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 30
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_seconds({}, pid) is None


@pytest.mark.e2e
@pytest.mark.parametrize("listener", ["abstract"], indirect=True)
def test_the_daemon_says_ready_watchdog_stopping(standins: Standins, listener: Listener) -> None:
    standins.seed(1)
    config = standins.config(interval_seconds="30")  # one cycle, then idle
    env = cli_env()
    env["NOTIFY_SOCKET"] = listener.address
    env["WATCHDOG_USEC"] = "1000000"  # 1 s: idle keep-alives every 0.5 s
    env.pop("WATCHDOG_PID", None)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "poller", "--log-format", "json", "--config", str(config), "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        wait_for(lambda: listener.has("READY"), what="READY=1")
        wait_for(lambda: any(m.get("WATCHDOG") == "1" and "STATUS" in m
                             for m in listener.drain()), what="WATCHDOG=1 after the cycle")
        assert standins.accepted() == {"1": ["fulfill"]}  # the cycle really ran
        # Between cycles (30 s apart), keep-alives go on: only a hung cycle trips WatchdogSec.
        time.sleep(2.0)
        idle = [m for m in listener.drain() if m == {"WATCHDOG": "1"}]
        assert len(idle) >= 2
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    msgs = listener.drain()
    keys = [k for m in msgs for k in m if k != "STATUS"]
    assert keys.index("READY") < keys.index("WATCHDOG") < keys.index("STOPPING")
    ready = next(m for m in msgs if "READY" in m)
    assert ready["STATUS"] == "polling every 30s"
    assert next(m for m in msgs if "STATUS" in m and "WATCHDOG" in m)["STATUS"] == "cycle 1 ok"
    for secret in SECRETS:
        assert all(secret not in str(m) for m in msgs)


@pytest.mark.e2e
@pytest.mark.parametrize("listener", ["path"], indirect=True)
def test_no_ready_when_the_start_up_checks_fail(standins: Standins, listener: Listener) -> None:
    config = standins.config(ledger_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    env = cli_env()
    env["NOTIFY_SOCKET"] = listener.address
    result = subprocess.run(
        [sys.executable, "-m", "poller", "--log-format", "json", "--config", str(config), "run"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 1
    assert not listener.has("READY")
