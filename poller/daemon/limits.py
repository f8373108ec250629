"""The listener's limits, as plain data (importing this loads no HTTP library; the
config validates against it). ``poller.daemon.guard`` enforces them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """The listener's limits; the defaults are what ``[server]`` uses when a key is unset."""

    max_connections: int = 256
    """Open connections at most (``[server] max_connections``)."""
    backlog: int = 64
    """Connections the kernel queues before they are accepted (``[server] backlog``)."""
    header_timeout_seconds: float = 10.0
    """Time a connection has to send its request line and headers."""
    keep_alive_seconds: float = 5.0
    """Idle time allowed between two requests on one connection."""
    max_header_bytes: int = 16 * 1024
    """Largest request line plus headers (h11's incomplete-event limit)."""
    accept_error_interval_seconds: float = 60.0
    """At most one log line per this many seconds about failing ``accept()`` calls."""
