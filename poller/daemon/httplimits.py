"""The listener's limits, enforced: what keeps it up when a client misbehaves, on purpose or not.

uvicorn on its own waits forever for the rest of a request's headers, keeps every
connection it accepts, and logs a traceback each time ``accept()`` fails. A thousand
sockets that each send half a request then exhaust the process's file descriptors and
``/healthz`` stops answering. Here:

* ``LimitedH11Protocol`` gives every connection a deadline for its request headers
  (``[server] header_timeout_seconds``) and keeps at most ``[server] max_connections`` open:
  a new connection beyond the limit displaces the oldest one still waiting for its headers
  (a slow client loses its place, a monitoring probe that sends its request at once does
  not), or is closed at once when every open connection is busy with a request.
* ``read_body`` reads a request body chunk by chunk against a size cap and a deadline, so a
  200 MB body is refused after the first bytes past the cap, never read whole first.
* ``AcceptErrorLog`` turns asyncio's "accept() out of system resource" reports into one
  warning per interval with a count, instead of a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

from poller.config.sections import ServerLimits

log = structlog.get_logger("poller.daemon")


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection limit.

    ``limits`` is set on a subclass made by ``protocol_for`` (uvicorn builds the protocol
    from the class with its own arguments).
    """

    limits: ServerLimits = ServerLimits()
    _header_timer: asyncio.TimerHandle | None = None
    _waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            # Every other connection is busy with a request: this one waits for nothing.
            transport.abort()
            return
        self._arm_header_timer()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for its headers; False if none."""
        waiting = [c for c in self.connections
                   if isinstance(c, LimitedH11Protocol) and c is not self
                   and c._waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._waiting_since or 0.0)
        oldest._close("connection limit reached; the oldest slow connection is dropped")
        return True

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._waiting_since = time.monotonic()
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_seconds, self._headers_late, self.cycle
        )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._waiting_since = None

    def _idle(self) -> bool:
        """No request in progress: before the first, or after the last answer."""
        return self.cycle is None or bool(self.cycle.response_complete)

    def _headers_late(self, cycle_when_armed: Any) -> None:
        self._header_timer = None
        # Closed only if no new request began since the timer was set and none is running.
        if self.cycle is cycle_when_armed and self._idle():
            self._close("request headers not received in time")

    def _close(self, why: str) -> None:
        self._disarm_header_timer()
        if not self.transport.is_closing():
            log.debug("server.connection.closed", reason=why)
            self.transport.abort()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived: no deadline for them now
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._idle():
            # The next request on this connection gets the same deadline (uvicorn's
            # keep-alive timer stops at the first byte of it).
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


def protocol_for(limits: ServerLimits) -> type[LimitedH11Protocol]:
    return type("ConfiguredH11Protocol", (LimitedH11Protocol,), {"limits": limits})


class AcceptErrorLog:
    """A loop exception handler: accept() failures (EMFILE, ENFILE, ENOBUFS) are counted
    and logged once per interval; everything else goes to the default handler."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "accept" not in message:
            loop.default_exception_handler(context)
            return
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return
        exc = context.get("exception")
        log.warning("server.accept.failed",
                    action="out of file descriptors or memory: new connections wait in the "
                           "backlog",
                    error=f"{type(exc).__name__}: {exc}" if exc else message,
                    repeated=self.suppressed)
        self._last = now
        self.suppressed = 0


class BodyTooLarge(Exception):
    """The request body is larger than the cap; the message names the config key."""


class BodyTooSlow(Exception):
    """The request body did not arrive within the deadline."""


async def read_body(request: Request, *, max_bytes: int, timeout: float, key: str) -> bytes:
    """The request body, read chunk by chunk: BodyTooLarge as soon as it passes
    ``max_bytes`` (or at once when Content-Length says it will), BodyTooSlow when it takes
    longer than ``timeout`` seconds. ``key`` names the config key of the cap."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"body of {int(declared)} bytes is larger than {key} "
                           f"({max_bytes} bytes)")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(f"body is larger than {key} ({max_bytes} bytes)")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTooSlow(f"body not received within {timeout:g} seconds") from None
    return b"".join(chunks)
