"""Giftbit (papi v1): campaigns that Giftbit emails to the recipient.

What Giftbit's documentation and recorded traffic say (docs/vendors.md, with sources) and
what this module assumes on top of it:

* ``Authorization: Bearer <token>``. Only HTTP 200 is success; any other 2xx on a create is
  read as "the campaign may or may not exist" (UnknownOutcome, reconciled by id).
* ``POST /campaign`` takes a client-supplied ``id`` and creates at most one campaign per id;
  the same POST may be resent after a timeout or a 5xx. That id is derived from our
  idempotency key (``campaign_id``). What a repeat of a known id answers is *unconfirmed*:
  a 200 with the campaign is taken as is, and an error whose code or message says the id is
  a duplicate / already exists (or a 409) is answered by looking the campaign up by id. The
  limits on ``id`` are *unconfirmed*: this module assumes letters and digits, at most 40
  characters (``MAX_CAMPAIGN_ID``), and maps a longer key (ours are 42) to ``"rp"`` + the
  first 38 hex digits of its SHA-256: stable, so every replay uses the same id, and 152
  bits, so two keys never share one.
* ``GET /campaign/{id}`` finds it; a 404 in Giftbit's error shape means "no such campaign"
  (any other 404 is a wrong ``base_url``, never "no such campaign").
* A campaign's status is one of exactly three: ``API_CREATING`` (being created: pending),
  ``AWAITING_FUNDS`` (created, not sent for lack of funds; info
  ``INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED`` or ``..._FUNDS_PENDING``: pending, and the detail
  tells the operator to top the balance up; Giftbit sends it by itself once funded) and
  ``CAMPAIGN_CREATED`` (sent). Anything else is read as pending (asking again is safe).
* After ``CAMPAIGN_CREATED`` the gift look-up ``GET /gifts?campaign_id=`` tells the rest by
  ``delivery_status``: ``DELIVERED`` is complete; ``UNDELIVERABLE``, ``COMPLAINT`` and
  ``UNSUBSCRIBED`` mean it will not reach the advocate (NEEDS_PERSON, with the masked
  address); ``UNSENT``, ``TEMPORARILY_UNDELIVERABLE`` (and an empty list: the e-mails are on
  their way) are pending. A gift the giver cancelled is FAILED.
* Errors come as ``{"error": {"code", "name", "message"}, "status"}``. 422
  ``ERROR_CAMPAIGN_INVALID_BRAND`` (brand or price not available) is decided by the brand
  (``GET /brands/{code}``): a brand that takes the route's currency and price is
  unavailable (ProductUnavailable: refused by default), an unknown brand or a price or
  currency it does not take is the operator's config (ConfigFixable), and a brand that
  cannot be read decides nothing; 422 ``ERROR_CAMPAIGN_NO_CONTACTS`` (the contact could
  not be added, e.g. an undeliverable address) refuses the redemption as an invalid
  recipient; 402 is a failed credit-card top-up (operator); 429 and 5xx are transient;
  anything else is the operator's.
* ``price_in_cents`` is in the brand's currency; the route's currency and price are compared
  with the brand's (``fund_currencyisocode``, ``allowed_prices_in_cents`` or
  ``min/max_price_in_cents``) by ``check()`` (``reward-poller check`` and the daemon's
  start), not per order.
* Catalog: ``GET /brands/{code}`` (``{"brand": {...}}``; an unknown code is 422
  ``ERROR_BRANDS_NO_SUCH_BRAND``) and ``GET /brands`` (only to suggest a code for a
  mistyped one); balance ``GET /funds`` (``fundsbycurrency``).

Secrets: the API key lives in the client's headers only; vendor texts are scrubbed of the
key and of URLs before they are quoted.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from poller.domain.errors import (
    RECIPIENT_INVALID,
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.ports import ProductCheck, VendorCheck
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors import BuildContext
from poller.vendors.base import (
    bearer_client,
    call,
    http_base_url,
    json_or_none,
    mask_email,
    scrub,
    unavailable_or_config,
)

log = structlog.get_logger(__name__)

NAME = "giftbit"
SANDBOX_URL = "https://api-testbed.giftbit.com/papi/v1"
PRODUCTION_URL = "https://api.giftbit.com/papi/v1"
MAX_CAMPAIGN_ID = 40
INVALID_BRAND = "ERROR_CAMPAIGN_INVALID_BRAND"
NO_SUCH_BRAND = "ERROR_BRANDS_NO_SUCH_BRAND"
NO_CONTACTS = "ERROR_CAMPAIGN_NO_CONTACTS"
FUNDS_REQUIRED = "INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED"
FUNDS_PENDING = "INFO_CAMPAIGN_CREATED_FUNDS_PENDING"
API_CREATING = "API_CREATING"
AWAITING_FUNDS = "AWAITING_FUNDS"
CAMPAIGN_CREATED = "CAMPAIGN_CREATED"

DELIVERED = frozenset({"DELIVERED"})
UNDELIVERABLE = frozenset({"UNDELIVERABLE", "COMPLAINT", "UNSUBSCRIBED"})
"""Final for this recipient: Giftbit will not deliver (or send again) to that address."""
NOT_YET = frozenset({"UNSENT", "TEMPORARILY_UNDELIVERABLE"})

_CAMPAIGN_ID = re.compile(rf"^[A-Za-z0-9]{{1,{MAX_CAMPAIGN_ID}}}$")


class Settings(BaseModel):
    """The ``[vendors.giftbit]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = SANDBOX_URL
    api_key: SecretStr

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_base_url(value)


def build(settings: Settings, context: BuildContext) -> GiftbitVendor:
    return GiftbitVendor(settings.base_url, settings.api_key, policy=context.policy)


def campaign_id(idempotency_key: str) -> str:
    """The Giftbit campaign ``id`` for an idempotency key: the key itself when it fits the
    assumed limits, else a stable hash of it (see the module doc)."""
    if _CAMPAIGN_ID.fullmatch(idempotency_key):
        return idempotency_key
    return "rp" + hashlib.sha256(idempotency_key.encode()).hexdigest()[: MAX_CAMPAIGN_ID - 2]


_DUPLICATE = re.compile(r"duplicate|already[ _-]?(exists|used|taken)|id[ _-]?exists|in use",
                        re.IGNORECASE)
_RECIPIENT = re.compile(r"e-?mail|contact|recipient", re.IGNORECASE)
_FUNDS = re.compile(r"insufficient|\bfunds?\b|balance", re.IGNORECASE)


class GiftbitVendor:
    """The ``Vendor`` (and ``CheckableVendor``) for Giftbit."""

    name = NAME

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        *,
        policy: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._key = key
        self.base_url = base_url.rstrip("/")
        self._policy = policy
        self._sleep = sleep
        self._client = bearer_client(self.base_url, key.get_secret_value(),
                                     timeout=policy.timeout, transport=transport)

    def __repr__(self) -> str:
        return f"GiftbitVendor(base_url={self.base_url!r})"

    # --- the Vendor protocol ---------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderResult:
        if not request.product:
            raise ConfigFixable(
                "Giftbit needs a brand code and the route gives none: set product in the "
                "routing config", vendor=NAME,
            )
        cents = request.amount * 100
        if cents != cents.to_integral_value() or cents <= 0:
            raise ConfigFixable(
                f"Giftbit prices are whole cents; {request.amount} {request.currency} is not",
                vendor=NAME,
            )
        ident = campaign_id(request.idempotency_key)
        first, _, last = (request.recipient_name or "").strip().partition(" ")
        reward = request.reward_name or "reward"
        body = {
            "id": ident,
            "contacts": [{
                "firstname": first or request.recipient_email.partition("@")[0],
                "lastname": last.strip(),
                "email": request.recipient_email,
            }],
            "price_in_cents": int(cents),
            "brand_codes": [request.product],
            "subject": f"Your {reward}",
            "message": f"Thank you for being an advocate! Here is your {reward}.",
        }
        response = self._call("POST", "campaign", creates=True, json=body)
        status = response.status_code
        if status == 200:
            data = json_or_none(response)
            campaign = _campaign_of(data)
            if campaign is None:
                log.warning("vendor.call.outcome_unknown", vendor=NAME, call="POST /campaign",
                            http_status=status, error="200 without a campaign")
                raise UnknownOutcome(
                    "Giftbit answered HTTP 200 to POST /campaign with a body that is not a "
                    "campaign: it may or may not exist", vendor=NAME, status=status,
                )
            if campaign.get("id") not in (None, ident):
                raise UnknownOutcome(
                    "Giftbit answered HTTP 200 to POST /campaign with another campaign id",
                    vendor=NAME, status=status,
                )
            result = self._result(campaign, _info_code(data), ident,
                                  fallback_email=request.recipient_email)
            log.info("vendor.order.placed", vendor=NAME, key=request.idempotency_key,
                     order_id=result.vendor_order_id, status=result.status.value,
                     http_status=status)
            return result
        if 200 < status < 300:
            raise UnknownOutcome(
                f"Giftbit answered HTTP {status} to POST /campaign (only 200 is success): the "
                "campaign may or may not exist", vendor=NAME, status=status,
            )
        if status == 409 or (400 <= status < 500 and _is_duplicate(_error_of(response))):
            # We have used this id before: the campaign is ours (ids derive from our key).
            found = self.lookup(request.idempotency_key)
            if found is not None:
                log.info("vendor.order.repeat", vendor=NAME, key=request.idempotency_key,
                         order_id=found.vendor_order_id, status=found.status.value)
                return found
            raise OperatorFacingError(
                f"Giftbit says campaign id {ident} is taken but does not find it: look at the "
                "account before retrying", vendor=NAME, status=status,
            )
        self._raise_for(response, "POST /campaign", creating=request)

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        ident = campaign_id(idempotency_key)
        response = self._call("GET", f"campaign/{quote(ident, safe='')}")
        status = response.status_code
        if status == 404 and _error_of(response) is not None:
            return None
        if status != 200:
            self._raise_for(response, "GET /campaign/<id>")
        data = json_or_none(response)
        campaign = _campaign_of(data)
        if campaign is None:
            raise TransientVendorError(
                "Giftbit answered HTTP 200 to GET /campaign/<id> with a body that is not a "
                "campaign", vendor=NAME, status=status,
            )
        if campaign.get("id") not in (None, ident):
            raise OperatorFacingError(
                "Giftbit answered the look-up by id with another campaign", vendor=NAME,
                status=status,
            )
        return self._result(campaign, _info_code(data), ident, fallback_email=None)

    def close(self) -> None:
        self._client.close()

    # --- the configuration check -------------------------------------------------------

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        problems: list[str] = []
        credentials_ok = True
        balance: str | None = None
        unchecked = ""
        try:
            funds = self.funds()
            balance = ", ".join(f"{Decimal(c) / 100:,.2f} {cur}" for cur, c in funds.items()) \
                or None
        except VendorError as exc:
            # Rejected or unreachable: either way nothing here proves the key works.
            credentials_ok = False
            problems.append(str(exc))
            unchecked = ("not checked: credentials rejected" if exc.status in (401, 403)
                         else "not checked: Giftbit could not be reached")
        checks: list[ProductCheck] = []
        codes: list[str] | None = None
        for code, amount, currency in products:
            if not credentials_ok:
                checks.append(ProductCheck(product=code, amount=amount, currency=currency,
                                           ok=False, detail=unchecked))
                continue
            try:
                brand = self.brand(code) if code else None
            except VendorError as exc:
                checks.append(ProductCheck(product=code, amount=amount, currency=currency,
                                           ok=False, detail=f"not checked: {exc}"))
                continue
            if brand is None:
                detail = "Giftbit needs a brand code as product"
                if code:
                    if codes is None:
                        codes = self._brand_codes()
                    hint = difflib.get_close_matches(code, codes, n=1)
                    detail = f"no brand {code!r} at Giftbit" + (
                        f" (did you mean {hint[0]}?)" if hint else "")
                checks.append(ProductCheck(product=code, amount=amount, currency=currency,
                                           ok=False, detail=detail))
                continue
            issues = _brand_problems(brand, amount, currency)
            name = brand.get("name") if isinstance(brand.get("name"), str) else code
            checks.append(ProductCheck(product=code, amount=amount, currency=currency,
                                       ok=not issues,
                                       detail="; ".join(issues) if issues else str(name)))
        return VendorCheck(vendor=NAME, credentials_ok=credentials_ok, products=tuple(checks),
                           balance=balance, problems=tuple(problems))

    def funds(self) -> dict[str, int]:
        """Available cents per currency, from ``GET /funds``."""
        response = self._call("GET", "funds")
        if response.status_code != 200:
            self._raise_for(response, "GET /funds")
        funds = _funds_of(json_or_none(response))
        if funds is None:
            raise TransientVendorError(
                "Giftbit answered HTTP 200 to GET /funds without funds", vendor=NAME,
                status=200,
            )
        return funds

    def brand(self, code: str) -> dict[str, Any] | None:
        """The brand, or None when Giftbit has no such brand code (422
        ``ERROR_BRANDS_NO_SUCH_BRAND``)."""
        response = self._call("GET", f"brands/{quote(code, safe='')}")
        if response.status_code == 422 and \
                str((_error_of(response) or {}).get("code")) == NO_SUCH_BRAND:
            return None
        if response.status_code != 200:
            self._raise_for(response, "GET /brands/<code>")
        data = json_or_none(response)
        brand = data.get("brand", data) if isinstance(data, dict) else None
        if not isinstance(brand, dict):
            raise TransientVendorError(
                "Giftbit answered HTTP 200 to GET /brands/<code> without a brand", vendor=NAME,
                status=200,
            )
        return brand

    def _brand_codes(self) -> list[str]:
        """Every brand code (only to suggest one for a typo; failures suggest nothing)."""
        try:
            response = self._call("GET", "brands", params={"limit": 500})
        except VendorError:
            return []
        data = json_or_none(response) if response.status_code == 200 else None
        brands = data.get("brands") if isinstance(data, dict) else None
        if not isinstance(brands, list):
            return []
        return [b["brand_code"] for b in brands
                if isinstance(b, dict) and isinstance(b.get("brand_code"), str)]

    # --- internals ---------------------------------------------------------------------

    def _call(self, method: str, path: str, *, creates: bool = False, **kwargs: Any,
              ) -> httpx.Response:
        return call(self._client, method, path, policy=self._policy, sleep=self._sleep,
                    vendor=NAME, label="Giftbit", where=f"{method} /{path.split('/')[0]}",
                    creates=creates, thing="campaign", **kwargs)

    def _raise_for(self, response: httpx.Response, what: str, *,
                   creating: OrderRequest | None = None) -> NoReturn:
        """``creating``: the order request this answers (a create's 4xx is classified)."""
        status = response.status_code
        error_body = _error_of(response) or {}
        code = str(error_body.get("code", ""))
        said = self._vendor_message(error_body)
        suffix = f": {said}" if said else ""
        error: VendorError
        text = f"{code} {error_body.get('name', '')} {error_body.get('message', '')}"
        if status in (401, 403):
            error = OperatorFacingError(
                f"Giftbit rejected the API key (HTTP {status} to {what}){suffix}",
                vendor=NAME, status=status,
            )
        elif status == 429:
            error = TransientVendorError(
                f"Giftbit rate limit (HTTP 429 to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status >= 500:
            error = TransientVendorError(
                f"Giftbit server error (HTTP {status} to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status == 402:
            error = OperatorFacingError(
                f"Giftbit: payment required (HTTP 402 to {what}: a credit-card top-up failed)"
                f"{suffix}; fund the account", vendor=NAME, status=status,
            )
        elif creating is not None and code == INVALID_BRAND:
            error = self._unavailable_or_config(creating, f"HTTP {status}{suffix}", status)
        elif creating is not None and code == NO_CONTACTS:
            error = AdvocateFacingError(
                f"Giftbit could not add the recipient (HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        elif creating is not None and _FUNDS.search(text):
            error = OperatorFacingError(
                f"Giftbit: not enough funds (HTTP {status}){suffix}; top the account up",
                vendor=NAME, status=status,
            )
        elif creating is not None and status in (400, 422) and _RECIPIENT.search(text):
            error = AdvocateFacingError(
                f"Giftbit: the recipient is invalid (HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        elif status == 404:
            error = OperatorFacingError(
                f"Giftbit answered HTTP 404 to {what}: is base_url right? ({self.base_url})"
                f"{suffix}", vendor=NAME, status=status,
            )
        else:
            error = OperatorFacingError(
                f"Giftbit answered HTTP {status} to {what}, which this adapter cannot act on"
                f"{suffix}", vendor=NAME, status=status,
            )
        log.warning("vendor.call.failed", vendor=NAME, call=what, http_status=status,
                    error_class=type(error).__name__, code=code[:60] or None)
        raise error

    def _unavailable_or_config(self, request: OrderRequest, refusal: str,
                               status: int) -> VendorError:
        """"Brand or price not available": the brand (``GET /brands/{code}``) decides
        whether the brand is unavailable or the routing config is wrong."""
        code = request.product or ""

        def listing() -> list[str] | None:
            brand = self.brand(code)
            return None if brand is None else _brand_problems(brand, request.amount,
                                                              request.currency)

        return unavailable_or_config(
            vendor=NAME, label="Giftbit", product=code, amount=request.amount,
            currency=request.currency, refusal=refusal, status=status, listing=listing,
        )

    def _vendor_message(self, error: Mapping[str, Any]) -> str:
        parts = [str(error[k]) for k in ("code", "message") if isinstance(error.get(k), str)]
        return self._scrub(" ".join(parts))

    def _scrub(self, text: str) -> str:
        """Vendor text made safe to quote: no key, no URL, one line, bounded."""
        return scrub(text, self._key.get_secret_value())

    def _result(self, campaign: Mapping[str, Any], info_code: str | None, ident: str, *,
                fallback_email: str | None) -> OrderResult:
        raw = next((campaign[k] for k in ("status", "campaign_status")
                    if isinstance(campaign.get(k), str)), None)
        status_text = raw.upper() if raw else ""
        uuid = campaign.get("uuid")
        order_id = str(campaign.get("id") or ident)
        detail = f"Giftbit campaign {status_text or '?'}"
        if isinstance(uuid, str):
            detail += f" (uuid {self._scrub(uuid[:64])})"
        email = _first_email(campaign) or fallback_email
        if status_text == AWAITING_FUNDS or info_code in (FUNDS_REQUIRED, FUNDS_PENDING):
            # The operator's problem, not the advocate's: the campaign exists and Giftbit
            # sends it by itself once the balance covers it. Re-checked on later cycles.
            log.warning("vendor.order.awaiting_funds", vendor=NAME, order_id=order_id,
                        info=info_code)
            waiting = ("a payment has not cleared yet" if info_code == FUNDS_PENDING
                       else "the Giftbit balance needs a top-up")
            return OrderResult(
                vendor_order_id=order_id, status=OrderStatus.PENDING,
                delivery="waiting for funds at Giftbit",
                detail=f"{detail}: {waiting}; Giftbit sends it once funded",
            )
        if status_text == CAMPAIGN_CREATED:
            return self._gifts_result(ident, order_id, detail, email)
        if status_text != API_CREATING:
            log.warning("vendor.order.unknown_status", vendor=NAME, order_id=order_id,
                        status=status_text[:40] or None)
        return OrderResult(vendor_order_id=order_id, status=OrderStatus.PENDING,
                           delivery="being created at Giftbit", detail=detail)

    def _gifts_result(self, ident: str, order_id: str, detail: str, email: str | None,
                      ) -> OrderResult:
        """A sent campaign: its gift's ``delivery_status`` says whether it arrived."""
        response = self._call("GET", "gifts", params={"campaign_id": ident})
        if response.status_code != 200:
            self._raise_for(response, "GET /gifts?campaign_id=")
        data = json_or_none(response)
        listed = data.get("gifts") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise TransientVendorError(
                "Giftbit answered HTTP 200 to GET /gifts?campaign_id= without a list of gifts",
                vendor=NAME, status=200,
            )
        gifts = [g for g in listed if isinstance(g, dict)
                 and g.get("campaign_id") in (None, ident)]
        if not gifts:
            return OrderResult(vendor_order_id=order_id, status=OrderStatus.PENDING,
                               delivery="being sent by Giftbit",
                               detail=f"{detail}, no gift listed yet")
        states = [str(g.get("delivery_status", "")).upper() for g in gifts]
        gift_states = {str(g.get("status", "")).upper() for g in gifts}
        address = next((g["recipient_email"] for g in gifts
                        if isinstance(g.get("recipient_email"), str)), None) or email
        masked = mask_email(address) if address else "the recipient's address"
        detail = f"{detail}, gift delivery {', '.join(s or '?' for s in states)}"
        bad = next((s for s in states if s in UNDELIVERABLE), None)
        if bad is not None:
            why = {"UNDELIVERABLE": "the address does not exist",
                   "COMPLAINT": "the recipient marked Giftbit's e-mail as spam",
                   "UNSUBSCRIBED": "the recipient unsubscribed from Giftbit's e-mails"}[bad]
            log.error("vendor.delivery.failed", vendor=NAME, order_id=order_id, delivery=bad)
            return OrderResult(
                vendor_order_id=order_id, status=OrderStatus.NEEDS_PERSON,
                delivery="not delivered",
                detail=f"Giftbit could not deliver the gift to {masked}: {why} "
                       f"({bad}); send it another way or cancel it at Giftbit",
            )
        if "GIVER_CANCELLED" in gift_states:
            return OrderResult(vendor_order_id=order_id, status=OrderStatus.FAILED,
                               delivery="cancelled", detail=f"{detail}, gift cancelled")
        if states and all(s in DELIVERED for s in states):
            delivery = f"sent by email to {mask_email(address)}" if address else "sent by email"
            return OrderResult(vendor_order_id=order_id, status=OrderStatus.COMPLETE,
                               delivery=delivery, detail=detail)
        unknown = [s for s in states if s not in NOT_YET]
        if unknown:
            log.warning("vendor.order.unknown_status", vendor=NAME, order_id=order_id,
                        delivery=unknown[0][:40])
        return OrderResult(vendor_order_id=order_id, status=OrderStatus.PENDING,
                           delivery="being sent by Giftbit", detail=detail)


# --- reading Giftbit's answers --------------------------------------------------------------


def _campaign_of(data: Any) -> dict[str, Any] | None:
    campaign = data.get("campaign") if isinstance(data, dict) else None
    return campaign if isinstance(campaign, dict) else None


def _info_code(data: Any) -> str | None:
    info = data.get("info") if isinstance(data, dict) else None
    code = info.get("code") if isinstance(info, dict) else None
    return code if isinstance(code, str) else None


def _first_email(campaign: Mapping[str, Any]) -> str | None:
    contacts = campaign.get("contacts")
    if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
        email = contacts[0].get("email")
        return email if isinstance(email, str) else None
    return None


def _error_of(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of a Giftbit error body (None when the body is not one)."""
    data = json_or_none(response)
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None


def _is_duplicate(error: Mapping[str, Any] | None) -> bool:
    if not error:
        return False
    text = " ".join(str(error.get(k, "")) for k in ("code", "name", "message"))
    return bool(_DUPLICATE.search(text))


def _funds_of(data: Any) -> dict[str, int] | None:
    """``{"USD": 125000}`` from ``GET /funds``: ``fundsbycurrency`` maps each currency to
    ``{"available_in_cents", "pending_in_cents", "reserved_in_cents"}`` (a list of
    ``{"currency", "available_in_cents"}`` is tolerated too)."""
    if not isinstance(data, dict):
        return None
    by = next((data[k] for k in ("fundsbycurrency", "funds_by_currency", "funds")
               if k in data), None)
    found: dict[str, int] = {}
    if isinstance(by, dict):
        for currency, value in by.items():
            cents = value.get("available_in_cents") if isinstance(value, dict) else value
            if isinstance(cents, int) and not isinstance(cents, bool):
                found[str(currency).upper()] = cents
    elif isinstance(by, list):
        for value in by:
            if isinstance(value, dict) and isinstance(value.get("available_in_cents"), int):
                found[str(value.get("currency") or value.get("currencyisocode") or "?")
                      .upper()] = value["available_in_cents"]
    else:
        return None
    return found


def _brand_problems(brand: Mapping[str, Any], amount: Decimal, currency: str) -> list[str]:
    """What keeps ``amount`` ``currency`` from being ordered from this brand, read from
    Giftbit's brand fields: ``fund_currencyisocode``; ``variable_price`` true with
    ``min_price_in_cents``/``max_price_in_cents``, or false with ``allowed_prices_in_cents``."""
    problems: list[str] = []
    brand_currency = next((brand[k] for k in ("fund_currencyisocode", "currencyisocode")
                           if isinstance(brand.get(k), str)), None)
    if brand_currency and brand_currency.upper() != currency.upper():
        problems.append(f"the brand is priced in {brand_currency}, the route says {currency}")
    cents = amount * 100
    fixed = brand.get("allowed_prices_in_cents")
    if brand.get("variable_price") is False or (isinstance(fixed, list)
                                                  and brand.get("variable_price") is not True):
        allowed = [c for c in fixed if isinstance(c, int)] if isinstance(fixed, list) else []
        if cents not in allowed:
            listed = ", ".join(f"{Decimal(c) / 100:.2f}" for c in allowed) or "none listed"
            problems.append(f"{amount:.2f} is not one of the brand's prices ({listed})")
        return problems
    low, high = brand.get("min_price_in_cents"), brand.get("max_price_in_cents")
    if isinstance(low, int) and cents < low:
        problems.append(f"{amount:.2f} is below the brand's minimum of {Decimal(low) / 100:.2f}")
    if isinstance(high, int) and cents > high:
        problems.append(f"{amount:.2f} is above the brand's maximum of {Decimal(high) / 100:.2f}")
    return problems
