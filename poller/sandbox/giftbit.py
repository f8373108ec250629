"""A local stand-in for the Giftbit API (papi v1), speaking its documented shapes.

Serve it with ``ServerThread(create_app(state))`` and point the adapter at
``<url>/papi/v1``. It keeps its own record of every ``POST /campaign`` it received and every
campaign it created, so tests can check "one campaign per id" against the vendor's side.

Built-in behaviours (no setup needed):

* ``Authorization: Bearer <api_key>`` or 401 (the reference's ``ERROR_UNAUTHORIZED`` body);
  answers carry the documented ``info`` codes; a request with ``SIMULATE-RATELIMIT: true``
  is a 429, as on Giftbit's testbed.
* ``POST /campaign`` creates at most one campaign per ``id`` (letters and digits, at most 40:
  the limit the adapter assumes). What Giftbit answers to a repeated id is unconfirmed, so
  ``repeat_mode`` picks it: ``"error"`` (default) a 422 ``ERROR_DUPLICATE_CAMPAIGN_ID``,
  ``"replay"`` a 200 with the first campaign. Either way nothing new is created.
* Campaign status is one of Giftbit's three: a funded create answers ``API_CREATING`` (info
  ``INFO_CAMPAIGN_CREATED``) and the campaign is ``CAMPAIGN_CREATED`` (sent) from then on;
  not enough funds in the brand's currency answers ``AWAITING_FUNDS`` (info
  ``INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED``) and topping the funds up (``set_funds`` /
  ``add_funds``) sends the waiting campaigns that now fit, oldest first. Brand ``PENDING``
  stays ``API_CREATING`` until ``approve``.
* ``GET /gifts`` lists gifts newest first (``campaign_id``, ``campaign_uuid``,
  ``delivery_status``, ``status``, ``created_date_greater_than``/``_less_than`` filters,
  ``limit`` default 20, ``offset``; dates are Pacific time, as Giftbit's): one per contact,
  made when the campaign is sent, with ``delivery_status`` ``DELIVERED``; an address ending in
  ``@bounce.example`` is ``UNDELIVERABLE``; ``set_delivery`` changes it.
* Brands (``BRANDS``, Giftbit's brand fields): ``amazonus`` (USD, variable 5 to 500),
  ``starbucksus`` (USD, fixed 5, 10 or 25), ``amazonca`` (CAD), ``PENDING`` (USD) and
  ``soldoutus`` (USD, variable 5 to 500: listed, yet every campaign for it is a 422
  ``ERROR_CAMPAIGN_INVALID_BRAND``, as for a brand Giftbit cannot supply just now). Any other
  code (``UNAVAILABLE`` for instance) or a price the brand does not allow is a 422
  ``ERROR_CAMPAIGN_INVALID_BRAND``; ``GET /brands/{code}`` of an unknown code is a 422
  ``ERROR_BRANDS_NO_SUCH_BRAND``.
* A contact email ending in ``@invalid.example`` (or without ``@``) cannot be added: with no
  contact left the answer is a 422 ``ERROR_CAMPAIGN_NO_CONTACTS`` carrying the campaign
  object (as in recorded traffic), and no campaign is made.

Fault knobs, from Python (``GiftbitState`` methods) or over HTTP (``/_standin/...``, see
``create_app``): forced statuses, a delay, a rate limit, lost answers (drop or hang after
the campaign was created), garbage answers, ``repeat_mode``. ``reset`` puts everything back.
"""

from __future__ import annotations

import copy
import functools
import hmac
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

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

API_PREFIX = "/papi/v1"
PENDING_BRAND = "PENDING"
SOLD_OUT_BRAND = "soldoutus"
INVALID_RECIPIENT_DOMAIN = "@invalid.example"
DEFAULT_FUNDS: dict[str, int] = {"USD": 1_000_000, "CAD": 1_000_000}
BOUNCE_DOMAIN = "@bounce.example"
INVALID_BRAND = "ERROR_CAMPAIGN_INVALID_BRAND"
NO_SUCH_BRAND = "ERROR_BRANDS_NO_SUCH_BRAND"
NO_CONTACTS = "ERROR_CAMPAIGN_NO_CONTACTS"
API_CREATING = "API_CREATING"
AWAITING_FUNDS = "AWAITING_FUNDS"
CAMPAIGN_CREATED = "CAMPAIGN_CREATED"
DUPLICATE_ID = "ERROR_DUPLICATE_CAMPAIGN_ID"
FUNDS_REQUIRED = "INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED"
_CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9]{1,40}$")

RepeatMode = Literal["error", "replay"]

def _brand(code: str, name: str, currency: str, **price: Any) -> dict[str, Any]:
    return {"brand_code": code, "name": name, "image_url": f"https://cdn.invalid/{code}.png",
            "disclaimer": "", "regions": [{"code": currency[:2]}],
            "fund_currencyisocode": currency, "inapp_available": True,
            "variable_price": "allowed_prices_in_cents" not in price, **price}


BRANDS: tuple[dict[str, Any], ...] = (
    _brand("amazonus", "Amazon.com", "USD", min_price_in_cents=500, max_price_in_cents=50_000),
    _brand("starbucksus", "Starbucks", "USD", allowed_prices_in_cents=[500, 1000, 2500]),
    _brand("amazonca", "Amazon.ca", "CAD", min_price_in_cents=500, max_price_in_cents=50_000),
    _brand(PENDING_BRAND, "Waits for approval (stand-in)", "USD", min_price_in_cents=100,
           max_price_in_cents=200_000),
    _brand(SOLD_OUT_BRAND, "Sold out (stand-in)", "USD", min_price_in_cents=500,
           max_price_in_cents=50_000),
)
_BRANDS = {b["brand_code"]: b for b in BRANDS}


BRANDS_INFO = {"code": "INFO_BRANDS_RETRIEVED", "name": "Brand(s) Retrieved",
               "message": "A list of brands or single brand has been retrieved"}


def error_body(status: int, code: str, name: str, message: str) -> dict[str, Any]:
    """Giftbit's documented error shape."""
    return {"error": {"code": code, "name": name, "message": message}, "status": status}


def _error(status: int, code: str, name: str, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, name, message), status_code=status,
                        headers=headers)


class GiftbitState(Faults):
    """Everything the stand-in knows. Thread-safe."""

    def __init__(self, funds: dict[str, int] | None = None) -> None:
        self._lock = threading.RLock()
        self._initial_funds = dict(funds if funds is not None else DEFAULT_FUNDS)
        self.funds = dict(self._initial_funds)
        self.campaigns: dict[str, dict[str, Any]] = {}
        """Campaign id -> the campaign as served."""
        self.received: list[dict[str, Any]] = []
        """One record per ``POST /campaign``: id, created, status, outcome."""
        self.repeat_mode: RepeatMode = "error"
        self._init_faults()
        self.list_requests: list[dict[str, str]] = []
        """The query of every ``GET /gifts`` answered (offset, limit, filters)."""
        self._counter = 0

    def __repr__(self) -> str:
        return f"GiftbitState(campaigns={len(self.campaigns)}, funds={self.funds})"

    # --- knobs --------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.funds = dict(self._initial_funds)
            self.campaigns.clear()
            self.received.clear()
            self.repeat_mode = "error"
            self._reset_faults()
            self.list_requests.clear()
            self._counter = 0

    def set_repeat_mode(self, mode: RepeatMode) -> None:
        with self._lock:
            self.repeat_mode = mode

    def set_funds(self, currency: str, cents: int) -> None:
        """Set the available funds; waiting campaigns that now fit are sent."""
        with self._lock:
            self.funds[currency.upper()] = cents
            self._release()

    def add_funds(self, currency: str, cents: int) -> None:
        with self._lock:
            self.set_funds(currency, self.funds.get(currency.upper(), 0) + cents)

    def approve(self, ident: str) -> dict[str, Any]:
        """Send a waiting campaign now (``CAMPAIGN_CREATED``), whatever the funds."""
        return self.set_status(ident, CAMPAIGN_CREATED)

    def set_status(self, ident: str, status: str) -> dict[str, Any]:
        """Set the campaign's status; ``CAMPAIGN_CREATED`` makes its gifts if it has none."""
        with self._lock:
            campaign = self.campaigns.get(ident)
            if campaign is None:
                raise KeyError(ident)
            campaign["status"] = status
            if status == CAMPAIGN_CREATED:
                self._send(campaign)
            return copy.deepcopy(campaign)

    def set_delivery(self, ident: str, delivery_status: str) -> None:
        """Set the ``delivery_status`` of every gift of a sent campaign."""
        with self._lock:
            campaign = self.campaigns.get(ident)
            if campaign is None or not campaign["_gifts"]:
                raise KeyError(ident)
            for gift in campaign["_gifts"]:
                gift["delivery_status"] = delivery_status

    def gifts(self, ident: str) -> list[dict[str, Any]]:
        with self._lock:
            campaign = self.campaigns.get(ident)
            return copy.deepcopy(campaign["_gifts"]) if campaign is not None else []

    def inject(self, kind: str, *, external_id: str | None = None, count: int = 1,
               created_at: str | None = None, price_in_cents: int = 2500,
               brand_code: str = "amazonus", email: str = "orphan@example.com",
               field: str = "amount") -> list[dict[str, Any]]:
        """Put into the gift list what the books audit must find (none touches the funds):
        ``orphan`` (``count`` sent campaigns placed outside reward-poller, id
        ``external_id`` or one of our keys' shape (``orphan_key``), ``created_at``
        ``yyyy-MM-dd HH:mm:ss`` Pacific,
        default now), ``duplicate`` (a second gift in the campaign ``external_id``, default
        the newest, as if it had been sent twice) or ``mismatch`` (that campaign's gift
        changed in ``field``: ``amount`` +100 cents, ``status`` to GIVER_CANCELLED, or
        ``recipient``). Returns the gifts as listed. KeyError: no such campaign (or none
        sent); ValueError: unknown kind or field."""
        with self._lock:
            if kind == "orphan":
                made = []
                for _ in range(count):
                    self._counter += 1
                    ident = external_id or orphan_key(self._counter)
                    campaign: dict[str, Any] = {
                        "id": ident, "uuid": str(uuid.uuid4()), "status": CAMPAIGN_CREATED,
                        "price_in_cents": price_in_cents, "brand_codes": [brand_code],
                        "contacts": [{"firstname": "Not", "lastname": "Ours",
                                      "email": email}],
                        "subject": None, "message": None,
                        "created_date": created_at or pacific_now(),
                        "_currency": _BRANDS[brand_code]["fund_currencyisocode"]
                        if brand_code in _BRANDS else "USD",
                        "_hold": False, "_gifts": [],
                    }
                    self.campaigns.setdefault(ident, campaign)
                    self._send(campaign)
                    made.append(copy.deepcopy(campaign["_gifts"][-1]))
                return made
            ref: str | None = external_id or next(
                (c["id"] for c in reversed(list(self.campaigns.values())) if c["_gifts"]), None)
            found = self.campaigns.get(ref) if ref is not None else None
            if found is None or not found["_gifts"]:
                raise KeyError(ref)
            gift: dict[str, Any] = found["_gifts"][0]
            if kind == "duplicate":
                twin = copy.deepcopy(gift) | {"uuid": str(uuid.uuid4())}
                if created_at is not None:
                    twin["created_date"] = created_at
                found["_gifts"].append(twin)
                return [copy.deepcopy(twin)]
            if kind == "mismatch":
                if field == "amount":
                    gift["price_in_cents"] += 100
                elif field == "status":
                    gift["status"] = "GIVER_CANCELLED"
                elif field == "recipient":
                    gift["recipient_email"] = "someone-else@example.com"
                else:
                    raise ValueError(f"unknown field {field!r}: amount, status or recipient")
                return [copy.deepcopy(gift)]
            raise ValueError(f"unknown kind {kind!r}: orphan, duplicate or mismatch")

    def listed(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``GET /gifts``: newest first; ``campaign_id``, ``campaign_uuid``,
        ``delivery_status``, ``status``, ``created_date_greater_than`` /
        ``created_date_less_than`` (``yyyy-MM-dd HH:mm:ss`` Pacific), ``limit`` (default
        20), ``offset``."""
        try:
            limit = int(query.get("limit", "20"))
            offset = int(query.get("offset", "0"))
            after = _pacific(query["created_date_greater_than"]) \
                if "created_date_greater_than" in query else None
            before = _pacific(query["created_date_less_than"]) \
                if "created_date_less_than" in query else None
        except ValueError:
            return 422, error_body(422, "ERROR_INVALID_PARAMETER", "Invalid parameter",
                                   "limit, offset or a date is not valid")
        if limit < 1 or offset < 0:
            return 422, error_body(422, "ERROR_INVALID_PARAMETER", "Invalid parameter",
                                   "limit and offset must be positive")
        exact = {k: query[k] for k in ("campaign_id", "campaign_uuid", "delivery_status",
                                       "status") if k in query}
        with self._lock:
            self.list_requests.append(dict(query))
            chosen = [
                g for c in self.campaigns.values() for g in c["_gifts"]
                if all(str(g.get(k)) == v for k, v in exact.items())
                and (after is None or _pacific(g["created_date"]) > after)
                and (before is None or _pacific(g["created_date"]) < before)
            ]
            chosen.sort(key=lambda g: (_pacific(g["created_date"]), g["uuid"]), reverse=True)
            page = [copy.deepcopy(g) for g in chosen[offset:offset + limit]]
        return 200, {"gifts": page, "number_of_results": len(page), "limit": limit,
                     "offset": offset, "total_count": len(chosen),
                     "info": {"code": "INFO_GIFTS", "name": "Gift information retrieved",
                              "message": "Returned gifts matching your search parameters."},
                     "status": 200}

    # --- records ------------------------------------------------------------------------

    def find(self, ident: str) -> dict[str, Any] | None:
        with self._lock:
            campaign = self.campaigns.get(ident)
            return copy.deepcopy(campaign) if campaign is not None else None

    def counts(self) -> dict[str, dict[str, int]]:
        """Per campaign id: ``received`` POST /campaign and campaigns ``created``."""
        with self._lock:
            return tally(self.received, "id")

    def created_for(self, ident: str) -> int:
        return self.counts().get(ident, {}).get("created", 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "campaigns": [copy.deepcopy(c) for c in self.campaigns.values()],
                "received": [dict(r) for r in self.received],
                "counts": self.counts(),
                "funds": dict(self.funds),
                "repeat_mode": self.repeat_mode,
            }

    # --- used by the app ----------------------------------------------------------------

    def _release(self) -> None:
        for campaign in self.campaigns.values():
            if campaign["status"] != "AWAITING_FUNDS" or campaign.get("_hold"):
                continue
            currency = campaign["_currency"]
            if self.funds.get(currency, 0) >= campaign["price_in_cents"]:
                self.funds[currency] -= campaign["price_in_cents"]
                campaign["status"] = CAMPAIGN_CREATED
                self._send(campaign)

    def _send(self, campaign: dict[str, Any]) -> None:
        """Giftbit emails the campaign: one gift per contact."""
        if campaign["_gifts"]:
            return
        for contact in campaign["contacts"]:
            email = str(contact.get("email", ""))
            campaign["_gifts"].append({
                "uuid": str(uuid.uuid4()),
                "campaign_uuid": campaign["uuid"],
                "campaign_id": campaign["id"],
                "recipient_email": email,
                "price_in_cents": campaign["price_in_cents"],
                "brand_code": campaign["brand_codes"][0],
                "delivery_status": "UNDELIVERABLE" if email.lower().endswith(BOUNCE_DOMAIN)
                else "DELIVERED",
                "status": "SENT_AND_REDEEMABLE",
                "created_date": campaign["created_date"],
            })

    def _record(self, ident: Any, *, created: bool, status: int, outcome: str) -> None:
        with self._lock:
            self.received.append({
                "id": ident if isinstance(ident, str) else None, "created": created,
                "status": status, "outcome": outcome, "at": time.time(),
            })

    def _create(self, body: Any) -> tuple[int, dict[str, Any], str]:
        """Validate and create (or find) a campaign: (status, response body, outcome), the
        outcome being ``created``, ``repeat`` or ``rejected``."""
        if not isinstance(body, dict):
            return 400, error_body(400, "ERROR_INVALID_REQUEST", "Invalid request",
                                   "The body must be a JSON object"), "rejected"
        ident = body.get("id")
        with self._lock:
            if not isinstance(ident, str) or not _CAMPAIGN_ID.fullmatch(ident):
                return 422, error_body(422, "ERROR_INVALID_CAMPAIGN_ID", "Invalid campaign id",
                                       "id is required: letters and digits, at most 40"), "rejected"
            if ident in self.campaigns:
                if self.repeat_mode == "replay":
                    return 200, {"campaign": _public(self.campaigns[ident]),
                                 "info": {"code": "INFO_CAMPAIGN_EXISTS",
                                          "name": "Campaign exists",
                                          "message": "A campaign with this id exists"},
                                 "status": 200}, "repeat"
                return 422, error_body(422, DUPLICATE_ID, "Duplicate campaign id",
                                       f"A campaign with id {ident} already exists"), "repeat"
            problem = _validate(body)
            if problem is not None:
                return 422, problem, "rejected"
            brand = _BRANDS[body["brand_codes"][0]]
            price = body["price_in_cents"]
            currency = brand["fund_currencyisocode"]
            funded = brand["brand_code"] != PENDING_BRAND and self.funds.get(currency, 0) >= price
            if funded:
                self.funds[currency] -= price
            held = brand["brand_code"] == PENDING_BRAND
            campaign = {
                "id": ident,
                "uuid": str(uuid.uuid4()),
                "status": API_CREATING if held else AWAITING_FUNDS,
                "price_in_cents": price,
                "brand_codes": list(body["brand_codes"]),
                "contacts": copy.deepcopy(body["contacts"]),
                "subject": body.get("subject"),
                "message": body.get("message"),
                "created_date": pacific_now(),
                "_currency": currency,
                "_hold": held,
                "_gifts": [],
            }
            self.campaigns[ident] = campaign
            answer = _public(campaign)
            answer["contacts_success_count"] = len(body["contacts"])
            answer["contacts_failure_count"] = 0
            if funded:
                # The usual answer to a funded create; Giftbit sends it right after.
                answer["status"] = API_CREATING
                self._send(campaign)
                campaign["status"] = CAMPAIGN_CREATED
            info = ({"code": "INFO_CAMPAIGN_CREATED", "name": "Campaign created",
                     "message": "The campaign was created"} if funded or held else
                    {"code": FUNDS_REQUIRED, "name": "Campaign created, funds required",
                     "message": "The campaign was created and will be sent once funded"})
            log.debug("standin.campaign.created", id=ident, status=campaign["status"])
            return 200, {"campaign": answer, "info": info, "status": 200}, "created"


PACIFIC = ZoneInfo("America/Los_Angeles")


def pacific_now() -> str:
    """Now as Giftbit writes dates: Pacific time, ``yyyy-MM-dd HH:mm:ss``."""
    return datetime.now(PACIFIC).strftime("%Y-%m-%d %H:%M:%S")


@functools.lru_cache(maxsize=4096)
def _pacific(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=PACIFIC)


def _public(campaign: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in campaign.items() if not k.startswith("_")}


def _validate(body: dict[str, Any]) -> dict[str, Any] | None:
    codes = body.get("brand_codes")
    price = body.get("price_in_cents")
    brand = _BRANDS.get(codes[0]) if isinstance(codes, list) and len(codes) == 1 \
        and isinstance(codes[0], str) else None
    if (
        brand is None or not isinstance(price, int) or isinstance(price, bool)
        or not _price_allowed(brand, price) or brand["brand_code"] == SOLD_OUT_BRAND
    ):
        return error_body(422, INVALID_BRAND, "Invalid brand",
                          "The brand or price is not available for this campaign")
    contacts = body.get("contacts")
    contact = contacts[0] if isinstance(contacts, list) and len(contacts) == 1 else None
    email = contact.get("email") if isinstance(contact, dict) else None
    if (
        not isinstance(email, str) or "@" not in email
        or email.lower().endswith(INVALID_RECIPIENT_DOMAIN)
    ):
        # The contact is not added; with none left there is no campaign to send.
        return {**error_body(422, NO_CONTACTS, "No contacts",
                             "The campaign has no contacts that could be added"),
                "campaign": {"id": body.get("id"), "contacts_success_count": 0,
                             "contacts_failure_count": 1,
                             "contacts": [{"email": email, "added_successfully": False}]}}
    return None


def _price_allowed(brand: dict[str, Any], price: int) -> bool:
    if brand["variable_price"]:
        return bool(brand["min_price_in_cents"] <= price <= brand["max_price_in_cents"])
    return price in brand["allowed_prices_in_cents"]


GARBAGE = b'{"campaign": {"id": "<html>502 Bad Gateway</html>'

Handler = Callable[[Request], Awaitable[Response]]


def create_app(state: GiftbitState | None = None, *, api_key: str = "standin-key") -> Starlette:
    """The stand-in app; ``app.state.giftbit`` is the ``GiftbitState``.

    API under ``/papi/v1``: ``POST /campaign``, ``GET /campaign/{id}``, ``GET /gifts``,
    ``GET /brands``,
    ``GET /brands/{code}``, ``GET /funds``.

    Admin under ``/_standin`` (no auth, JSON bodies, loopback use only):
    ``GET /campaigns`` (campaigns, received POSTs, counts per id, funds); ``POST /reset``;
    ``POST /funds {"currency", "cents"}`` (sends waiting campaigns that now fit);
    ``POST /faults {"status", "count", "retry_after", "method", "path"}``;
    ``POST /faults/clear``; ``POST /delay {"seconds"}``;
    ``POST /rate_limit {"per_second", "retry_after"}``;
    ``POST /lose {"count", "mode", "hang_seconds"}``; ``POST /garbage {"count"}``;
    ``POST /repeat_mode {"mode": "error"|"replay"}``;
    ``POST /campaigns/{id}/approve``; ``POST /campaigns/{id}/status {"status"}``;
    ``POST /campaigns/{id}/delivery {"delivery_status"}``;
    ``POST /inject {"kind": "orphan"|"duplicate"|"mismatch", "external_id", "count",
    "created_at", "field"}`` (see ``GiftbitState.inject``).
    """
    st = state if state is not None else GiftbitState()
    expected = f"Bearer {api_key}".encode()

    def api(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            path = request.url.path.removeprefix(API_PREFIX) or "/"
            is_create = request.method == "POST" and path.rstrip("/") == "/campaign"
            ident = (await _json_object(request)).get("id") if is_create else None
            await apply_delay(st)
            fault = st._take_fault(request.method, path)
            if fault is not None:
                if is_create:
                    st._record(ident, created=False, status=fault.status, outcome="forced")
                headers = retry_after_headers(fault.retry_after)
                return _error(fault.status, f"ERROR_FORCED_{fault.status}", "Forced",
                              f"Forced {fault.status} (stand-in)", headers=headers)
            simulated = request.headers.get("simulate-ratelimit", "").lower() == "true"
            if simulated or st._rate_limited():
                if is_create:
                    st._record(ident, created=False, status=429, outcome="rate_limited")
                return _error(429, "ERROR_RATE_LIMIT", "Rate limit exceeded",
                              "Too many requests", headers=rate_limit_headers(st))
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                if is_create:
                    st._record(ident, created=False, status=401, outcome="unauthorized")
                # The body of the reference's 401 example (GET /ping).
                return _error(401, "ERROR_UNAUTHORIZED", "Unauthorized",
                              "Access Token missing or invalid")
            response = await handler(request)
            return spoil(st, response, lose=is_create, garbage=GARBAGE)

        return wrapped

    @api
    async def create_campaign(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            st._record(None, created=False, status=400, outcome="rejected")
            return _error(400, "ERROR_INVALID_REQUEST", "Invalid request", "Body is not JSON")
        status, answer, outcome = st._create(body)
        st._record(body.get("id") if isinstance(body, dict) else None,
                   created=outcome == "created", status=status, outcome=outcome)
        return JSONResponse(answer, status_code=status)

    @api
    async def get_campaign(request: Request) -> Response:
        campaign = st.find(request.path_params["ident"])
        if campaign is None:
            return _error(404, "ERROR_CAMPAIGN_NOT_FOUND", "Campaign not found",
                          "No campaign with this id")
        return JSONResponse({"campaign": _public(campaign),
                             "info": {"code": "INFO_CAMPAIGN_RETRIEVED",
                                      "name": "Campaign retrieved",
                                      "message": "Campaign retrieved successfully"},
                             "status": 200})

    @api
    async def list_gifts(request: Request) -> Response:
        status, answer = st.listed(dict(request.query_params))
        return JSONResponse(answer, status_code=status)

    @api
    async def list_brands(request: Request) -> Response:
        brands = [dict(b) for b in BRANDS]
        return JSONResponse({"brands": brands, "number_of_results": len(brands),
                             "limit": 500, "offset": 0, "total_count": len(brands),
                             "info": BRANDS_INFO, "status": 200})

    @api
    async def get_brand(request: Request) -> Response:
        brand = _BRANDS.get(request.path_params["code"])
        if brand is None:
            return _error(422, NO_SUCH_BRAND, "No brand found", "No brand found matching that code")
        return JSONResponse({"brand": dict(brand), "info": BRANDS_INFO, "status": 200})

    @api
    async def get_funds(request: Request) -> Response:
        with st._lock:
            funds = dict(st.funds)
        return JSONResponse({
            "info": {"code": "INFO_FUNDS", "name": "Fund information retrieved",
                     "message": "Your current fund information was retrieved."},
            "fundsbycurrency": {
                cur: {"available_in_cents": cents, "pending_in_cents": 0,
                      "reserved_in_cents": 0}
                for cur, cents in funds.items()
            },
            "status": 200,
        })

    # --- admin ----------------------------------------------------------------------------

    async def admin_campaigns(request: Request) -> Response:
        return JSONResponse(st.snapshot())

    async def admin_funds(request: Request) -> Response:
        body = await _json_object(request)
        cents = body.get("cents")
        if not isinstance(cents, int):
            return JSONResponse({"error": "cents (integer) is required"}, status_code=400)
        st.set_funds(str(body.get("currency", "USD")), cents)
        return JSONResponse({"funds": st.snapshot()["funds"]})

    async def admin_repeat_mode(request: Request) -> Response:
        body = await _json_object(request)
        mode = body.get("mode")
        if mode not in ("error", "replay"):
            return JSONResponse({"error": "mode is error or replay"}, status_code=400)
        st.set_repeat_mode(mode)
        return JSONResponse({"ok": True})

    async def admin_approve(request: Request) -> Response:
        try:
            campaign = st.approve(request.path_params["ident"])
        except KeyError:
            return JSONResponse({"error": "no such campaign"}, status_code=404)
        return JSONResponse({"campaign": _public(campaign)})

    async def admin_status(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("status")
        if not isinstance(status, str):
            return JSONResponse({"error": "status (string) is required"}, status_code=400)
        try:
            campaign = st.set_status(request.path_params["ident"], status)
        except KeyError:
            return JSONResponse({"error": "no such campaign"}, status_code=404)
        return JSONResponse({"campaign": _public(campaign)})

    async def admin_delivery(request: Request) -> Response:
        body = await _json_object(request)
        status = body.get("delivery_status")
        if not isinstance(status, str):
            return JSONResponse({"error": "delivery_status (string) is required"},
                                status_code=400)
        try:
            st.set_delivery(request.path_params["ident"], status)
        except KeyError:
            return JSONResponse({"error": "no such sent campaign"}, status_code=404)
        return JSONResponse({"gifts": st.gifts(request.path_params["ident"])})

    routes = [
        Route(f"{API_PREFIX}/campaign", create_campaign, methods=["POST"]),
        Route(f"{API_PREFIX}/campaign/{{ident}}", get_campaign, methods=["GET"]),
        Route(f"{API_PREFIX}/gifts", list_gifts, methods=["GET"]),
        Route(f"{API_PREFIX}/brands", list_brands, methods=["GET"]),
        Route(f"{API_PREFIX}/brands/{{code}}", get_brand, methods=["GET"]),
        Route(f"{API_PREFIX}/funds", get_funds, methods=["GET"]),
        Route("/_standin/campaigns", admin_campaigns, methods=["GET"]),
        Route("/_standin/funds", admin_funds, methods=["POST"]),
        Route("/_standin/repeat_mode", admin_repeat_mode, methods=["POST"]),
        Route("/_standin/campaigns/{ident}/approve", admin_approve, methods=["POST"]),
        Route("/_standin/campaigns/{ident}/status", admin_status, methods=["POST"]),
        Route("/_standin/campaigns/{ident}/delivery", admin_delivery, methods=["POST"]),
        Route("/_standin/inject", inject_route(st.inject), methods=["POST"]),
    ]
    routes += fault_admin_routes(st)
    app = Starlette(routes=routes)
    app.state.giftbit = st
    return app
