"""A local stand-in for Tango Card RaaS v2, speaking its documented shapes.

Serve it with ``ServerThread(create_app(state))`` and point the adapter at
``<url>/raas/v2`` with platform name ``PLATFORM_NAME``, customer ``CUSTOMER`` and account
``ACCOUNT``. It keeps its own record of every ``POST /orders`` it received and every order
it created, so tests can check "one order per externalRefID" against the vendor's side.

Built-in behaviours (no setup needed):

* HTTP Basic ``PLATFORM_NAME:<platform_key>`` or 401.
* ``POST /orders`` is idempotent on ``externalRefID`` per account: first create 201, a
  repeat 200 with the same order (creates nothing, charges nothing); ``repeat_conflict``
  makes a repeat a 409 ``409.024`` instead, and ``in_process(n)`` answers the next ``n``
  creates 409 ``409.002`` (the same externalRefID is still being processed) without handling
  them. Orders draw the account balance down; too little is a 402 ``402.001``.
* Errors are Tango's documented body (its client's ``ApiError``): ``timestamp, requestId,
  path, httpCode, httpPhrase`` with ``message`` and ``i18nKey`` (the catalogue's key and
  text: 401.002, 402.001, 409.002, 409.024, 404.110, 429.001, 500.001, 503.502), or, for
  field errors (HTTP 400), ``errors[{path, i18nKey, message, invalidValue, constraint}]``
  only, as in Tango's example.
* ``GET /orders`` lists orders without their ``reward`` (swagger ``OrderListItemView``):
  the credentials come only with the create's answer and ``GET /orders/{referenceOrderID}``.
* The catalog (``CATALOG``): ``U561593`` Amazon.com (USD, 0.01 to 2000), ``U426141``
  Starbucks (USD, fixed 25.00), ``U579023`` Zalando (EUR, 5 to 250), ``PENDING`` (USD; its
  orders stay ``PENDING`` until ``approve``) and ``UNAVAILABLE`` (inactive: ``422.097``). A
  UTID not in the catalog is ``422.024``, an amount the item does not allow ``422.025``.
* A recipient email ending in ``@invalid.example`` (or without ``@``) is ``422.134``; an
  unknown customer or account is a 400 about those. ``set_status(ref, "PARTIAL")`` makes an
  order partial. An empty ``GET /orders?externalRefID=`` answers an empty list, or with
  ``empty_lookup_404`` a 404 ``404.110``.
* ``GET /catalogs`` counts its calls (``catalog_calls``): tests prove the cache with it.

Fault knobs, from Python (``TangoState`` methods) or over HTTP (``/_standin/...``, see
``create_app``): forced statuses for the next N requests, "process then fail" (the order is
created, the answer is a 5xx: Tango's "may occasionally process"), a delay per request, a
rate limit, lost answers (drop the connection or hang, after the order was created),
garbage answers. ``reset`` puts everything back.
"""

from __future__ import annotations

import base64
import copy
import functools
import hmac
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
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

API_PREFIX = "/raas/v2"
PLATFORM_NAME = "standin-platform"
CUSTOMER = "standin-customer"
ACCOUNT = "standin-account"
DEFAULT_BALANCE = Decimal("10000.00")
UNAVAILABLE_UTID = "UNAVAILABLE"
PENDING_UTID = "PENDING"
INVALID_RECIPIENT_DOMAIN = "@invalid.example"
LINK_BASE = "https://standin.tango.invalid/redeem/"
_EXTERNAL_REF = re.compile(r"^[A-Za-z0-9]{1,100}$")

CATALOG: tuple[dict[str, Any], ...] = (
    {"brandKey": "B916708", "brandName": "Amazon.com", "status": "active", "items": [
        {"utid": "U561593", "rewardName": "Amazon.com Gift Card", "currencyCode": "USD",
         "status": "active", "valueType": "VARIABLE_VALUE", "minValue": 0.01,
         "maxValue": 2000.0, "countries": ["US"]},
    ]},
    {"brandKey": "B238401", "brandName": "Starbucks", "status": "active", "items": [
        {"utid": "U426141", "rewardName": "Starbucks Card $25", "currencyCode": "USD",
         "status": "active", "valueType": "FIXED_VALUE", "faceValue": 25.0,
         "countries": ["US"]},
    ]},
    {"brandKey": "B455093", "brandName": "Zalando", "status": "active", "items": [
        {"utid": "U579023", "rewardName": "Zalando Gift Card", "currencyCode": "EUR",
         "status": "active", "valueType": "VARIABLE_VALUE", "minValue": 5.0,
         "maxValue": 250.0, "countries": ["DE"]},
    ]},
    {"brandKey": "B000001", "brandName": "Stand-in", "status": "active", "items": [
        {"utid": PENDING_UTID, "rewardName": "Needs review (stand-in)", "currencyCode": "USD",
         "status": "active", "valueType": "VARIABLE_VALUE", "minValue": 1.0,
         "maxValue": 2000.0, "countries": ["US"]},
        {"utid": UNAVAILABLE_UTID, "rewardName": "Retired card (stand-in)",
         "currencyCode": "USD", "status": "inactive", "valueType": "VARIABLE_VALUE",
         "minValue": 1.0, "maxValue": 2000.0, "countries": ["US"]},
    ]},
)
_ITEMS: dict[str, dict[str, Any]] = {
    item["utid"]: item for brand in CATALOG for item in brand["items"]
}

_PHRASES = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
            403: "Forbidden", 404: "Not Found",
            409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


# i18nKey and text per status where Tango's message catalogue has one for it (its official
# client's messages.properties; docs/vendors.md).
_DEFAULT_KEYS = {
    401: ("401.002", "Invalid HTTP Basic Authorization credentials"),
    404: ("404.001", "Not found"),
    429: ("429.001", "Too many requests"),
    500: ("500.001", "Unexpected Application error"),
    503: ("503.502", "Service temporarily unavailable. We recommend implementing an "
                     "incremental retry. If the problem persists please check out status page "
                     "at: http://status.tangocard.com"),
}
FUNDS_MESSAGE = "There are insufficient funds in your account to process this order."


def error_body(status: int, path: str, errors: list[dict[str, Any]] | None = None,
               message: str | None = None, i18n_key: str | None = None) -> dict[str, Any]:
    """Tango's documented error body (its client's ApiError): ``timestamp, requestId, path,
    httpCode, httpPhrase`` and either ``errors[{path, i18nKey, message, invalidValue,
    constraint}]`` (field errors, laid out as in Tango's example: no top-level message or
    key) or ``message`` and ``i18nKey`` (the error's id). Empty fields are left out, as the
    client's serialisation does."""
    body: dict[str, Any] = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestId": secrets.token_hex(8),
        "path": path,
        "httpCode": status,
        "httpPhrase": _PHRASES.get(status, "Error"),
    }
    if errors:
        body["errors"] = [{k: v for k, v in e.items() if v is not None} for e in errors]
        return body
    default_key, default_text = _DEFAULT_KEYS.get(status, (f"{status}.000", None))
    body["message"] = message or default_text or _PHRASES.get(status, "Error")
    body["i18nKey"] = i18n_key or default_key
    return body


def _error(status: int, path: str, errors: list[dict[str, Any]] | None = None,
           message: str | None = None, headers: dict[str, str] | None = None,
           i18n_key: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, path, errors, message, i18n_key),
                        status_code=status, headers=headers)


class TangoState(Faults):
    """Everything the stand-in knows. Thread-safe: the server runs in its own thread while a
    test drives the knobs."""

    def __init__(self, balance: Decimal | str = DEFAULT_BALANCE) -> None:
        self._lock = threading.RLock()
        self._initial_balance = Decimal(str(balance))
        self.balance = self._initial_balance
        self.orders: dict[str, dict[str, Any]] = {}
        """referenceOrderID -> the order as served."""
        self.received: list[dict[str, Any]] = []
        """One record per ``POST /orders``: external_id, created, status, outcome."""
        self.catalog_calls = 0
        self._init_faults()
        self.process_then_fail_left: list[tuple[int, int]] = []
        self._by_external: dict[str, str] = {}
        self._counter = 0
        self.in_process_left = 0
        self.repeat_conflict = False
        self.empty_lookup_404 = False
        self.list_requests: list[dict[str, str]] = []
        """The query of every ``GET /orders`` answered (page, elementsPerBlock, ...)."""

    def __repr__(self) -> str:
        return f"TangoState(orders={len(self.orders)}, balance={self.balance})"

    # --- knobs --------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.balance = self._initial_balance
            self.orders.clear()
            self.received.clear()
            self.catalog_calls = 0
            self._reset_faults()
            self.process_then_fail_left.clear()
            self._by_external.clear()
            self._counter = 0
            self.in_process_left = 0
            self.repeat_conflict = False
            self.empty_lookup_404 = False
            self.list_requests.clear()

    def in_process(self, count: int = 1) -> None:
        """Answer the next ``count`` creates 409 ``409.002`` (still being processed)."""
        with self._lock:
            self.in_process_left += count

    def set_repeat_conflict(self, on: bool = True) -> None:
        """A repeated externalRefID answers 409 ``409.024`` instead of 200."""
        with self._lock:
            self.repeat_conflict = on

    def set_empty_lookup_404(self, on: bool = True) -> None:
        """An empty look-up by externalRefID answers 404 ``404.110``."""
        with self._lock:
            self.empty_lookup_404 = on

    def clear_faults(self) -> None:
        with self._lock:
            super().clear_faults()
            self.process_then_fail_left.clear()

    def process_then_fail(self, status: int = 503, count: int = 1) -> None:
        """Handle the next ``count`` ``POST /orders`` (creating the order), then answer
        ``status`` anyway: Tango's "5xx may occasionally process"."""
        with self._lock:
            self.process_then_fail_left.append((status, count))

    def set_balance(self, amount: Decimal | str | float) -> None:
        with self._lock:
            self.balance = Decimal(str(amount))

    def approve(self, ref: str) -> dict[str, Any]:
        """Move a ``PENDING`` order (by referenceOrderID or externalRefID) to COMPLETE."""
        return self.set_status(ref, "COMPLETE")

    def set_status(self, ref: str, status: str) -> dict[str, Any]:
        with self._lock:
            order = self._find(ref)
            if order is None:
                raise KeyError(ref)
            order["status"] = status
            if status == "COMPLETE" and "reward" not in order:
                order["reward"] = _reward()
            return copy.deepcopy(order)

    def inject(self, kind: str, *, external_id: str | None = None, count: int = 1,
               created_at: str | None = None, amount: str = "25.00", utid: str | None = None,
               email: str = "orphan@example.com", field: str = "amount",
               ) -> list[dict[str, Any]]:
        """Put into the order list what the books audit must find (none touches the balance):
        ``orphan`` (``count`` orders placed outside reward-poller, ``external_id`` or
        one of our keys' shape each (``orphan_key``), ``created_at`` RFC 3339, default now),
        ``duplicate`` (a second
        order under ``external_id``, default the newest order's) or ``mismatch`` (the order
        ``external_id``, default the newest, changed in ``field``: ``amount`` +1.00,
        ``status`` COMPLETE <-> FAILED, or ``recipient``). Returns the orders as listed.
        KeyError: no such order; ValueError: unknown kind or field."""
        with self._lock:
            if kind == "orphan":
                made = []
                for _ in range(count):
                    self._counter += 1
                    body = _orphan_body(external_id or orphan_key(self._counter), amount,
                                        utid or next(iter(_ITEMS)), email)
                    made.append(self._add(body, created_at))
                return made
            ref = external_id or next(
                (str(o["externalRefID"]) for o in reversed(list(self.orders.values()))
                 if isinstance(o.get("externalRefID"), str)), None)
            order = self._find(ref) if ref is not None else None
            if order is None:
                raise KeyError(ref)
            if kind == "duplicate":
                self._counter += 1
                body = {k: copy.deepcopy(order[k]) for k in (
                    "externalRefID", "customerIdentifier", "accountIdentifier", "utid",
                    "recipient")} | {"amount": order["denomination"]["value"]}
                return [_list_item(self._add(body, created_at, index=False))]
            if kind == "mismatch":
                if field == "amount":
                    value = order["denomination"]["value"] + 1.0
                    order["denomination"]["value"] = value
                    order["amountCharged"]["value"] = order["amountCharged"]["total"] = value
                elif field == "status":
                    order["status"] = "FAILED" if order["status"] == "COMPLETE" else "COMPLETE"
                elif field == "recipient":
                    order["recipient"]["email"] = "someone-else@example.com"
                else:
                    raise ValueError(f"unknown field {field!r}: amount, status or recipient")
                return [_list_item(order)]
            raise ValueError(f"unknown kind {kind!r}: orphan, duplicate or mismatch")

    def _add(self, body: dict[str, Any], created_at: str | None, *,
             index: bool = True) -> dict[str, Any]:
        order = _new_order(self._counter, body, Decimal(str(body["amount"])))
        order.pop("reward", None)
        if created_at is not None:
            order["createdAt"] = created_at
        self.orders[order["referenceOrderID"]] = order
        external = body.get("externalRefID")
        if index and isinstance(external, str):
            self._by_external.setdefault(external.lower(), order["referenceOrderID"])
        return _list_item(order)

    def listed(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``GET /orders``: oldest first; ``externalRefID``, ``startDate`` / ``endDate``
        (RFC 3339 date or date-time, inclusive), ``elementsPerBlock`` (default 10) and
        ``page`` (from 0)."""
        try:
            size = int(query.get("elementsPerBlock", "10"))
            number = int(query.get("page", "0"))
            start = _moment(query["startDate"], end=False) if "startDate" in query else None
            end = _moment(query["endDate"], end=True) if "endDate" in query else None
        except ValueError:
            return 400, {"message": "invalid paging or date parameter"}
        if size < 1 or number < 0:
            return 400, {"message": "invalid paging parameter"}
        wanted = query.get("externalRefID")
        with self._lock:
            self.list_requests.append(dict(query))
            chosen = [
                o for o in self.orders.values()
                if (wanted is None or str(o.get("externalRefID", "")).lower() == wanted.lower())
                and (start is None or _moment(o["createdAt"], end=False) >= start)
                and (end is None or _moment(o["createdAt"], end=False) <= end)
            ]
            chosen.sort(key=lambda o: (_moment(o["createdAt"], end=False),
                                       o["referenceOrderID"]))
            page = [_list_item(o) for o in chosen[number * size:(number + 1) * size]]
        return 200, {
            "page": {"number": number, "elementsPerBlock": size, "resultCount": len(page),
                     "totalCount": len(chosen)},
            "orders": page,
        }

    # --- records ------------------------------------------------------------------------

    def find(self, ref: str) -> dict[str, Any] | None:
        with self._lock:
            order = self._find(ref)
            return copy.deepcopy(order) if order is not None else None

    def _find(self, ref: str) -> dict[str, Any] | None:
        return self.orders.get(self._by_external.get(ref.lower(), ref))

    def counts(self) -> dict[str, dict[str, int]]:
        """Per externalRefID: ``received`` POST /orders and orders ``created``."""
        with self._lock:
            return tally(self.received, "external_id")

    def created_for(self, external_id: str) -> int:
        return self.counts().get(external_id, {}).get("created", 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "orders": [copy.deepcopy(o) for o in self.orders.values()],
                "received": [dict(r) for r in self.received],
                "counts": self.counts(),
                "balance": str(self.balance),
                "catalog_calls": self.catalog_calls,
            }

    # --- used by the app ----------------------------------------------------------------

    def _take_process_then_fail(self) -> int | None:
        with self._lock:
            for i, (status, left) in enumerate(self.process_then_fail_left):
                if left > 0:
                    self.process_then_fail_left[i] = (status, left - 1)
                    return status
            return None

    def _record(self, external_id: Any, *, created: bool, status: int, outcome: str,
                order_id: str | None = None) -> None:
        with self._lock:
            self.received.append({
                "external_id": external_id if isinstance(external_id, str) else None,
                "created": created, "status": status, "outcome": outcome,
                "order_id": order_id, "at": time.time(),
            })

    def _create(self, body: Any, path: str) -> tuple[int, dict[str, Any], bool]:
        """Validate and create (or find) an order: (status, response body, created)."""
        if not isinstance(body, dict):
            return 400, error_body(400, path, message="Request body must be a JSON object"), False
        external_id = body.get("externalRefID")
        with self._lock:
            if self.in_process_left > 0:
                self.in_process_left -= 1
                return 409, error_body(409, path, message=(
                    f"Another order with the same external reference ID of {external_id} for "
                    f"accountId {ACCOUNT} is currently in process but not complete. Please "
                    "ensure a minimum of 2 seconds for all retries."), i18n_key="409.002"), False
            if isinstance(external_id, str) and external_id.lower() in self._by_external:
                order = self.orders[self._by_external[external_id.lower()]]
                if self.repeat_conflict:
                    return 409, error_body(409, path, message=(
                        f"An order with the external reference ID '{external_id}' already "
                        "exists on your platform."), i18n_key="409.024"), False
                return 200, copy.deepcopy(order), False
            problem = _validate(body)
            if problem is not None:
                return 400, error_body(400, path, [problem]), False
            amount = _amount(body.get("amount"))
            assert amount is not None
            if amount > self.balance:
                return 402, error_body(402, path, message=FUNDS_MESSAGE,
                                       i18n_key="402.001"), False
            self.balance -= amount
            self._counter += 1
            order = _new_order(self._counter, body, amount)
            self.orders[order["referenceOrderID"]] = order
            if isinstance(external_id, str):
                self._by_external[external_id.lower()] = order["referenceOrderID"]
            log.debug("standin.order.created", order_id=order["referenceOrderID"])
            return 201, copy.deepcopy(order), True


def _amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _validate(body: dict[str, Any]) -> dict[str, Any] | None:
    """The first problem with a create body, as one item of Tango's ``errors`` list."""
    if body.get("customerIdentifier") != CUSTOMER:
        return {"path": "customerIdentifier", "message": "Customer not found"}
    if body.get("accountIdentifier") != ACCOUNT:
        return {"path": "accountIdentifier", "message": "Account not found for this customer"}
    external_id = body.get("externalRefID")
    if external_id is not None and (
        not isinstance(external_id, str) or not _EXTERNAL_REF.fullmatch(external_id)
    ):
        return {"path": "externalRefID", "i18nKey": "422.122", "invalidValue": external_id,
                "message": "must be alphanumeric and at most 100 characters"}
    utid = body.get("utid")
    item = _ITEMS.get(utid) if isinstance(utid, str) else None
    if item is None:
        return {"path": "utid", "i18nKey": "422.024", "invalidValue": utid,
                "message": f"Invalid UTID {utid}"}
    if item["status"] != "active":
        return {"path": "utid", "i18nKey": "422.097", "invalidValue": utid,
                "message": f"Item {utid} is inactive"}
    amount = _amount(body.get("amount"))
    if amount is None or amount <= 0:
        return {"path": "amount", "i18nKey": "422.026", "message": "amount is required"}
    if item["valueType"] == "FIXED_VALUE":
        if amount != Decimal(str(item["faceValue"])):
            return {"path": "amount", "i18nKey": "422.025", "invalidValue": str(amount),
                    "message": "amount must equal the item's face value"}
    elif not Decimal(str(item["minValue"])) <= amount <= Decimal(str(item["maxValue"])):
        return {"path": "amount", "i18nKey": "422.025", "invalidValue": str(amount),
                "message": "amount is outside the item's range"}
    recipient = body.get("recipient")
    email = recipient.get("email") if isinstance(recipient, dict) else None
    if (
        not isinstance(email, str) or "@" not in email
        or email.lower().endswith(INVALID_RECIPIENT_DOMAIN)
    ):
        return {"path": "recipient.email", "i18nKey": "422.134",
                "constraint": "Email", "message": "must be a well-formed email address"}
    if not isinstance(recipient, dict) or not str(recipient.get("firstName", "")).strip():
        return {"path": "recipient.firstName", "i18nKey": "422.009",
                "message": "may not be empty"}
    return None


def _reward() -> dict[str, Any]:
    link = LINK_BASE + secrets.token_urlsafe(12)
    code = secrets.token_hex(6).upper()
    return {
        "credentials": {"Redemption URL": link, "Claim Code": code},
        "credentialList": [
            {"label": "Redemption URL", "value": link, "type": "url",
             "credentialType": "redemptionUrl"},
            {"label": "Claim Code", "value": code, "type": "text", "credentialType": "claimCode"},
        ],
        "redemptionInstructions": "Visit the redemption URL to claim your card.",
    }


def _new_order(number: int, body: dict[str, Any], amount: Decimal) -> dict[str, Any]:
    item = _ITEMS[body["utid"]]
    pending = body["utid"] == PENDING_UTID
    order: dict[str, Any] = {
        "referenceOrderID": f"RA{time.strftime('%y%m%d', time.gmtime())}-{number:06d}-01",
        "externalRefID": body.get("externalRefID"),
        "customerIdentifier": body["customerIdentifier"],
        "accountIdentifier": body["accountIdentifier"],
        "utid": body["utid"],
        "rewardName": item["rewardName"],
        "amountCharged": {"value": float(amount), "currencyCode": item["currencyCode"],
                          "total": float(amount)},
        "denomination": {"value": float(amount), "currencyCode": item["currencyCode"]},
        "sender": {"firstName": "", "lastName": "", "email": ""},
        "recipient": dict(body["recipient"]),
        "emailSubject": str(body.get("emailSubject") or ""),
        "message": str(body.get("message") or ""),
        "campaign": str(body.get("campaign") or ""),
        "sendEmail": bool(body.get("sendEmail", True)),
        "status": "PENDING" if pending else "COMPLETE",
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
    if not pending:
        order["reward"] = _reward()
    return order


def _orphan_body(external_id: str, amount: str, utid: str, email: str) -> dict[str, Any]:
    return {"externalRefID": external_id, "customerIdentifier": CUSTOMER,
            "accountIdentifier": ACCOUNT, "utid": utid, "amount": amount,
            "recipient": {"firstName": "Not", "lastName": "Ours", "email": email}}


@functools.lru_cache(maxsize=4096)
def _moment(text: str, *, end: bool) -> datetime:
    """An RFC 3339 date or date-time; a bare date is its first (or, for ``end``, its last)
    instant."""
    if len(text) == 10:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + timedelta(days=1, microseconds=-1) if end else day
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _list_item(order: dict[str, Any]) -> dict[str, Any]:
    """An order as ``GET /orders`` lists it (swagger OrderListItemView): no ``reward``, so no
    credentials; ``GET /orders/{referenceOrderID}`` has them."""
    item = {k: copy.deepcopy(v) for k, v in order.items() if k != "reward"}
    item.setdefault("accountNumber", "A00000001")
    return item


GARBAGE = b'{"referenceOrderID": "RA<html>502 Bad Gateway</html>'

Handler = Callable[[Request], Awaitable[Response]]


def create_app(state: TangoState | None = None, *, platform_key: str = "standin-key",
               platform_name: str = PLATFORM_NAME) -> Starlette:
    """The stand-in app; ``app.state.tango`` is the ``TangoState``.

    API under ``/raas/v2``: ``POST /orders``, ``GET /orders`` (``externalRefID``,
    ``startDate``, ``endDate``, ``elementsPerBlock``, ``page``),
    ``GET /orders/{referenceOrderID}``, ``GET /catalogs``, ``GET /accounts/{identifier}``.

    Admin under ``/_standin`` (no auth, JSON bodies, loopback use only):
    ``GET /orders`` (orders, received POSTs, counts per externalRefID, balance, catalog calls);
    ``POST /reset``; ``POST /balance {"amount"}``;
    ``POST /faults {"status", "count" (null: until cleared), "retry_after", "method", "path"}``;
    ``POST /faults/clear``; ``POST /process_then_fail {"status", "count"}``;
    ``POST /delay {"seconds"}``; ``POST /rate_limit {"per_second" (null: off), "retry_after"}``;
    ``POST /lose {"count", "mode": "drop"|"hang", "hang_seconds"}``; ``POST /garbage {"count"}``;
    ``POST /orders/{ref}/approve``; ``POST /orders/{ref}/status {"status"}``;
    ``POST /in_process {"count"}`` (409 ``409.002``);
    ``POST /switches {"repeat_conflict", "empty_lookup_404"}``;
    ``POST /inject {"kind": "orphan"|"duplicate"|"mismatch", "external_id", "count",
    "created_at", "field"}`` (see ``TangoState.inject``).
    """
    st = state if state is not None else TangoState()
    expected = b"Basic " + base64.b64encode(f"{platform_name}:{platform_key}".encode())

    def api(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            path = request.url.path.removeprefix(API_PREFIX) or "/"
            full = request.url.path
            is_create = request.method == "POST" and path.rstrip("/") == "/orders"
            external_id = (await _json_object(request)).get("externalRefID") if is_create \
                else None
            await apply_delay(st)
            fault = st._take_fault(request.method, path)
            if fault is not None:
                if is_create:
                    st._record(external_id, created=False, status=fault.status, outcome="forced")
                headers = retry_after_headers(fault.retry_after)
                return _error(fault.status, full, headers=headers)
            if st._rate_limited():
                if is_create:
                    st._record(external_id, created=False, status=429, outcome="rate_limited")
                return _error(429, full,
                              headers=rate_limit_headers(st))
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                if is_create:
                    st._record(external_id, created=False, status=401, outcome="unauthorized")
                return _error(401, full)
            response = await handler(request)
            if is_create:
                failed = st._take_process_then_fail()
                if failed is not None:
                    return _error(failed, full)
            return spoil(st, response, lose=is_create, garbage=GARBAGE)

        return wrapped

    @api
    async def create_order(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            st._record(None, created=False, status=400, outcome="rejected")
            return _error(400, request.url.path, message="Request body is not valid JSON")
        status, answer, created = st._create(body, request.url.path)
        external_id = body.get("externalRefID") if isinstance(body, dict) else None
        st._record(
            external_id, created=created, status=status,
            outcome="created" if created else ("repeat" if status == 200 else "rejected"),
            order_id=answer.get("referenceOrderID"),
        )
        return JSONResponse(answer, status_code=status)

    @api
    async def list_orders(request: Request) -> Response:
        query = dict(request.query_params)
        status, answer = st.listed(query)
        wanted = query.get("externalRefID")
        with st._lock:
            empty_404 = st.empty_lookup_404
        if status == 200 and not answer["orders"] and wanted is not None and empty_404:
            return _error(404, request.url.path, message=(
                f"No Orders found for External Ref ID: {wanted}"), i18n_key="404.110")
        if status != 200:
            return _error(status, request.url.path, message=answer["message"])
        return JSONResponse(answer)

    @api
    async def get_order(request: Request) -> Response:
        with st._lock:
            order = st.orders.get(request.path_params["ref"])
            order = copy.deepcopy(order) if order is not None else None
        if order is None:
            return _error(404, request.url.path, message="Order not found")
        return JSONResponse(order)

    @api
    async def catalogs(request: Request) -> Response:
        with st._lock:
            st.catalog_calls += 1
        return JSONResponse({"catalogName": "Stand-in catalog",
                             "brands": copy.deepcopy(list(CATALOG))})

    @api
    async def get_account(request: Request) -> Response:
        if request.path_params["ident"] != ACCOUNT:
            return _error(404, request.url.path, message="Account not found")
        with st._lock:
            balance = st.balance
        return JSONResponse({
            "accountIdentifier": ACCOUNT, "customerIdentifier": CUSTOMER,
            "displayName": "Stand-in account", "currencyCode": "USD",
            "currentBalance": float(balance), "status": "ACTIVE",
        })

    # --- admin ----------------------------------------------------------------------------

    async def admin_orders(request: Request) -> Response:
        return JSONResponse(st.snapshot())

    async def admin_balance(request: Request) -> Response:
        body = await _json_object(request)
        amount = _amount(body.get("amount"))
        if amount is None:
            return JSONResponse({"error": "amount (number) is required"}, status_code=400)
        st.set_balance(amount)
        return JSONResponse({"balance": str(amount)})

    async def admin_process_then_fail(request: Request) -> Response:
        body = await _json_object(request)
        st.process_then_fail(int(body.get("status", 503)), int(body.get("count", 1)))
        return JSONResponse({"ok": True})

    async def admin_approve(request: Request) -> Response:
        try:
            order = st.approve(request.path_params["ref"])
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse(order)

    async def admin_status(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("status")
        if not isinstance(status, str):
            return JSONResponse({"error": "status (string) is required"}, status_code=400)
        try:
            order = st.set_status(request.path_params["ref"], status)
        except KeyError:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse(order)

    async def admin_in_process(request: Request) -> Response:
        body = await _json_object(request)
        st.in_process(int(body.get("count", 1)))
        return JSONResponse({"ok": True})

    async def admin_switches(request: Request) -> Response:
        body = await _json_object(request)
        if "repeat_conflict" in body:
            st.set_repeat_conflict(bool(body["repeat_conflict"]))
        if "empty_lookup_404" in body:
            st.set_empty_lookup_404(bool(body["empty_lookup_404"]))
        return JSONResponse({"repeat_conflict": st.repeat_conflict,
                             "empty_lookup_404": st.empty_lookup_404})

    routes = [
        Route(f"{API_PREFIX}/orders", create_order, methods=["POST"]),
        Route(f"{API_PREFIX}/orders", list_orders, methods=["GET"]),
        Route(f"{API_PREFIX}/orders/{{ref}}", get_order, methods=["GET"]),
        Route(f"{API_PREFIX}/catalogs", catalogs, methods=["GET"]),
        Route(f"{API_PREFIX}/accounts/{{ident}}", get_account, methods=["GET"]),
        Route("/_standin/orders", admin_orders, methods=["GET"]),
        Route("/_standin/balance", admin_balance, methods=["POST"]),
        Route("/_standin/process_then_fail", admin_process_then_fail, methods=["POST"]),
        Route("/_standin/orders/{ref}/approve", admin_approve, methods=["POST"]),
        Route("/_standin/orders/{ref}/status", admin_status, methods=["POST"]),
        Route("/_standin/in_process", admin_in_process, methods=["POST"]),
        Route("/_standin/switches", admin_switches, methods=["POST"]),
        Route("/_standin/inject", inject_route(st.inject), methods=["POST"]),
    ]
    routes += fault_admin_routes(st)
    app = Starlette(routes=routes)
    app.state.tango = st
    return app
