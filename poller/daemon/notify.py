"""systemd's notify protocol (sd_notify(3)), spoken directly: one datagram of ``KEY=value``
lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET``.

Written here rather than taken from a package because the protocol is ten lines of socket
code and the maintained bindings need libsystemd. Outside systemd (no ``$NOTIFY_SOCKET``)
every call is a no-op, so the daemon runs the same from a shell.

A notification that cannot be delivered is logged and dropped: telling systemd how we are is
never a reason to stop working. (If systemd stops hearing WATCHDOG=1, it restarts us, which
is the point of the watchdog.)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("poller.notify")


def socket_address(value: str) -> str | bytes | None:
    """The address to send to: a path, or (``@name``) an abstract socket, whose name starts
    with a NUL byte on the wire. None for an empty or unusable value (e.g. vsock, which this
    daemon never runs under)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_seconds(environ: Mapping[str, str], pid: int) -> float | None:
    """``WatchdogSec=`` as systemd passed it (``$WATCHDOG_USEC``), when it is meant for this
    process (``$WATCHDOG_PID`` unset or ours); None when no watchdog is armed."""
    usec = environ.get("WATCHDOG_USEC", "")
    target = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if target and (not target.isdigit() or int(target) != pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Tells the service manager about the daemon's life: READY, WATCHDOG, STOPPING, STATUS."""

    def __init__(self, address: str | None = None, *, watchdog: float | None = None) -> None:
        self._address = socket_address(address or "")
        self.watchdog_interval = watchdog
        """Seconds within which systemd expects a WATCHDOG=1 (None: no watchdog armed)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"), watchdog=watchdog_seconds(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """Send one notification (``ready="1"`` becomes ``READY=1``). True if delivered."""
        if self._address is None:
            return False
        text = "\n".join(f"{key.upper()}={_one_line(value)}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(text.encode(), self._address)
        except OSError as exc:
            log.warning("systemd.notify.failed", error=str(exc))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(ready="1", **({"status": status} if status else {}))

    def watchdog(self, status: str = "") -> bool:
        return self.send(watchdog="1", **({"status": status} if status else {}))

    def stopping(self, status: str = "") -> bool:
        return self.send(stopping="1", **({"status": status} if status else {}))

    def status(self, status: str) -> bool:
        return self.send(status=status)


def _one_line(value: str) -> str:
    # A newline would start a new KEY=value line: never let a status text do that.
    return " ".join(value.split())
