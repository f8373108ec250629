"""Fault machinery shared by the stand-ins: forced statuses, delay, rate limit, lost and
garbage answers, the ``/_standin/...`` admin routes that set them, and the helpers the
stand-in apps use to apply them around their API handlers.

A stand-in state inherits ``Faults``, creates ``self._lock`` (an ``RLock``), calls
``_init_faults()`` in its ``__init__`` and ``_reset_faults()`` in its ``reset``.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from poller.domain.keys import KEY_PREFIX

LoseMode = Literal["drop", "hang"]


@dataclass
class Fault:
    """Answer ``status`` instead of handling the request, for ``remaining`` requests
    (None = until cleared) matching ``method``/``path`` (a prefix under the API root)."""

    status: int
    remaining: int | None = 1
    retry_after: str | None = None
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.remaining is None or self.remaining > 0)
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or path.startswith(self.path))
        )


@dataclass
class _Loss:
    remaining: int
    mode: LoseMode
    hang_seconds: float


class Faults:
    """The fault knobs of a stand-in state. Thread-safe through the state's ``_lock``."""

    _lock: threading.RLock
    faults: list[Fault]
    delay: float
    rate_limit: int | None
    rate_limit_retry_after: str | None
    losses: list[_Loss]
    garbage_left: int
    _hits: deque[float]

    def _init_faults(self) -> None:
        self.faults = []
        self.delay = 0.0
        self.rate_limit = None
        self.rate_limit_retry_after = None
        self.losses = []
        self.garbage_left = 0
        self._hits = deque()

    def _reset_faults(self) -> None:
        with self._lock:
            self.faults.clear()
            self.delay = 0.0
            self.rate_limit = None
            self.rate_limit_retry_after = None
            self.losses.clear()
            self.garbage_left = 0
            self._hits.clear()

    # --- knobs --------------------------------------------------------------------------

    def fail(
        self, status: int, count: int | None = 1, *, retry_after: str | float | None = None,
        method: str | None = None, path: str | None = None,
    ) -> None:
        """Answer ``status`` to the next ``count`` API requests (None: until ``clear_faults``)
        without handling them. ``path`` is a prefix such as ``/orders``."""
        with self._lock:
            self.faults.append(Fault(
                status=status, remaining=count,
                retry_after=None if retry_after is None else str(retry_after),
                method=method, path=path,
            ))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def set_delay(self, seconds: float) -> None:
        with self._lock:
            self.delay = max(0.0, seconds)

    def set_rate_limit(
        self, per_second: int | None, retry_after: str | float | None = None,
    ) -> None:
        """At most ``per_second`` API requests in any one-second window; 429 beyond."""
        with self._lock:
            self.rate_limit = per_second
            self.rate_limit_retry_after = None if retry_after is None else str(retry_after)
            self._hits.clear()

    def lose_answers(
        self, count: int = 1, mode: LoseMode = "drop", hang_seconds: float = 30.0,
    ) -> None:
        """Handle the next ``count`` creating requests, then lose the answer: ``drop``
        closes the connection mid-body, ``hang`` answers nothing until the client gives up
        (or ``hang_seconds`` pass)."""
        with self._lock:
            self.losses.append(_Loss(remaining=count, mode=mode, hang_seconds=hang_seconds))

    def garbage(self, count: int = 1) -> None:
        """Handle the next ``count`` API requests, then answer 200 with a body that is not
        the documented answer (a create does create)."""
        with self._lock:
            self.garbage_left += count

    # --- used by the app ----------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
            return None

    def _rate_limited(self) -> bool:
        with self._lock:
            if self.rate_limit is None:
                return False
            now = time.monotonic()
            while self._hits and now - self._hits[0] >= 1.0:
                self._hits.popleft()
            if len(self._hits) >= self.rate_limit:
                return True
            self._hits.append(now)
            return False

    def _take_loss(self) -> _Loss | None:
        with self._lock:
            for loss in self.losses:
                if loss.remaining > 0:
                    loss.remaining -= 1
                    return _Loss(1, loss.mode, loss.hang_seconds)
            return None

    def _take_garbage(self) -> bool:
        with self._lock:
            if self.garbage_left > 0:
                self.garbage_left -= 1
                return True
            return False


def tally(records: Iterable[Mapping[str, Any]], key: str,
          created: Callable[[Mapping[str, Any]], bool] = lambda rec: bool(rec.get("created")),
          counted: Callable[[Mapping[str, Any]], bool] = lambda rec: True,
          ) -> dict[str, dict[str, int]]:
    """Per value of ``key`` in the ``counted`` records: how many were ``received`` and how
    many ``created`` something."""
    received: Counter[str] = Counter()
    made: Counter[str] = Counter()
    for rec in records:
        value = rec.get(key)
        if isinstance(value, str) and counted(rec):
            received[value] += 1
            made[value] += 1 if created(rec) else 0
    return {v: {"received": received[v], "created": made[v]} for v in received}


# --- helpers for the apps ------------------------------------------------------------------


async def apply_delay(st: Faults) -> None:
    """Sleep the configured per-request delay, if any."""
    with st._lock:
        delay = st.delay
    if delay:
        await asyncio.sleep(delay)


def retry_after_headers(value: str | None) -> dict[str, str] | None:
    return {"Retry-After": value} if value else None


def rate_limit_headers(st: Faults) -> dict[str, str] | None:
    with st._lock:
        return retry_after_headers(st.rate_limit_retry_after)


def spoil(st: Faults, response: Response, *, lose: bool, garbage: bytes,
          garbage_type: str = "application/json") -> Response:
    """The answer after handling: lost (if ``lose`` and a loss is due), garbage (if due),
    or ``response``."""
    if lose:
        loss = st._take_loss()
        if loss is not None:
            return (_DroppedResponse() if loss.mode == "drop"
                    else _HungResponse(response, loss.hang_seconds))
    if st._take_garbage():
        return Response(garbage, status_code=200, media_type=garbage_type)
    return response


def fault_admin_routes(st: Any, *, targeted: bool = True) -> list[Route]:
    """``POST /_standin/{reset, faults, faults/clear, delay, rate_limit, lose, garbage}``.
    ``targeted``: ``/faults`` takes ``method`` and ``path`` too."""

    async def admin_reset(request: Request) -> Response:
        st.reset()
        return JSONResponse({"ok": True})

    async def admin_faults(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("status")
        if not isinstance(status, int):
            return JSONResponse({"error": "status (integer) is required"}, status_code=400)
        if targeted:
            st.fail(status, body.get("count", 1), retry_after=body.get("retry_after"),
                    method=body.get("method"), path=body.get("path"))
        else:
            st.fail(status, body.get("count", 1), retry_after=body.get("retry_after"))
        return JSONResponse({"ok": True})

    async def admin_faults_clear(request: Request) -> Response:
        st.clear_faults()
        return JSONResponse({"ok": True})

    async def admin_delay(request: Request) -> Response:
        body = await _json_object(request)
        st.set_delay(float(body.get("seconds", 0.0)))
        return JSONResponse({"ok": True})

    async def admin_rate_limit(request: Request) -> Response:
        body = await _json_object(request)
        st.set_rate_limit(body.get("per_second"), body.get("retry_after"))
        return JSONResponse({"ok": True})

    async def admin_lose(request: Request) -> Response:
        body = await _json_object(request)
        mode = body.get("mode", "drop")
        if mode not in ("drop", "hang"):
            return JSONResponse({"error": "mode is drop or hang"}, status_code=400)
        st.lose_answers(int(body.get("count", 1)), mode, float(body.get("hang_seconds", 30.0)))
        return JSONResponse({"ok": True})

    async def admin_garbage(request: Request) -> Response:
        body = await _json_object(request)
        st.garbage(int(body.get("count", 1)))
        return JSONResponse({"ok": True})

    return [
        Route("/_standin/reset", admin_reset, methods=["POST"]),
        Route("/_standin/faults", admin_faults, methods=["POST"]),
        Route("/_standin/faults/clear", admin_faults_clear, methods=["POST"]),
        Route("/_standin/delay", admin_delay, methods=["POST"]),
        Route("/_standin/rate_limit", admin_rate_limit, methods=["POST"]),
        Route("/_standin/lose", admin_lose, methods=["POST"]),
        Route("/_standin/garbage", admin_garbage, methods=["POST"]),
    ]


INJECT_KINDS = ("orphan", "duplicate", "mismatch")
"""What ``POST /_standin/inject`` puts into a stand-in's order list for the books audit."""

_INJECT_OPTIONS = frozenset({"external_id", "count", "created_at", "field"})


def orphan_key(n: int) -> str:
    """The key an injected orphan carries by default: the shape of reward-poller's own keys
    (``poller.domain.keys``), which no redemption has, so the books audit takes the order
    for one reward-poller placed and reports it as an orphan (an order under any other key
    is another system's, only counted)."""
    return KEY_PREFIX + hashlib.sha256(f"standin-orphan-{n}".encode()).hexdigest()[:40]


def inject_route(inject: Callable[..., list[dict[str, Any]]]) -> Callable[
        [Request], Awaitable[Response]]:
    """``POST /_standin/inject {"kind": "orphan"|"duplicate"|"mismatch", "external_id",
    "count", "created_at", "field"}``: calls the stand-in's ``inject`` and answers
    ``{"injected": [orders as listed]}`` (400 for a bad body, 404 for an unknown order)."""

    async def admin_inject(request: Request) -> Response:
        body = await _json_object(request)
        kind = body.get("kind")
        if kind not in INJECT_KINDS:
            return JSONResponse({"error": f"kind is one of {', '.join(INJECT_KINDS)}"},
                                status_code=400)
        options = {k: v for k, v in body.items() if k in _INJECT_OPTIONS and v is not None}
        count = options.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100_000:
            return JSONResponse({"error": "count is an integer from 1 to 100000"},
                                status_code=400)
        try:
            made = inject(kind, **options)
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"injected": made})

    return admin_inject


# --- responses that misbehave on purpose ---------------------------------------------------


class _DroppedResponse(Response):
    """Starts a 200 answer, sends part of the body, and returns: the server closes the
    connection, the client sees a protocol error after its request was handled."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({
            "type": "http.response.start", "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        })
        await send({"type": "http.response.body", "body": b'{"order": {"id": ', "more_body": True})


class _HungResponse(Response):
    """Answers nothing until the client hangs up; after ``seconds`` answers ``late``."""

    def __init__(self, late: Response, seconds: float) -> None:
        super().__init__(status_code=late.status_code)
        self._late = late
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(disconnected(), timeout=self._seconds)
        except TimeoutError:
            await self._late(scope, receive, send)


async def _json_object(request: Request) -> MutableMapping[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
