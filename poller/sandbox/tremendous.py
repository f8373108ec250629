"""A local stand-in for the Tremendous API v2, speaking its documented shapes.

Serve it with ``ServerThread(create_app(state))`` and point the adapter at
``<url>/api/v2``. It keeps its own record of every ``POST /orders`` it received and every
order it created, so tests can check "one order per key" against the vendor's side.

Built-in behaviours (no setup needed):

* ``Authorization: Bearer <api_key>`` or 401.
* ``POST /orders`` is idempotent on ``external_id``: a new order answers 200, a repeat of
  the same payload 201 with the first order (creates nothing, charges nothing), the same
  ``external_id`` with another payload 409; ``background(n)`` makes the next ``n`` new
  orders answer 202 with only ``id``, ``external_id``, ``created_at`` and status ``OPEN``
  (created in the background: the look-up finds it EXECUTED). Orders draw the balance down
  (402 when it is too low). An order carries ``payment`` and its reward's link only once
  processed (EXECUTED), as Tremendous documents.
* Every product id is orderable except ``UNAVAILABLE`` (listed in the catalog, yet every
  order for it is a 422 "Product UNAVAILABLE is not available", the payload naming
  ``reward.products``) and ids starting with ``UNKNOWN`` (422, the documented "At least one
  valid product required"; 404 in the catalog); product ``PENDING`` makes an order in
  ``PENDING APPROVAL`` until ``approve``. A denomination above 2000 or an unsupported
  currency is a 422 about the value.
* A recipient email ending in ``@invalid.example`` (or without ``@``) is a 422 about the
  recipient; an unknown funding source or delivery method is a 422 about those. An address
  ending in ``@bounce.example`` is ordered (``EXECUTED``) but its reward's delivery is
  ``FAILED`` (a bounced e-mail); ``set_delivery`` sets any reward's delivery status.
* Errors are ``{"errors": {"message", "payload"}}``, the payload mirroring the request with
  a text at each leaf; a 429 says ``{"error": {"message", "payload"}}``. The documented
  examples' texts are used where there are some (``tests/adapters/vendors/cassettes/tremendous``
  holds them; ``tests/adapters/vendors/test_standins_match_cassettes.py`` keeps this stand-in to
  them).

Fault knobs, from Python (``TremendousState`` methods) or over HTTP (``/_standin/...``, see
``create_app``): forced statuses for the next N requests, a delay per request, a rate
limit, lost answers (drop the connection or hang, after the order was created), garbage
answers. ``reset`` puts everything back.
"""

from __future__ import annotations

import copy
import functools
import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from poller.sandbox.faults import (
    Faults,
    _json_object,
    apply_delay,
    fault_admin_routes,
    inject_route,
    orphan_key,
    rate_limit_headers,
    retry_after_headers,
    spoil,
    tally,
)

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v2"
DEFAULT_BALANCE_CENTS = 1_000_000
BALANCE_SOURCE_ID = "BALANCE"
UNAVAILABLE_PRODUCT = "UNAVAILABLE"
UNKNOWN_PRODUCT_PREFIX = "UNKNOWN"
BOUNCE_DOMAIN = "@bounce.example"
PENDING_PRODUCT = "PENDING"
INVALID_RECIPIENT_DOMAIN = "@invalid.example"
MAX_DENOMINATION = 2000.0
MAX_LIST_LIMIT = 500
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD")
LINK_BASE = "https://standin.tremendous.invalid/rewards/payout/"

# Texts and bodies from Tremendous' documentation (docs/vendors.md): the error-handling page,
# the rate-limiting page and the OpenAPI spec's examples.
VALIDATION_MESSAGE = "Order failed: validation failure"
NO_VALID_PRODUCT = {"rewards": {"catalog": "At least one valid product required"}}
FUNDS_MESSAGE = "Not enough funds to carry out this operation. Fund your balance to proceed."
AUTH_MESSAGE = "Production Access not available for your account"
CONFLICT_MESSAGE = "An order with this external_id already exists with different parameters"
RATE_LIMITED = {"error": {"message": "Too many requests", "payload": {}}}

CATALOG: tuple[dict[str, Any], ...] = (
    {"id": "AMZN-US", "name": "Amazon.com Gift Card", "category": "merchant_card"},
    {"id": "VISA-US", "name": "Virtual Visa Card", "category": "visa_card"},
    {"id": "TREE-PLANTING", "name": "Plant a tree", "category": "charity"},
    {"id": PENDING_PRODUCT, "name": "Needs approval (stand-in)", "category": "merchant_card"},
    {"id": UNAVAILABLE_PRODUCT, "name": "Sold out (stand-in)", "category": "merchant_card"},
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


class TremendousState(Faults):
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
        self._init_faults()
        self._by_external: dict[str, str] = {}
        self._payloads: dict[str, Any] = {}
        self._counter = 0
        self.background_left = 0
        self.list_requests: list[dict[str, str]] = []
        """The query of every ``GET /orders`` list request answered (offset, limit, ...)."""
        self.list_times: list[float] = []
        """When each of them came (``time.monotonic()``), for pacing checks."""

    def __repr__(self) -> str:
        return f"TremendousState(orders={len(self.orders)}, balance_cents={self.balance_cents})"

    # --- knobs --------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.balance_cents = self._initial_balance
            self.orders.clear()
            self.received.clear()
            self._reset_faults()
            self._by_external.clear()
            self._payloads.clear()
            self._counter = 0
            self.background_left = 0
            self.list_requests.clear()
            self.list_times.clear()

    def background(self, count: int = 1) -> None:
        """The next ``count`` new orders answer 202: created in the background."""
        with self._lock:
            self.background_left += count

    def set_delivery(self, order_ref: str, status: str) -> dict[str, Any]:
        """Set the delivery status of the order's reward (SCHEDULED, PENDING, SUCCEEDED,
        FAILED)."""
        with self._lock:
            order = self._find(order_ref)
            if order is None:
                raise KeyError(order_ref)
            order["rewards"][0]["delivery"]["status"] = status
            return _copy(order)

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
                sent = self._payloads.get(str(order.get("external_id")), {})
                _processed(order, _dig(sent, "payment", "funding_source_id") or "balance")
            elif status in ("FAILED", "CANCELED"):
                delivery["status"] = "FAILED"
            return _copy(order)

    def forget(self, order_ref: str) -> dict[str, Any]:
        """Drop the order (by id or external_id) from everything the API serves, as if the
        vendor had never had it (an order the ledger names that the vendor does not list:
        the books audit's ``missing``). Returns the order as it was. KeyError: no such
        order."""
        with self._lock:
            order = self._find(order_ref)
            if order is None:
                raise KeyError(order_ref)
            del self.orders[order["id"]]
            for key in [k for k, v in self._by_external.items() if v == order["id"]]:
                del self._by_external[key]
                self._payloads.pop(key, None)
            return _copy(order)

    def inject(self, kind: str, *, external_id: str | None = None, count: int = 1,
               created_at: str | None = None, denomination: float = 25.0,
               currency: str = "USD", email: str = "orphan@example.com",
               field: str = "amount") -> list[dict[str, Any]]:
        """Put into the order list what the books audit must find (none touches the balance):

        * ``orphan``: ``count`` orders placed outside reward-poller (``external_id``, or
          one of our keys' shape each, ``orphan_key``), ``created_at`` (ISO 8601, default now);
        * ``duplicate``: a second order under ``external_id`` (default: the newest order's),
          as if the vendor had not kept the key idempotent;
        * ``mismatch``: the order ``external_id`` (default: the newest) changed in ``field``:
          ``amount`` (+1.00), ``currency`` (to EUR, or CAD from EUR), ``status``
          (EXECUTED <-> CANCELED) or ``recipient``.

        Returns the orders as listed. KeyError: no such order; ValueError: unknown kind."""
        with self._lock:
            if kind == "orphan":
                made = []
                for _ in range(count):
                    self._counter += 1
                    key = external_id or orphan_key(self._counter)
                    made.append(self._add(_body(key, denomination, currency, email),
                                          created_at))
                return made
            ref = external_id or self._newest_external()
            order = self._find(ref) if ref is not None else None
            if order is None:
                raise KeyError(ref)
            if kind == "duplicate":
                self._counter += 1
                sent = self._payloads.get(str(order.get("external_id"))) or _body(
                    str(order.get("external_id")), denomination, currency, email)
                return [self._add(copy.deepcopy(sent), created_at, index=False)]
            if kind == "mismatch":
                _mismatch(order, field)
                return [_copy(order)]
            raise ValueError(f"unknown kind {kind!r}: orphan, duplicate or mismatch")

    def _newest_external(self) -> str | None:
        for order in reversed(list(self.orders.values())):
            if isinstance(order.get("external_id"), str):
                return str(order["external_id"])
        return None

    def _add(self, body: dict[str, Any], created_at: str | None, *,
             index: bool = True) -> dict[str, Any]:
        order = _new_order(self._counter, body)
        if created_at is not None:
            order["created_at"] = order["rewards"][0]["created_at"] = created_at
        self.orders[order["id"]] = order
        if index and isinstance(body.get("external_id"), str):
            self._by_external.setdefault(body["external_id"], order["id"])
            self._payloads.setdefault(body["external_id"], copy.deepcopy(body))
        return _copy(order)

    def listed(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``GET /orders``: newest first, ``created_at[gte]``/``[lte]`` (inclusive),
        ``external_id``, ``offset``, ``limit`` (default 10, at most 500)."""
        try:
            offset = int(query.get("offset", "0"))
            limit = int(query.get("limit", "10"))
        except ValueError:
            return 400, _error_body("offset and limit must be integers")
        if offset < 0 or not 1 <= limit <= MAX_LIST_LIMIT:
            return 400, _error_body(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        low, high = query.get("created_at[gte]"), query.get("created_at[lte]")
        try:
            low_at = _instant(low) if low else None
            high_at = _instant(high) if high else None
        except ValueError:
            return 400, _error_body("created_at must be an ISO 8601 datetime")
        with self._lock:
            self.list_requests.append(dict(query))
            self.list_times.append(time.monotonic())
            chosen = [
                o for o in self.orders.values()
                if (low_at is None or _instant(o["created_at"]) >= low_at)
                and (high_at is None or _instant(o["created_at"]) <= high_at)
                and ("external_id" not in query or o.get("external_id") == query["external_id"])
            ]
            chosen.sort(key=lambda o: (_instant(o["created_at"]), o["id"]), reverse=True)
            page = [_copy(o) for o in chosen[offset:offset + limit]]
        return 200, {"orders": page, "total_count": len(chosen)}

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
            return tally(self.received, "external_id")

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
                # A repeated external_id: 201 with the first order when the payload is the
                # same, 409 when it differs (the SDK's create_order, "Idempotence").
                if self._payloads.get(external_id, body) != body:
                    return 409, _error_body(CONFLICT_MESSAGE), False
                return 201, {"order": _copy(self.orders[self._by_external[external_id]])}, False
            problem = _validate(body)
            if problem is not None:
                return problem[0], problem[1], False
            reward = body["reward"]
            cents = round(float(reward["value"]["denomination"]) * 100)
            if cents > self.balance_cents:
                return 402, _error_body(FUNDS_MESSAGE), False
            self.balance_cents -= cents
            self._counter += 1
            order = _new_order(self._counter, body)
            self.orders[order["id"]] = order
            if isinstance(external_id, str):
                self._by_external[external_id] = order["id"]
                self._payloads[external_id] = copy.deepcopy(body)
            log.debug("standin.order.created", order_id=order["id"], external_id=external_id)
            if self.background_left > 0:
                self.background_left -= 1
                # Only the fields the spec requires of a 202 order; it is EXECUTED when
                # looked up (created "in the background" at once).
                return 202, {"order": {k: order[k] for k in ("id", "external_id",
                                                                "created_at")}
                             | {"status": "OPEN"}}, True
            return 200, {"order": _copy(order)}, True


def _error_body(message: str, payload: Any = None) -> dict[str, Any]:
    return {"errors": {"message": message, "payload": payload if payload is not None else {}}}


def _dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None where a level is missing."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


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
            {"payment": {"funding_source_id": "is not a funding source of this account"}},
        )
    products = reward.get("products")
    if not isinstance(products, list) or len(products) != 1 or not isinstance(products[0], str):
        return 422, _error_body(VALIDATION_MESSAGE, NO_VALID_PRODUCT)
    if products[0] == UNAVAILABLE_PRODUCT:
        return 422, _error_body(
            f"Product {products[0]} is not available",
            {"reward": {"products": "is not available"}},
        )
    if products[0].startswith(UNKNOWN_PRODUCT_PREFIX):
        return 422, _error_body(VALIDATION_MESSAGE, NO_VALID_PRODUCT)
    value = reward.get("value")
    denomination = value.get("denomination") if isinstance(value, dict) else None
    currency = value.get("currency_code") if isinstance(value, dict) else None
    if (
        not isinstance(denomination, int | float) or isinstance(denomination, bool)
        or not 0 < denomination <= MAX_DENOMINATION
    ):
        return 422, _error_body(
            "Denomination is not available for this product",
            {"reward": {"value": {"denomination":
                f"must be between 1 and {MAX_DENOMINATION:g}"}}},
        )
    if currency not in CURRENCIES:
        return 422, _error_body(
            "Currency is not available for this product",
            {"reward": {"value": {"currency_code": "is not supported by this product"}}},
        )
    recipient = reward.get("recipient")
    email = recipient.get("email") if isinstance(recipient, dict) else None
    name = recipient.get("name") if isinstance(recipient, dict) else None
    if (
        not isinstance(email, str) or "@" not in email
        or email.lower().endswith(INVALID_RECIPIENT_DOMAIN)
    ):
        return 422, _error_body(
            VALIDATION_MESSAGE, {"reward": {"recipient": {"email": "Email address is invalid"}}},
        )
    if not isinstance(name, str) or not name.strip():
        return 422, _error_body(
            "Recipient name is required", {"reward": {"recipient": {"name": "can't be blank"}}},
        )
    delivery = reward.get("delivery")
    method = delivery.get("method") if isinstance(delivery, dict) else None
    if method not in ("EMAIL", "LINK"):
        return 422, _error_body(
            "Delivery method is invalid", {"reward": {"delivery": {"method": "is invalid"}}},
        )
    return None


def _body(external_id: str, denomination: float, currency: str,
          email: str) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "payment": {"funding_source_id": "balance"},
        "reward": {"products": ["AMZN-US"],
                   "value": {"denomination": denomination, "currency_code": currency},
                   "recipient": {"name": "Not ours", "email": email},
                   "delivery": {"method": "EMAIL"}},
    }


def _mismatch(order: dict[str, Any], field: str) -> None:
    reward = order["rewards"][0]
    if field == "amount":
        reward["value"]["denomination"] = float(reward["value"]["denomination"]) + 1.0
    elif field == "currency":
        reward["value"]["currency_code"] = (
            "CAD" if reward["value"]["currency_code"] == "EUR" else "EUR")
    elif field == "status":
        order["status"] = "CANCELED" if order["status"] == "EXECUTED" else "EXECUTED"
    elif field == "recipient":
        reward["recipient"]["email"] = "someone-else@example.com"
    else:
        raise ValueError(f"unknown field {field!r}: amount, currency, status or recipient")


@functools.lru_cache(maxsize=4096)
def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _new_order(number: int, body: dict[str, Any]) -> dict[str, Any]:
    reward = body["reward"]
    product = reward["products"][0]
    pending = product == PENDING_PRODUCT
    email = str(reward["recipient"].get("email", "")).lower()
    delivery = "PENDING" if pending else (
        "FAILED" if email.endswith(BOUNCE_DOMAIN) else "SUCCEEDED")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    order_id = f"ORD{number:09d}"
    order: dict[str, Any] = {
        "id": order_id,
        "external_id": body.get("external_id"),
        "created_at": now,
        "status": "PENDING APPROVAL" if pending else "EXECUTED",
        "rewards": [{
            "id": f"RWD{number:09d}",
            "order_id": order_id,
            "created_at": now,
            "products": [product],
            "value": dict(reward["value"]),
            "recipient": dict(reward["recipient"]),
            "delivery": {"method": reward["delivery"]["method"], "status": delivery},
        }],
    }
    if not pending:
        _processed(order, body["payment"]["funding_source_id"])
    return order


def _processed(order: dict[str, Any], funding_source_id: Any) -> None:
    """What an order carries once processed: its cost ("payment": only for processed
    orders, says the order object's reference) and its reward's link."""
    value = order["rewards"][0]["value"]["denomination"]
    order.setdefault("payment", {"funding_source_id": funding_source_id, "subtotal": value,
                                 "total": value, "fees": 0.0})
    order["rewards"][0]["delivery"].setdefault("link", LINK_BASE + secrets.token_urlsafe(12))


GARBAGE = b'{"order": {"id": "ORD<html>502 Bad Gateway</html>'


# --- the app -------------------------------------------------------------------------------


Handler = Callable[[Request], Awaitable[Response]]


def create_app(state: TremendousState | None = None, *, api_key: str = "standin-key") -> Starlette:
    """The stand-in app; ``app.state.tremendous`` is the ``TremendousState``.

    API under ``/api/v2``: ``POST /orders``, ``GET /orders`` (the order list: ``offset``,
    ``limit``, ``created_at[gte]``, ``created_at[lte]``, ``external_id``),
    ``GET /orders/{id or external_id}``,
    ``GET /products``, ``GET /products/{id}``, ``GET /funding_sources``.

    Admin under ``/_standin`` (no auth, JSON bodies, loopback use only):
    ``GET /orders`` (orders, received POSTs, counts per external_id, balance);
    ``POST /reset``; ``POST /balance {"cents"}``;
    ``POST /faults {"status", "count" (null: until cleared), "retry_after", "method", "path"}``;
    ``POST /faults/clear``; ``POST /delay {"seconds"}``;
    ``POST /rate_limit {"per_second" (null: off), "retry_after"}``;
    ``POST /lose {"count", "mode": "drop"|"hang", "hang_seconds"}``; ``POST /garbage {"count"}``;
    ``POST /orders/{id or external_id}/approve``; ``POST /orders/{ref}/status {"status"}``;
    ``POST /orders/{ref}/delivery {"status"}``; ``POST /orders/{ref}/forget`` (the order
    dropped: listed and found no more); ``POST /background {"count"}``;
    ``POST /inject {"kind": "orphan"|"duplicate"|"mismatch", "external_id", "count",
    "created_at", "field"}`` (see ``TremendousState.inject``).
    """
    st = state if state is not None else TremendousState()
    expected = f"Bearer {api_key}".encode()

    def api(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            path = request.url.path.removeprefix(API_PREFIX) or "/"
            is_create = request.method == "POST" and path.rstrip("/") == "/orders"
            external_id = await _external_id(request) if is_create else None
            await apply_delay(st)
            fault = st._take_fault(request.method, path)
            if fault is not None:
                if is_create:
                    st._record(external_id, created=False, status=fault.status, outcome="forced")
                headers = retry_after_headers(fault.retry_after)
                return _error(fault.status, f"Forced {fault.status} (stand-in)", headers=headers)
            if st._rate_limited():
                if is_create:
                    st._record(external_id, created=False, status=429, outcome="rate_limited")
                # Tremendous's 429 body uses a singular "error" key (rate-limiting page).
                return JSONResponse(RATE_LIMITED, status_code=429,
                                    headers=rate_limit_headers(st))
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                if is_create:
                    st._record(external_id, created=False, status=401, outcome="unauthorized")
                return _error(401, AUTH_MESSAGE)
            response = await handler(request)
            return spoil(st, response, lose=is_create, garbage=GARBAGE)

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
            outcome="created" if created else ("repeat" if status == 201 else "rejected"),
            order_id=order["id"] if isinstance(order, dict) else None,
        )
        return JSONResponse(answer, status_code=status)

    @api
    async def list_orders(request: Request) -> Response:
        status, body = st.listed(dict(request.query_params))
        return JSONResponse(body, status_code=status)

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
        if product_id.startswith(UNKNOWN_PRODUCT_PREFIX):
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

    async def admin_balance(request: Request) -> Response:
        body = await _json_object(request)
        cents = body.get("cents", body.get("available_cents"))
        if not isinstance(cents, int):
            return JSONResponse({"error": "cents (integer) is required"}, status_code=400)
        st.set_balance(cents)
        return JSONResponse({"balance_cents": cents})

    async def admin_approve(request: Request) -> Response:
        try:
            order = st.approve(request.path_params["ref"])
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse({"order": order})

    async def admin_delivery(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("status")
        if not isinstance(status, str):
            return JSONResponse({"error": "status (string) is required"}, status_code=400)
        try:
            order = st.set_delivery(request.path_params["ref"], status)
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse({"order": order})

    async def admin_background(request: Request) -> Response:
        body = await _json_object(request)
        st.background(int(body.get("count", 1)))
        return JSONResponse({"ok": True})

    async def admin_forget(request: Request) -> Response:
        try:
            order = st.forget(request.path_params["ref"])
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse({"forgotten": order})

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
        Route(f"{API_PREFIX}/orders", list_orders, methods=["GET"]),
        Route(f"{API_PREFIX}/orders/{{ref}}", get_order, methods=["GET"]),
        Route(f"{API_PREFIX}/products", list_products, methods=["GET"]),
        Route(f"{API_PREFIX}/products/{{product_id}}", get_product, methods=["GET"]),
        Route(f"{API_PREFIX}/funding_sources", funding_sources, methods=["GET"]),
        Route("/_standin/orders", admin_orders, methods=["GET"]),
        Route("/_standin/balance", admin_balance, methods=["POST"]),
        Route("/_standin/orders/{ref}/approve", admin_approve, methods=["POST"]),
        Route("/_standin/orders/{ref}/status", admin_status, methods=["POST"]),
        Route("/_standin/orders/{ref}/delivery", admin_delivery, methods=["POST"]),
        Route("/_standin/orders/{ref}/forget", admin_forget, methods=["POST"]),
        Route("/_standin/background", admin_background, methods=["POST"]),
        Route("/_standin/inject", inject_route(st.inject), methods=["POST"]),
    ]
    routes += fault_admin_routes(st)
    app = Starlette(routes=routes)
    app.state.tremendous = st
    return app


async def _external_id(request: Request) -> Any:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body.get("external_id") if isinstance(body, dict) else None

