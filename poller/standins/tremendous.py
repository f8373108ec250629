"""A local stand-in for the Tremendous API v2, speaking its documented shapes.

Serve it with ``ServerThread(create_app(state))`` and point the adapter at
``<url>/api/v2``. It keeps its own record of every ``POST /orders`` it received and every
order it created, so tests can check "one order per key" against the vendor's side.

Built-in behaviours (no setup needed):

* ``Authorization: Bearer <api_key>`` or 401.
* ``POST /orders`` is idempotent on ``external_id``: first create 201, a repeat 200 with the
  same order (creates nothing, charges nothing). Orders draw the balance down (402 when it
  is too low).
* Every product id is orderable except ``UNAVAILABLE`` (422 about the product); product
  ``PENDING`` makes an order in ``PENDING APPROVAL`` until ``approve``. A denomination above
  2000 or an unsupported currency is a 422 about the value.
* A recipient email ending in ``@invalid.example`` (or without ``@``) is a 422 about the
  recipient; an unknown funding source or delivery method is a 422 about those.

Fault knobs, from Python (``TremendousState`` methods) or over HTTP (``/_standin/...``, see
``create_app``): forced statuses for the next N requests, a delay per request, a rate
limit, lost answers (drop the connection or hang, after the order was created), garbage
answers. ``reset`` puts everything back.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v2"
DEFAULT_BALANCE_CENTS = 1_000_000
BALANCE_SOURCE_ID = "BALANCE"
UNAVAILABLE_PRODUCT = "UNAVAILABLE"
PENDING_PRODUCT = "PENDING"
INVALID_RECIPIENT_DOMAIN = "@invalid.example"
MAX_DENOMINATION = 2000.0
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD")
LINK_BASE = "https://standin.tremendous.invalid/rewards/payout/"

LoseMode = Literal["drop", "hang"]

CATALOG: tuple[dict[str, Any], ...] = (
    {"id": "AMZN-US", "name": "Amazon.com Gift Card", "category": "merchant_card"},
    {"id": "VISA-US", "name": "Virtual Visa Card", "category": "visa_card"},
    {"id": "TREE-PLANTING", "name": "Plant a tree", "category": "charity"},
    {"id": PENDING_PRODUCT, "name": "Needs approval (stand-in)", "category": "merchant_card"},
)


def _product(product_id: str) -> dict[str, Any]:
    known = next((p for p in CATALOG if p["id"] == product_id), None)
    base = dict(known) if known else {
        "id": product_id, "name": f"Gift card {product_id}", "category": "merchant_card",
    }
    return {
        **base,
        "currency_codes": list(CURRENCIES),
        "skus": [{"min": 1, "max": MAX_DENOMINATION}],
        "countries": [{"abbr": "US"}],
    }


def _error(status: int, message: str, payload: Any = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"errors": {"message": message, "payload": payload if payload is not None else {}}}
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class Fault:
    """Answer ``status`` instead of handling the request, for ``remaining`` requests
    (None = until cleared) matching ``method``/``path`` (a prefix under /api/v2)."""

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


class TremendousState:
    """Everything the stand-in knows. Every method is thread-safe: the server runs in its own
    thread while a test drives the knobs."""

    def __init__(self, balance_cents: int = DEFAULT_BALANCE_CENTS) -> None:
        self._lock = threading.RLock()
        self._initial_balance = balance_cents
        self.balance_cents = balance_cents
        self.orders: dict[str, dict[str, Any]] = {}
        """Order id -> the order as served."""
        self.received: list[dict[str, Any]] = []
        """One record per ``POST /orders`` received: external_id, created, status, outcome."""
        self.faults: list[Fault] = []
        self.delay = 0.0
        self.rate_limit: int | None = None
        self.rate_limit_retry_after: str | None = None
        self.losses: list[_Loss] = []
        self.garbage_left = 0
        self._by_external: dict[str, str] = {}
        self._hits: deque[float] = deque()
        self._counter = 0

    def __repr__(self) -> str:
        return f"TremendousState(orders={len(self.orders)}, balance_cents={self.balance_cents})"

    # --- knobs --------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.balance_cents = self._initial_balance
            self.orders.clear()
            self.received.clear()
            self.faults.clear()
            self.delay = 0.0
            self.rate_limit = None
            self.rate_limit_retry_after = None
            self.losses.clear()
            self.garbage_left = 0
            self._by_external.clear()
            self._hits.clear()
            self._counter = 0

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
        """Handle the next ``count`` ``POST /orders`` (creating the order), then lose the
        answer: ``drop`` closes the connection mid-body, ``hang`` answers nothing until the
        client gives up (or ``hang_seconds`` pass)."""
        with self._lock:
            self.losses.append(_Loss(remaining=count, mode=mode, hang_seconds=hang_seconds))

    def garbage(self, count: int = 1) -> None:
        """Handle the next ``count`` API requests, then answer 200 with a body that is not
        JSON (a create does create the order)."""
        with self._lock:
            self.garbage_left += count

    def set_balance(self, cents: int) -> None:
        with self._lock:
            self.balance_cents = cents

    def approve(self, order_ref: str) -> dict[str, Any]:
        """Move a pending order (by id or external_id) to EXECUTED."""
        return self.set_status(order_ref, "EXECUTED")

    def set_status(self, order_ref: str, status: str) -> dict[str, Any]:
        with self._lock:
            order = self._find(order_ref)
            if order is None:
                raise KeyError(order_ref)
            order["status"] = status
            delivery = order["rewards"][0]["delivery"]
            if status == "EXECUTED":
                delivery["status"] = "SUCCEEDED"
            elif status in ("FAILED", "CANCELED"):
                delivery["status"] = "FAILED"
            return _copy(order)

    # --- records ------------------------------------------------------------------------

    def find(self, order_ref: str) -> dict[str, Any] | None:
        """A copy of the order with that id or external_id."""
        with self._lock:
            order = self._find(order_ref)
            return _copy(order) if order is not None else None

    def _find(self, order_ref: str) -> dict[str, Any] | None:
        order_id = self._by_external.get(order_ref, order_ref)
        return self.orders.get(order_id)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per external_id: ``received`` POST /orders and orders ``created``."""
        with self._lock:
            received: Counter[str] = Counter()
            created: Counter[str] = Counter()
            for rec in self.received:
                ext = rec.get("external_id")
                if isinstance(ext, str):
                    received[ext] += 1
                    created[ext] += 1 if rec.get("created") else 0
            return {ext: {"received": received[ext], "created": created[ext]} for ext in received}

    def created_for(self, external_id: str) -> int:
        return self.counts().get(external_id, {}).get("created", 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "orders": [_copy(o) for o in self.orders.values()],
                "received": [dict(r) for r in self.received],
                "counts": self.counts(),
                "balance_cents": self.balance_cents,
            }

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

    def _record(self, external_id: Any, *, created: bool, status: int, outcome: str,
                order_id: str | None = None) -> None:
        with self._lock:
            self.received.append({
                "external_id": external_id if isinstance(external_id, str) else None,
                "created": created, "status": status, "outcome": outcome,
                "order_id": order_id, "at": time.time(),
            })

    def _create(self, body: Any) -> tuple[int, dict[str, Any], bool]:
        """Validate and create (or find) an order: (status, response body, created)."""
        if not isinstance(body, dict):
            return 400, _error_body("Request body must be a JSON object"), False
        external_id = body.get("external_id")
        with self._lock:
            if isinstance(external_id, str) and external_id in self._by_external:
                return 200, {"order": _copy(self.orders[self._by_external[external_id]])}, False
            problem = _validate(body)
            if problem is not None:
                return problem[0], problem[1], False
            reward = body["reward"]
            cents = round(float(reward["value"]["denomination"]) * 100)
            if cents > self.balance_cents:
                return 402, _error_body(
                    "Insufficient funds on the funding source", {"payment": {"funding_source_id":
                    ["has insufficient funds"]}},
                ), False
            self.balance_cents -= cents
            self._counter += 1
            order = _new_order(self._counter, body)
            self.orders[order["id"]] = order
            if isinstance(external_id, str):
                self._by_external[external_id] = order["id"]
            log.debug("standin_order_created", order_id=order["id"], external_id=external_id)
            return 201, {"order": _copy(order)}, True


def _error_body(message: str, payload: Any = None) -> dict[str, Any]:
    return {"errors": {"message": message, "payload": payload if payload is not None else {}}}


def _copy(order: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(order)


def _validate(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    payment = body.get("payment")
    reward = body.get("reward")
    if not isinstance(payment, dict) or not isinstance(reward, dict):
        return 400, _error_body("payment and reward are required")
    source = payment.get("funding_source_id")
    if source not in ("balance", BALANCE_SOURCE_ID):
        return 422, _error_body(
            "Funding source not found",
            {"payment": {"funding_source_id": ["is not a funding source of this account"]}},
        )
    products = reward.get("products")
    if not isinstance(products, list) or len(products) != 1 or not isinstance(products[0], str):
        return 422, _error_body(
            "Exactly one product is required", {"reward": {"products": ["is invalid"]}},
        )
    if products[0] == UNAVAILABLE_PRODUCT:
        return 422, _error_body(
            f"Product {products[0]} is not available",
            {"reward": {"products": ["is not available"]}},
        )
    value = reward.get("value")
    denomination = value.get("denomination") if isinstance(value, dict) else None
    currency = value.get("currency_code") if isinstance(value, dict) else None
    if (
        not isinstance(denomination, int | float) or isinstance(denomination, bool)
        or not 0 < denomination <= MAX_DENOMINATION
    ):
        return 422, _error_body(
            "Denomination is not available for this product",
            {"reward": {"value": {"denomination": [
                f"must be between 1 and {MAX_DENOMINATION:g}",
            ]}}},
        )
    if currency not in CURRENCIES:
        return 422, _error_body(
            "Currency is not available for this product",
            {"reward": {"value": {"currency_code": ["is not supported by this product"]}}},
        )
    recipient = reward.get("recipient")
    email = recipient.get("email") if isinstance(recipient, dict) else None
    name = recipient.get("name") if isinstance(recipient, dict) else None
    if (
        not isinstance(email, str) or "@" not in email
        or email.lower().endswith(INVALID_RECIPIENT_DOMAIN)
    ):
        return 422, _error_body(
            "Recipient email is invalid", {"reward": {"recipient": {"email": ["is invalid"]}}},
        )
    if not isinstance(name, str) or not name.strip():
        return 422, _error_body(
            "Recipient name is required", {"reward": {"recipient": {"name": ["can't be blank"]}}},
        )
    delivery = reward.get("delivery")
    method = delivery.get("method") if isinstance(delivery, dict) else None
    if method not in ("EMAIL", "LINK"):
        return 422, _error_body(
            "Delivery method is invalid", {"reward": {"delivery": {"method": ["is invalid"]}}},
        )
    return None


def _new_order(number: int, body: dict[str, Any]) -> dict[str, Any]:
    reward = body["reward"]
    product = reward["products"][0]
    pending = product == PENDING_PRODUCT
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    order_id = f"ORD{number:09d}"
    return {
        "id": order_id,
        "external_id": body.get("external_id"),
        "created_at": now,
        "status": "PENDING APPROVAL" if pending else "EXECUTED",
        "payment": {
            "funding_source_id": body["payment"]["funding_source_id"],
            "subtotal": reward["value"]["denomination"],
            "total": reward["value"]["denomination"],
            "fees": 0.0,
        },
        "rewards": [{
            "id": f"RWD{number:09d}",
            "order_id": order_id,
            "created_at": now,
            "products": [product],
            "value": dict(reward["value"]),
            "recipient": dict(reward["recipient"]),
            "delivery": {
                "method": reward["delivery"]["method"],
                "status": "PENDING" if pending else "SUCCEEDED",
                "link": LINK_BASE + secrets.token_urlsafe(12),
            },
        }],
    }


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


GARBAGE = b'{"order": {"id": "ORD<html>502 Bad Gateway</html>'


# --- the app -------------------------------------------------------------------------------


Handler = Callable[[Request], Awaitable[Response]]


def create_app(state: TremendousState | None = None, *, api_key: str = "standin-key") -> Starlette:
    """The stand-in app; ``app.state.tremendous`` is the ``TremendousState``.

    API under ``/api/v2``: ``POST /orders``, ``GET /orders/{id or external_id}``,
    ``GET /products``, ``GET /products/{id}``, ``GET /funding_sources``.

    Admin under ``/_standin`` (no auth, JSON bodies, loopback use only):
    ``GET /orders`` (orders, received POSTs, counts per external_id, balance);
    ``POST /reset``; ``POST /balance {"cents"}``;
    ``POST /faults {"status", "count" (null: until cleared), "retry_after", "method", "path"}``;
    ``POST /faults/clear``; ``POST /delay {"seconds"}``;
    ``POST /rate_limit {"per_second" (null: off), "retry_after"}``;
    ``POST /lose {"count", "mode": "drop"|"hang", "hang_seconds"}``; ``POST /garbage {"count"}``;
    ``POST /orders/{id or external_id}/approve``; ``POST /orders/{ref}/status {"status"}``.
    """
    st = state if state is not None else TremendousState()
    expected = f"Bearer {api_key}".encode()

    def api(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            path = request.url.path.removeprefix(API_PREFIX) or "/"
            is_create = request.method == "POST" and path.rstrip("/") == "/orders"
            external_id = await _external_id(request) if is_create else None
            with st._lock:
                delay = st.delay
            if delay:
                await asyncio.sleep(delay)
            fault = st._take_fault(request.method, path)
            if fault is not None:
                if is_create:
                    st._record(external_id, created=False, status=fault.status, outcome="forced")
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
                return _error(fault.status, f"Forced {fault.status} (stand-in)", headers=headers)
            if st._rate_limited():
                if is_create:
                    st._record(external_id, created=False, status=429, outcome="rate_limited")
                with st._lock:
                    after = st.rate_limit_retry_after
                return _error(429, "Too many requests",
                              headers={"Retry-After": after} if after else None)
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                if is_create:
                    st._record(external_id, created=False, status=401, outcome="unauthorized")
                return _error(401, "The API key is invalid or missing")
            response = await handler(request)
            if is_create:
                loss = st._take_loss()
                if loss is not None:
                    return (_DroppedResponse() if loss.mode == "drop"
                            else _HungResponse(response, loss.hang_seconds))
            if st._take_garbage():
                return Response(GARBAGE, status_code=200, media_type="application/json")
            return response

        return wrapped

    @api
    async def create_order(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            st._record(None, created=False, status=400, outcome="rejected")
            return _error(400, "Request body is not valid JSON")
        status, answer, created = st._create(body)
        external_id = body.get("external_id") if isinstance(body, dict) else None
        order = answer.get("order")
        st._record(
            external_id, created=created, status=status,
            outcome="created" if created else ("repeat" if status == 200 else "rejected"),
            order_id=order["id"] if isinstance(order, dict) else None,
        )
        return JSONResponse(answer, status_code=status)

    @api
    async def get_order(request: Request) -> Response:
        order = st.find(request.path_params["ref"])
        if order is None:
            return _error(404, "Resource not found")
        return JSONResponse({"order": order})

    @api
    async def list_products(request: Request) -> Response:
        return JSONResponse({"products": [_product(p["id"]) for p in CATALOG]})

    @api
    async def get_product(request: Request) -> Response:
        product_id = request.path_params["product_id"]
        if product_id == UNAVAILABLE_PRODUCT:
            return _error(404, "Resource not found")
        return JSONResponse({"product": _product(product_id)})

    @api
    async def funding_sources(request: Request) -> Response:
        with st._lock:
            cents = st.balance_cents
        return JSONResponse({"funding_sources": [{
            "id": BALANCE_SOURCE_ID, "method": "balance", "type": "COMMERCIAL",
            "meta": {"available_cents": cents, "pending_cents": 0},
        }]})

    # --- admin ----------------------------------------------------------------------------

    async def admin_orders(request: Request) -> Response:
        return JSONResponse(st.snapshot())

    async def admin_reset(request: Request) -> Response:
        st.reset()
        return JSONResponse({"ok": True})

    async def admin_balance(request: Request) -> Response:
        body = await _json_object(request)
        cents = body.get("cents", body.get("available_cents"))
        if not isinstance(cents, int):
            return JSONResponse({"error": "cents (integer) is required"}, status_code=400)
        st.set_balance(cents)
        return JSONResponse({"balance_cents": cents})

    async def admin_faults(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("status")
        if not isinstance(status, int):
            return JSONResponse({"error": "status (integer) is required"}, status_code=400)
        st.fail(status, body.get("count", 1), retry_after=body.get("retry_after"),
                method=body.get("method"), path=body.get("path"))
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
        st.lose_answers(int(body.get("count", 1)), mode,
                        float(body.get("hang_seconds", 30.0)))
        return JSONResponse({"ok": True})

    async def admin_garbage(request: Request) -> Response:
        body = await _json_object(request)
        st.garbage(int(body.get("count", 1)))
        return JSONResponse({"ok": True})

    async def admin_approve(request: Request) -> Response:
        try:
            order = st.approve(request.path_params["ref"])
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse({"order": order})

    async def admin_status(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("status")
        if not isinstance(status, str):
            return JSONResponse({"error": "status (string) is required"}, status_code=400)
        try:
            order = st.set_status(request.path_params["ref"], status)
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse({"order": order})

    routes = [
        Route(f"{API_PREFIX}/orders", create_order, methods=["POST"]),
        Route(f"{API_PREFIX}/orders/{{ref}}", get_order, methods=["GET"]),
        Route(f"{API_PREFIX}/products", list_products, methods=["GET"]),
        Route(f"{API_PREFIX}/products/{{product_id}}", get_product, methods=["GET"]),
        Route(f"{API_PREFIX}/funding_sources", funding_sources, methods=["GET"]),
        Route("/_standin/orders", admin_orders, methods=["GET"]),
        Route("/_standin/reset", admin_reset, methods=["POST"]),
        Route("/_standin/balance", admin_balance, methods=["POST"]),
        Route("/_standin/faults", admin_faults, methods=["POST"]),
        Route("/_standin/faults/clear", admin_faults_clear, methods=["POST"]),
        Route("/_standin/delay", admin_delay, methods=["POST"]),
        Route("/_standin/rate_limit", admin_rate_limit, methods=["POST"]),
        Route("/_standin/lose", admin_lose, methods=["POST"]),
        Route("/_standin/garbage", admin_garbage, methods=["POST"]),
        Route("/_standin/orders/{ref}/approve", admin_approve, methods=["POST"]),
        Route("/_standin/orders/{ref}/status", admin_status, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.tremendous = st
    return app


async def _external_id(request: Request) -> Any:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body.get("external_id") if isinstance(body, dict) else None


async def _json_object(request: Request) -> MutableMapping[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
