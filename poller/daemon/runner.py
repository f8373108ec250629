"""The daemon's listener: uvicorn in a thread of the daemon, on exactly the configured
address, with the limits that keep it up when a client misbehaves (docs/security.md).

The socket is bound in the caller's thread, before uvicorn starts: an address in use is then
an error the ``run`` command reports (exit 1, before READY=1), not a thread dying quietly.
uvicorn on its own waits for ever for a request's headers and keeps every connection it
accepts, so a thousand half-sent requests would exhaust the file descriptors and ``/healthz``
would stop answering: ``LimitedH11Protocol`` gives each a header deadline and keeps at most
``max_connections`` open.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from poller.config.sections import ServerLimits, parse_listen
from poller.domain.errors import PollerError

log = structlog.get_logger("poller.daemon")


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection limit: a connection
    beyond it displaces the one that has waited longest for its headers, or is closed at once
    when every open connection is busy with a request. ``limits`` is set on a subclass
    (uvicorn builds the protocol from the class with its own arguments)."""

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


class AcceptErrorLog:
    """A loop exception handler: accept() failures (EMFILE, ENFILE, ENOBUFS) are counted and
    logged once per interval, not a traceback per attempt; the rest goes to the default."""

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


class ListenError(PollerError):
    pass


def bind(host: str, port: int, backlog: int = ServerLimits.backlog) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it, a response written in two parts
        # meets the client's delayed ACK and every request takes ~40 ms (measured).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        # A bounded queue: connections past it are refused by the kernel, not held.
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"[server] listen: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return sock


class _Server(uvicorn.Server):
    accept_error_interval = 60.0

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        handler = AcceptErrorLog(self.accept_error_interval)
        asyncio.get_running_loop().set_exception_handler(handler)
        await super().serve(sockets)


class HttpServer:
    """``with HttpServer(app, "127.0.0.1:9464"): ...`` serves ``app`` until the block ends."""

    def __init__(self, app: Any, listen: str, limits: ServerLimits | None = None) -> None:
        limits = limits or ServerLimits()
        self.host, self.port = parse_listen(listen)
        self._sock = bind(self.host, self.port, limits.backlog)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2, log_config=None,  # our logging set-up stays
            http=type("ConfiguredH11Protocol", (LimitedH11Protocol,), {"limits": limits}),
            backlog=limits.backlog,
            timeout_keep_alive=max(1, round(limits.keep_alive_seconds)),
            h11_max_incomplete_event_size=limits.max_header_bytes,
            proxy_headers=False,  # whose X-Forwarded-* to believe is the app's to say
        )
        self._server = _Server(config)
        self._server.accept_error_interval = limits.accept_error_interval_seconds
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="http-listener",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._sock.close()
                raise ListenError(f"the HTTP listener did not start on {self.url}")
            time.sleep(0.01)
        log.info("server.listening", url=self.url, routes="/healthz /metrics")
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
