"""Serve the listener from a thread of the daemon (uvicorn), on exactly the configured
address.

The socket is bound here, in the caller's thread, before uvicorn starts: an address in use
or not ours is then an error the ``run`` command reports (exit 1, before READY=1), not a
thread dying quietly in the background.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import structlog
import uvicorn

from poller.config.sections import ServerLimits, parse_listen
from poller.daemon.httplimits import AcceptErrorLog, protocol_for
from poller.domain.errors import PollerError

log = structlog.get_logger("poller.daemon")


class ListenError(PollerError):
    """The configured ``[server] listen`` address cannot be bound."""


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


def _uvicorn_server(config: Any, interval: float) -> Any:
    """uvicorn's server with our handler for the event loop's errors: accept failures are
    counted and logged once per interval, not a traceback per attempt."""
    class Server(uvicorn.Server):
        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            asyncio.get_running_loop().set_exception_handler(AcceptErrorLog(interval))
            await super().serve(sockets)

    return Server(config)


class HttpServer:
    """``with HttpServer(app, "127.0.0.1:9464"): ...`` serves ``app`` until the block ends."""

    def __init__(self, app: Any, listen: str, limits: ServerLimits | None = None) -> None:
        limits = limits or ServerLimits()
        self.limits = limits
        self.host, self.port = parse_listen(listen)
        self._sock = bind(self.host, self.port, limits.backlog)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2, log_config=None,  # our logging set-up stays
            http=protocol_for(limits), backlog=limits.backlog,
            timeout_keep_alive=max(1, round(limits.keep_alive_seconds)),
            h11_max_incomplete_event_size=limits.max_header_bytes,
            proxy_headers=False,  # whose X-Forwarded-* to believe is the app's to say
        )
        self._server = _uvicorn_server(config, limits.accept_error_interval_seconds)
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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
