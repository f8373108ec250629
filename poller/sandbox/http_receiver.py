"""A local receiver for the generic HTTP vendor: what a user's own endpoint would do.

Serve it with ``ServerThread(create_app(state))`` and configure ``[vendors.http] url`` as
``<url>/hooks/orders`` (``HOOK_PATH``) with the same ``secret``, and optionally
``lookup_url`` as ``<url>/hooks/orders/{idempotency_key}`` (``LOOKUP_PATH``). It checks
every request the way the wire format in ``poller.vendors.http`` asks a receiver to, using
that module's ``verify_signature``, and keeps a record of every request and every order per
key (``received``: POSTs, ``lookups``: GETs).

Built-in behaviours (no setup needed):

* A missing, wrong or stale ``X-Reward-Poller-Signature`` (older than ``max_age``) is a 401;
  a missing ``Idempotency-Key``, or one that differs from the body's ``idempotency_key``, is
  a 400.
* Idempotent on ``Idempotency-Key``: a repeat answers the order's current state and creates
  nothing; a repeat with a *different* body is a 422 (the adapter must send identical bytes).
* ``GET /hooks/orders/{key}`` (signed over the key): the order's answer, or a 404
  ``{"status": "not_found"}``; it never creates anything.
* ``GET /hooks/order-list?since=&until=[&cursor=]`` (signed over the query string): the
  orders taken, as the order list in the wire format shows them, 100 a page.
* Rules for a new order: product ``UNAVAILABLE`` is ``refused`` ("This reward is out of
  stock"); an advocate email ending in ``@invalid.example`` is ``refused``; product
  ``PENDING`` is ``pending`` until ``approve``; anything else is ``accepted`` at once.

Fault knobs, from Python (``ReceiverState`` methods) or over HTTP (``/_standin/...``, see
``create_app``): forced statuses, a delay, a rate limit, lost answers (drop or hang after the
order was taken), garbage answers, and ``ignore`` (the next POSTs hang unhandled: nothing is
recorded, no order is made, no answer comes). ``reset`` puts everything back.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
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
from poller.vendors.http import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature

log = structlog.get_logger(__name__)

HOOK_PATH = "/hooks/orders"
LOOKUP_PATH = HOOK_PATH + "/{idempotency_key}"
ORDERS_PATH = "/hooks/order-list"
"""The optional order list (``[vendors.http] orders_url``), paged by cursor."""
LIST_PAGE = 100
"""Orders per page of the order list."""
UNAVAILABLE_PRODUCT = "UNAVAILABLE"
PENDING_PRODUCT = "PENDING"
INVALID_RECIPIENT_DOMAIN = "@invalid.example"
OUT_OF_STOCK = "This reward is out of stock"
BAD_EMAIL = "The email address on your profile was not accepted"


class ReceiverState(Faults):
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
        self.lookups: list[dict[str, Any]] = []
        """One record per look-up GET: key, signature_ok, status (HTTP)."""
        self.extra: list[dict[str, Any]] = []
        """Orders only in the order list (``inject``): orphans and duplicates."""
        self._init_faults()
        self._counter = 0
        self._ignore = 0
        self.list_requests: list[dict[str, Any]] = []
        """One record per order-list GET: query (since, until, cursor), signature_ok, status."""

    def __repr__(self) -> str:
        return f"ReceiverState(orders={len(self.orders)})"

    # --- knobs --------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.secret = self._initial_secret
            self.orders.clear()
            self.received.clear()
            self.lookups.clear()
            self.extra.clear()
            self._reset_faults()
            self._counter = 0
            self._ignore = 0
            self.list_requests.clear()

    def ignore(self, count: int = 1) -> None:
        """The next ``count`` POSTs hang unhandled until the client gives up: the receiver
        records nothing and makes no order (a receiver stuck before it read the request)."""
        with self._lock:
            self._ignore += count

    def _take_ignore(self) -> bool:
        with self._lock:
            if self._ignore > 0:
                self._ignore -= 1
                return True
            return False

    def set_secret(self, secret: str) -> None:
        """Verify with another secret (the adapter's requests then fail with 401)."""
        with self._lock:
            self.secret = secret

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

    def inject(self, kind: str, *, external_id: str | None = None, count: int = 1,
               created_at: str | None = None, amount: str = "25.00", currency: str = "USD",
               email: str = "orphan@example.com", field: str = "amount",
               ) -> list[dict[str, Any]]:
        """Put into the order list what the books audit must find: ``orphan`` (``count``
        orders taken outside reward-poller, under ``external_id`` or one of our keys' shape
        (``orphan_key``), ``created_at``
        RFC 3339, default now), ``duplicate`` (a second order under the key ``external_id``,
        default the newest order's) or ``mismatch`` (that order changed in ``field``:
        ``amount`` +1.00, ``status`` accepted <-> cancelled, or ``recipient``). Returns the
        orders as listed. KeyError: no such order; ValueError: unknown kind or field."""
        with self._lock:
            if kind == "orphan":
                made = []
                for _ in range(count):
                    self._counter += 1
                    entry = self._listed_entry(external_id or orphan_key(self._counter), amount,
                                               currency, email, created_at)
                    self.extra.append(entry)
                    made.append(_listed(entry))
                return made
            key = external_id or next(reversed(self.orders), None)
            order = self.orders.get(key) if key is not None else None
            if order is None:
                raise KeyError(key)
            if kind == "duplicate":
                self._counter += 1
                listed = _listed({**order, "key": key})
                entry = self._listed_entry(key, listed["amount"], listed["currency"],
                                           listed["email"] or email, created_at)
                self.extra.append(entry)
                return [_listed(entry)]
            if kind == "mismatch":
                routing = order["order"].setdefault("routing", {})
                if field == "amount":
                    routing["amount"] = str(Decimal(str(routing.get("amount", "0"))) + 1)
                elif field == "status":
                    order["status"] = "cancelled" if order["status"] == "accepted" \
                        else "accepted"
                elif field == "recipient":
                    order["order"].setdefault("advocate", {})["email"] = \
                        "someone-else@example.com"
                else:
                    raise ValueError(f"unknown field {field!r}: amount, status or recipient")
                return [_listed({**order, "key": key})]
            raise ValueError(f"unknown kind {kind!r}: orphan, duplicate or mismatch")

    def _listed_entry(self, key: str | None, amount: str, currency: str, email: str,
                      created_at: str | None) -> dict[str, Any]:
        return {"key": key, "order_id": f"HOOK-{self._counter:06d}", "status": "accepted",
                "message": "", "created_at": created_at or _now(),
                "order": {"routing": {"amount": amount, "currency": currency,
                                      "product": None},
                          "advocate": {"email": email}}}

    def listed(self, since: str | None, until: str | None, cursor: str | None,
               ) -> tuple[int, dict[str, Any]]:
        """The order list: orders created in [since, until), oldest first, ``LIST_PAGE`` a
        page; the cursor is the offset of the next page."""
        try:
            low = _instant(since) if since else None
            high = _instant(until) if until else None
            offset = int(cursor) if cursor else 0
        except ValueError:
            return 400, {"error": "since, until (RFC 3339) or cursor is not valid"}
        with self._lock:
            every = [{**o, "key": k} for k, o in self.orders.items()] + list(self.extra)
            chosen = sorted(
                (e for e in every
                 if (low is None or _instant(e["created_at"]) >= low)
                 and (high is None or _instant(e["created_at"]) < high)),
                key=lambda e: (_instant(e["created_at"]), e["order_id"]))
            page = [_listed(e) for e in chosen[offset:offset + LIST_PAGE]]
        following = offset + LIST_PAGE
        return 200, {"orders": page,
                     "next_cursor": str(following) if following < len(chosen) else None}

    # --- records ------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        """Per key: ``received`` signed requests and orders ``created``."""
        with self._lock:
            return tally(self.received, "key", created=lambda rec: rec.get("outcome") == "created",
                         counted=lambda rec: bool(rec.get("signature_ok")))

    def created_for(self, key: str) -> int:
        return self.counts().get(key, {}).get("created", 0)

    def order(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.orders.get(key)
            return copy.deepcopy(found) if found is not None else None

    def posts(self) -> int:
        """Every POST that reached the app (signed or not, handled or refused)."""
        with self._lock:
            return len(self.received)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "orders": copy.deepcopy(self.orders),
                "received": [dict(r) for r in self.received],
                "lookups": [dict(r) for r in self.lookups],
                "counts": self.counts(),
            }

    # --- used by the app ----------------------------------------------------------------

    def _answer(self, order: dict[str, Any]) -> dict[str, Any]:
        return {"status": order["status"], "order_id": order["order_id"],
                "message": order["message"]}

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
                                     "order": order, "created_at": _now()}
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
            log.debug("standin.hook.order", key=key, status=entry["status"])
            return 200, self._answer(entry), "created"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=4096)
def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _listed(entry: dict[str, Any]) -> dict[str, Any]:
    """An order as the order list shows it (the contract in ``poller.vendors.http.wire``)."""
    order: dict[str, Any] = entry.get("order") or {}
    routing: dict[str, Any] = order.get("routing") or {}
    advocate: dict[str, Any] = order.get("advocate") or {}
    return {"idempotency_key": entry.get("key"), "order_id": entry["order_id"],
            "created_at": entry["created_at"], "status": entry["status"],
            "amount": routing.get("amount"), "currency": routing.get("currency"),
            "product": routing.get("product"), "email": advocate.get("email")}


GARBAGE = b"<html>200 OK, but not JSON</html>"


async def _until_disconnected(request: Request, most: float = 60.0) -> None:
    """Wait (at most ``most`` seconds) until the client hangs up."""
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.02)

Handler = Callable[[Request], Awaitable[Response]]


def create_app(state: ReceiverState | None = None) -> Starlette:
    """The receiver app; ``app.state.receiver`` is the ``ReceiverState``.

    ``POST /hooks/orders``: the generic HTTP vendor's wire format; ``GET
    /hooks/orders/{key}``: its optional look-up; ``GET /hooks/order-list``: its optional
    order list (``since``, ``until``, ``cursor``; signed over the query string).

    Admin under ``/_standin`` (no auth, JSON bodies, loopback use only):
    ``GET /orders`` (orders by key, received requests, counts per key); ``POST /reset``;
    ``POST /faults {"status", "count", "retry_after"}``; ``POST /faults/clear``;
    ``POST /delay {"seconds"}``; ``POST /rate_limit {"per_second", "retry_after"}``;
    ``POST /lose {"count", "mode", "hang_seconds"}``; ``POST /garbage {"count"}``;
    ``POST /orders/{key}/approve``; ``POST /orders/{key}/status {"status", "message"}``;
    ``POST /secret {"secret"}``; ``POST /inject {"kind": "orphan"|"duplicate"|"mismatch",
    "external_id", "count", "created_at", "field"}`` (see ``ReceiverState.inject``).
    """
    st = state if state is not None else ReceiverState()

    async def hook(request: Request) -> Response:
        raw = await request.body()
        if st._take_ignore():
            await _until_disconnected(request)
            return Response(status_code=504)  # nobody is listening any more
        key = request.headers.get(IDEMPOTENCY_HEADER)
        with st._lock:
            secret, max_age = st.secret, st.max_age
        await apply_delay(st)
        signed = verify_signature(secret, request.headers.get(SIGNATURE_HEADER), raw, max_age)
        fault = st._take_fault("POST", HOOK_PATH)
        if fault is not None:
            st._record(key, signature_ok=signed, status=fault.status, outcome="forced")
            headers = retry_after_headers(fault.retry_after)
            return JSONResponse({"error": f"Forced {fault.status} (stand-in)"},
                                status_code=fault.status, headers=headers)
        if st._rate_limited():
            st._record(key, signature_ok=signed, status=429, outcome="rate_limited")
            return JSONResponse({"error": "Too many requests"}, status_code=429,
                                headers=rate_limit_headers(st))
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
        return spoil(st, response, lose=True, garbage=GARBAGE, garbage_type="text/html")

    async def look_up(request: Request) -> Response:
        key = request.path_params["idempotency_key"]
        with st._lock:
            secret, max_age = st.secret, st.max_age
        await apply_delay(st)
        signed = (request.headers.get(IDEMPOTENCY_HEADER) == key
                  and verify_signature(secret, request.headers.get(SIGNATURE_HEADER),
                                       key.encode(), max_age))

        def answer(status: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> Response:
            with st._lock:
                st.lookups.append({"key": key, "signature_ok": signed, "status": status,
                                   "at": time.time()})
            return JSONResponse(body, status_code=status, headers=headers)

        fault = st._take_fault("GET", HOOK_PATH)
        if fault is not None:
            return answer(fault.status, {"error": f"Forced {fault.status} (stand-in)"},
                          retry_after_headers(fault.retry_after))
        if not signed:
            return answer(401, {"error": "Missing, wrong or stale signature"})
        with st._lock:
            order = st.orders.get(key)
            found = st._answer(order) if order is not None else None
        if found is None:
            return answer(404, {"status": "not_found"})
        return answer(200, found)

    async def order_list(request: Request) -> Response:
        query = request.url.query
        with st._lock:
            secret, max_age = st.secret, st.max_age
        await apply_delay(st)
        signed = verify_signature(secret, request.headers.get(SIGNATURE_HEADER),
                                  query.encode(), max_age)

        def answer(status: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> Response:
            with st._lock:
                st.list_requests.append({"query": dict(request.query_params),
                                         "signature_ok": signed, "status": status,
                                         "at": time.time()})
            return JSONResponse(body, status_code=status, headers=headers)

        fault = st._take_fault("GET", ORDERS_PATH)
        if fault is not None:
            return answer(fault.status, {"error": f"Forced {fault.status} (stand-in)"},
                          retry_after_headers(fault.retry_after))
        if st._rate_limited():
            return answer(429, {"error": "Too many requests"}, rate_limit_headers(st))
        if not signed:
            return answer(401, {"error": "Missing, wrong or stale signature"})
        params = request.query_params
        status, body = st.listed(params.get("since"), params.get("until"),
                                 params.get("cursor"))
        return answer(status, body)

    # --- admin ----------------------------------------------------------------------------

    async def admin_orders(request: Request) -> Response:
        return JSONResponse(st.snapshot())

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
        Route(LOOKUP_PATH, look_up, methods=["GET"]),
        Route(ORDERS_PATH, order_list, methods=["GET"]),
        Route("/_standin/inject", inject_route(st.inject), methods=["POST"]),
        Route("/_standin/orders", admin_orders, methods=["GET"]),
        Route("/_standin/secret", admin_secret, methods=["POST"]),
        Route("/_standin/orders/{key}/approve", admin_approve, methods=["POST"]),
        Route("/_standin/orders/{key}/status", admin_status, methods=["POST"]),
    ]
    routes += fault_admin_routes(st, targeted=False)
    app = Starlette(routes=routes)
    app.state.receiver = st
    return app
