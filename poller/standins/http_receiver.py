"""A local receiver for the generic HTTP vendor: what a user's own endpoint would do.

Serve it with ``ServerThread(create_app(state))`` and configure ``[vendors.http] url`` as
``<url>/hooks/orders`` (``HOOK_PATH``) with the same ``secret``. It checks every request the
way the wire format in ``poller.vendors.http`` asks a receiver to, using that module's
``verify_signature``, and keeps a record of every request and every order per key.

Built-in behaviours (no setup needed):

* A missing, wrong or stale ``X-Reward-Poller-Signature`` (older than ``max_age``) is a 401;
  a missing ``Idempotency-Key``, or one that differs from the body's ``idempotency_key``, is
  a 400.
* Idempotent on ``Idempotency-Key``: a repeat answers the order's current state and creates
  nothing; a repeat with a *different* body is a 422 (the adapter must send identical bytes).
* Rules for a new order: product ``UNAVAILABLE`` is ``refused`` ("This reward is out of
  stock"); an advocate email ending in ``@invalid.example`` is ``refused``; product
  ``PENDING`` is ``pending`` until ``approve``; anything else is ``accepted`` at once.

Fault knobs, from Python (``ReceiverState`` methods) or over HTTP (``/_standin/...``, see
``create_app``): forced statuses, a delay, a rate limit, lost answers (drop or hang after the
order was taken), garbage answers. ``reset`` puts everything back.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Shared stand-in plumbing (fault records and misbehaving answers) lives with the first
# stand-in.
from poller.standins.tremendous import (
    Fault,
    LoseMode,
    _DroppedResponse,
    _HungResponse,
    _json_object,
    _Loss,
)
from poller.vendors.http import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature

log = structlog.get_logger(__name__)

HOOK_PATH = "/hooks/orders"
UNAVAILABLE_PRODUCT = "UNAVAILABLE"
PENDING_PRODUCT = "PENDING"
INVALID_RECIPIENT_DOMAIN = "@invalid.example"
OUT_OF_STOCK = "This reward is out of stock"
BAD_EMAIL = "The email address on your profile was not accepted"


class ReceiverState:
    """Everything the receiver knows. Thread-safe."""

    def __init__(self, secret: str = "standin-http-secret-0123", max_age: float = 300.0) -> None:
        self._lock = threading.RLock()
        self._initial_secret = secret
        self.secret = secret
        self.max_age = max_age
        self.orders: dict[str, dict[str, Any]] = {}
        """Idempotency key -> ``{"order_id", "status", "message", "body", "order"}``."""
        self.received: list[dict[str, Any]] = []
        """One record per POST: key, signature_ok, status (HTTP), answer, outcome."""
        self.faults: list[Fault] = []
        self.delay = 0.0
        self.rate_limit: int | None = None
        self.rate_limit_retry_after: str | None = None
        self.losses: list[_Loss] = []
        self.garbage_left = 0
        self._hits: deque[float] = deque()
        self._counter = 0

    def __repr__(self) -> str:
        return f"ReceiverState(orders={len(self.orders)})"

    # --- knobs --------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.secret = self._initial_secret
            self.orders.clear()
            self.received.clear()
            self.faults.clear()
            self.delay = 0.0
            self.rate_limit = None
            self.rate_limit_retry_after = None
            self.losses.clear()
            self.garbage_left = 0
            self._hits.clear()
            self._counter = 0

    def set_secret(self, secret: str) -> None:
        """Verify with another secret (the adapter's requests then fail with 401)."""
        with self._lock:
            self.secret = secret

    def fail(self, status: int, count: int | None = 1, *, retry_after: str | float | None = None,
             ) -> None:
        """Answer ``status`` to the next ``count`` requests (None: until ``clear_faults``)
        without handling them."""
        with self._lock:
            self.faults.append(Fault(
                status=status, remaining=count,
                retry_after=None if retry_after is None else str(retry_after),
            ))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def set_delay(self, seconds: float) -> None:
        with self._lock:
            self.delay = max(0.0, seconds)

    def set_rate_limit(self, per_second: int | None,
                       retry_after: str | float | None = None) -> None:
        with self._lock:
            self.rate_limit = per_second
            self.rate_limit_retry_after = None if retry_after is None else str(retry_after)
            self._hits.clear()

    def lose_answers(self, count: int = 1, mode: LoseMode = "drop",
                     hang_seconds: float = 30.0) -> None:
        """Handle the next ``count`` requests (taking the order), then lose the answer."""
        with self._lock:
            self.losses.append(_Loss(remaining=count, mode=mode, hang_seconds=hang_seconds))

    def garbage(self, count: int = 1) -> None:
        """Handle the next ``count`` requests, then answer 200 with a body that is not the
        documented answer."""
        with self._lock:
            self.garbage_left += count

    def approve(self, key: str) -> dict[str, Any]:
        """A pending order becomes ``accepted`` (the next repeat says so)."""
        return self.set_status(key, "accepted", "sent by the fulfilment team")

    def set_status(self, key: str, status: str, message: str = "") -> dict[str, Any]:
        with self._lock:
            order = self.orders.get(key)
            if order is None:
                raise KeyError(key)
            order["status"] = status
            order["message"] = message
            return self._answer(order)

    # --- records ------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        """Per key: ``received`` signed requests and orders ``created``."""
        with self._lock:
            received: Counter[str] = Counter()
            created: Counter[str] = Counter()
            for rec in self.received:
                key = rec.get("key")
                if isinstance(key, str) and rec.get("signature_ok"):
                    received[key] += 1
                    created[key] += 1 if rec.get("outcome") == "created" else 0
            return {k: {"received": received[k], "created": created[k]} for k in received}

    def created_for(self, key: str) -> int:
        return self.counts().get(key, {}).get("created", 0)

    def order(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.orders.get(key)
            return copy.deepcopy(found) if found is not None else None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "orders": copy.deepcopy(self.orders),
                "received": [dict(r) for r in self.received],
                "counts": self.counts(),
            }

    # --- used by the app ----------------------------------------------------------------

    def _answer(self, order: dict[str, Any]) -> dict[str, Any]:
        return {"status": order["status"], "order_id": order["order_id"],
                "message": order["message"]}

    def _take_fault(self) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches("POST", HOOK_PATH):
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

    def _record(self, key: str | None, *, signature_ok: bool, status: int, outcome: str,
                answer: str | None = None) -> None:
        with self._lock:
            self.received.append({"key": key, "signature_ok": signature_ok, "status": status,
                                  "outcome": outcome, "answer": answer, "at": time.time()})

    def _handle(self, key: str, raw: bytes, order: dict[str, Any]) -> tuple[int, dict[str, Any],
                                                                             str]:
        """(HTTP status, answer, outcome) for a signed, keyed request."""
        text = raw.decode()
        with self._lock:
            existing = self.orders.get(key)
            if existing is not None:
                if existing["body"] != text:
                    return 422, {"error": "Idempotency-Key reused with a different body"}, \
                        "conflict"
                return 200, self._answer(existing), "repeat"
            routing = order.get("routing")
            advocate = order.get("advocate")
            routing = routing if isinstance(routing, dict) else {}
            advocate = advocate if isinstance(advocate, dict) else {}
            product = routing.get("product")
            email = str(advocate.get("email") or "")
            self._counter += 1
            entry: dict[str, Any] = {"order_id": f"HOOK-{self._counter:06d}", "body": text,
                                     "order": order}
            if product == UNAVAILABLE_PRODUCT:
                entry.update(status="refused", message=OUT_OF_STOCK)
            elif "@" not in email or email.lower().endswith(INVALID_RECIPIENT_DOMAIN):
                entry.update(status="refused", message=BAD_EMAIL)
            elif product == PENDING_PRODUCT:
                entry.update(status="pending", message="Waiting for approval")
            else:
                local, _, domain = email.partition("@")
                entry.update(status="accepted", message=f"sent by email to {local[:1]}***@{domain}")
            self.orders[key] = entry
            log.debug("standin_hook_order", key=key, status=entry["status"])
            return 200, self._answer(entry), "created"


GARBAGE = b"<html>200 OK, but not JSON</html>"

Handler = Callable[[Request], Awaitable[Response]]


def create_app(state: ReceiverState | None = None) -> Starlette:
    """The receiver app; ``app.state.receiver`` is the ``ReceiverState``.

    ``POST /hooks/orders``: the generic HTTP vendor's wire format.

    Admin under ``/_standin`` (no auth, JSON bodies, loopback use only):
    ``GET /orders`` (orders by key, received requests, counts per key); ``POST /reset``;
    ``POST /faults {"status", "count", "retry_after"}``; ``POST /faults/clear``;
    ``POST /delay {"seconds"}``; ``POST /rate_limit {"per_second", "retry_after"}``;
    ``POST /lose {"count", "mode", "hang_seconds"}``; ``POST /garbage {"count"}``;
    ``POST /orders/{key}/approve``; ``POST /orders/{key}/status {"status", "message"}``;
    ``POST /secret {"secret"}``.
    """
    st = state if state is not None else ReceiverState()

    async def hook(request: Request) -> Response:
        raw = await request.body()
        key = request.headers.get(IDEMPOTENCY_HEADER)
        with st._lock:
            delay, secret, max_age = st.delay, st.secret, st.max_age
        if delay:
            await asyncio.sleep(delay)
        signed = verify_signature(secret, request.headers.get(SIGNATURE_HEADER), raw, max_age)
        fault = st._take_fault()
        if fault is not None:
            st._record(key, signature_ok=signed, status=fault.status, outcome="forced")
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return JSONResponse({"error": f"Forced {fault.status} (stand-in)"},
                                status_code=fault.status, headers=headers)
        if st._rate_limited():
            st._record(key, signature_ok=signed, status=429, outcome="rate_limited")
            with st._lock:
                after = st.rate_limit_retry_after
            return JSONResponse({"error": "Too many requests"}, status_code=429,
                                headers={"Retry-After": after} if after else None)
        if not signed:
            st._record(key, signature_ok=False, status=401, outcome="bad_signature")
            return JSONResponse({"error": "Missing, wrong or stale signature"}, status_code=401)
        try:
            order = json.loads(raw)
        except ValueError:
            order = None
        if not key or not isinstance(order, dict) or order.get("idempotency_key") != key:
            st._record(key, signature_ok=True, status=400, outcome="rejected")
            return JSONResponse({"error": "Idempotency-Key header and body idempotency_key "
                                          "must be present and equal"}, status_code=400)
        status, answer, outcome = st._handle(key, raw, order)
        st._record(key, signature_ok=True, status=status, outcome=outcome,
                   answer=answer.get("status"))
        response: Response = JSONResponse(answer, status_code=status)
        loss = st._take_loss()
        if loss is not None:
            return (_DroppedResponse() if loss.mode == "drop"
                    else _HungResponse(response, loss.hang_seconds))
        if st._take_garbage():
            return Response(GARBAGE, status_code=200, media_type="text/html")
        return response

    # --- admin ----------------------------------------------------------------------------

    async def admin_orders(request: Request) -> Response:
        return JSONResponse(st.snapshot())

    async def admin_reset(request: Request) -> Response:
        st.reset()
        return JSONResponse({"ok": True})

    async def admin_faults(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("status")
        if not isinstance(status, int):
            return JSONResponse({"error": "status (integer) is required"}, status_code=400)
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

    async def admin_secret(request: Request) -> Response:
        body = await _json_object(request)
        secret = body.get("secret")
        if not isinstance(secret, str) or not secret:
            return JSONResponse({"error": "secret (string) is required"}, status_code=400)
        st.set_secret(secret)
        return JSONResponse({"ok": True})

    async def admin_approve(request: Request) -> Response:
        try:
            answer = st.approve(request.path_params["key"])
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse(answer)

    async def admin_status(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("status")
        if status not in ("accepted", "pending", "refused"):
            return JSONResponse({"error": "status is accepted, pending or refused"},
                                status_code=400)
        try:
            answer = st.set_status(request.path_params["key"], status, str(body.get("message",
                                                                                    "")))
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse(answer)

    routes = [
        Route(HOOK_PATH, hook, methods=["POST"]),
        Route("/_standin/orders", admin_orders, methods=["GET"]),
        Route("/_standin/reset", admin_reset, methods=["POST"]),
        Route("/_standin/faults", admin_faults, methods=["POST"]),
        Route("/_standin/faults/clear", admin_faults_clear, methods=["POST"]),
        Route("/_standin/delay", admin_delay, methods=["POST"]),
        Route("/_standin/rate_limit", admin_rate_limit, methods=["POST"]),
        Route("/_standin/lose", admin_lose, methods=["POST"]),
        Route("/_standin/garbage", admin_garbage, methods=["POST"]),
        Route("/_standin/secret", admin_secret, methods=["POST"]),
        Route("/_standin/orders/{key}/approve", admin_approve, methods=["POST"]),
        Route("/_standin/orders/{key}/status", admin_status, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.receiver = st
    return app
