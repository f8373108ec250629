"""Serve one stand-in (``influitive``, ``tremendous`` or ``tango``) from its own process until stdin
closes: ``python -m bench.serve tremendous``.

The benchmarks run the worker in one process and each stand-in in another, as the real
services are on other machines: a stand-in sharing an interpreter with the worker (or with
the other stand-in, paging 2,000 redemptions as JSON) would share its GIL, and its timings
(the 200 ms vendor delay, the rate-limit window) would drift with their load. Prints one
JSON line with the base URL.

The Influitive stand-in is served behind ``RequestBudget``: every API request is logged with
its time and status (``GET /_bench/requests``), and when a budget is set
(``POST /_bench/budget {"requests": N, "window": seconds}``, ``{"requests": null}`` for
none) a request beyond N in any rolling window of that many seconds is answered as
Influitive's AWS WAF rule blocks one: 403 with an HTML page. ``POST /_bench/reset`` clears
the log and the budget.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from poller.sandbox import influitive, tango, tremendous
from poller.sandbox.server import ServerThread

TOKEN = "bench-influitive-token"
ORG = "bench-org"
KEY = "bench-tremendous-key"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BLOCK_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>"
    b"<body><h1>403 Forbidden</h1><p>Request blocked.</p></body></html>\n"
)


class RequestBudget:
    """ASGI wrapper: a rolling-window request budget in front of an API, as Influitive's
    AWS WAF rate rule is documented (a number of requests from one address in any window
    of so many seconds; beyond it, a 403 block page without ``WWW-Authenticate``).

    Every request outside ``/_standin`` and ``/_bench`` counts, blocked ones included (a
    WAF rate rule counts what reaches it), and is logged as ``[time, method, path,
    status]``."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.requests: int | None = None
        self.window = 300.0
        self._recent: deque[float] = deque()
        self.log: list[list[Any]] = []

    def configure(self, requests: int | None, window: float) -> None:
        with self._lock:
            self.requests, self.window = requests, float(window)
            self._recent.clear()

    def reset(self) -> None:
        with self._lock:
            self.requests, self.window = None, 300.0
            self._recent.clear()
            self.log.clear()

    def admit(self, now: float) -> bool:
        """Count one request at ``now``; whether it is within the budget."""
        with self._lock:
            if self.requests is None:
                return True
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            self._recent.append(now)
            return len(self._recent) <= self.requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/_standin"):
            await self._app(scope, receive, send)
            return
        if path.startswith("/_bench"):
            await self._admin(scope, receive, send)
            return
        now = time.time()
        entry: list[Any] = [now, scope["method"], path, 0]
        with self._lock:
            self.log.append(entry)
        if not self.admit(now):
            entry[3] = 403
            await _respond(send, 403, BLOCK_PAGE, b"text/html")
            return

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry[3] = message["status"]
            await send(message)

        await self._app(scope, receive, recording)

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if path == "/_bench/budget" and method == "POST":
            data = json.loads(body or b"{}")
            self.configure(data.get("requests"), data.get("window", 300.0))
            answer: Any = {"requests": self.requests, "window": self.window}
        elif path == "/_bench/requests" and method == "GET":
            with self._lock:
                answer = {"requests": [list(e) for e in self.log]}
        elif path == "/_bench/reset" and method == "POST":
            self.reset()
            answer = {}
        else:
            await _respond(send, 404, b'{"error": "not found"}', b"application/json")
            return
        await _respond(send, 200, json.dumps(answer).encode(), b"application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    # Warnings only, and to stderr: stdout is a pipe the parent reads one line from, and a
    # full pipe would block the servers.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    which = sys.argv[1]
    app: Any
    if which == "influitive":
        app = RequestBudget(influitive.create_app(influitive.InfluitiveState(),
                                                  api_token=TOKEN, org_id=ORG))
    elif which == "tango":
        app = tango.create_app(tango.TangoState(), platform_key=KEY)
    else:
        app = tremendous.create_app(tremendous.TremendousState(), api_key=KEY)
    with ServerThread(app) as url:
        print(json.dumps({"url": url}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)


if __name__ == "__main__":
    main()
