"""Tango Card RaaS v2.

What Tango documents (docs/vendors.md, with sources: Tango's official client and
developers.tangocard.com) and what this module assumes on top of it:

* HTTP Basic auth with the platform name and key.
* ``POST /orders`` is idempotent on ``externalRefID`` (alphanumeric, at most 100 characters,
  per account): a new order answers 201, a repeat 200 with the first order. Any 2xx that
  carries an order is success. There is no idempotency promise beyond 90 days; the worker
  re-asks pending orders long before that.
* 409 ``409.002``: the same externalRefID is still being processed: wait at least 2 s and
  send the identical request again (``IN_PROCESS_WAIT``, up to ``IN_PROCESS_RETRIES`` times
  in one call, then transient). 409 ``409.024``: an order with this externalRefID exists:
  look it up.
* ``GET /orders?externalRefID=`` finds the order by our key (``{"orders": [...], "page"}``).
  This module trusts only entries whose ``externalRefID`` is our key, so a server that
  ignored the filter cannot make it pick someone else's order. An empty list, or a 404
  carrying ``404.110`` ("no orders found for this External Ref ID"), means "no such
  order"; any other 404 is a wrong ``base_url`` (held for a person), never "not found".
* Order states: ``COMPLETE``; ``PENDING`` (review, up to 2 to 3 business days: re-checked);
  ``PARTIAL`` (not all of it was issued: NEEDS_PERSON with the reason); ``FAILED`` (the
  account is refunded).
* Errors come as ``{"timestamp", "requestId", "path", "httpCode", "httpPhrase", "message",
  "i18nKey", "errors": [{"path", "i18nKey", "message", ...}], "code"}``; ``i18nKey`` is the
  error's id (at the top level and per field; field errors come as HTTP 400). By key:
  ``402.001`` not enough funds (the operator tops up; retried); ``403.016`` (fraud velocity
  flag) and ``403.007`` (customer not authorised) are the operator's and not always a bad
  key; ``422.024``, ``422.025``-``.027``, ``422.030``, ``422.097``-``.099`` (UTID, amount,
  inactive item) are decided by the (cached) catalog: an item it lists with the route's
  currency and value is unavailable (ProductUnavailable: refused by default), an unknown
  UTID or an amount or currency the item does not take is the operator's config
  (ConfigFixable), and a catalog that cannot be read decides nothing; ``422.009``,
  ``422.028``,
  ``422.029``, ``422.134`` (the recipient) refuse the redemption. A 4xx without a known key
  is read from its field paths, leaning towards the operator.
* 5xx "may occasionally process": the request is replayed with the same ``externalRefID``
  (inside the call by the shared retry loop, then on later cycles), which cannot create a
  second order.
* One request per second on every endpoint (orders, look-ups, catalog): this adapter spaces
  all of its requests (retries included) at least ``min_order_interval`` apart.
* ``GET /catalogs`` should be called about twice a day, not per order: the catalog is kept
  in ``context.cache`` (the ledger) for ``CATALOG_TTL`` so ``--run-once`` from a timer does
  not fetch it each run. It is read for ``check()`` and, when already cached, to hold a
  route whose currency does not match the item before anything is sent.
* ``GET /accounts/{accountIdentifier}`` (balance, currency) is used by ``check()`` only
  (field names ``currentBalance``/``currencyCode`` unconfirmed).
* The reward link is the ``credentialList`` entry of ``type`` ``url`` (or a
  ``redemptionUrl``); claim codes and PINs are never read into anything.

Secrets: the platform key lives in the client's auth only, reward links only in
``OrderResult.link``; vendor texts are scrubbed of the key and of URLs before they are
quoted in an exception or a log line.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

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
from poller.ports import Cache, ProductCheck, VendorCheck
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors import BuildContext
from poller.vendors.base import (
    USER_AGENT,
    WitnessClient,
    call,
    http_base_url,
    json_or_none,
    mask_email,
    obj,
    scrub,
    unavailable_or_config,
)

log = structlog.get_logger(__name__)

NAME = "tango"
SANDBOX_URL = "https://integration-api.tangocard.com/raas/v2"
PRODUCTION_URL = "https://api.tangocard.com/raas/v2"
CATALOG_TTL = timedelta(hours=12)
"""Tango asks for about two catalog calls a day."""
MIN_ORDER_INTERVAL = 1.0
"""Seconds between two requests of any kind (Tango: 1 request/s on every endpoint)."""
IN_PROCESS_WAIT = 2.0
"""Tango: after ``409.002`` wait at least 2 s before sending the same externalRefID."""
IN_PROCESS_RETRIES = 2

CONFIG_KEYS = frozenset({"422.024", "422.025", "422.026", "422.027", "422.030", "422.097",
                         "422.098", "422.099"})
"""UTID, amount and inactive-item errors: the operator's routing config."""
RECIPIENT_KEYS = frozenset({"422.009", "422.028", "422.029", "422.134"})
"""Errors about the recipient: refuse (the advocate's address)."""
FUNDS_KEY = "402.001"
IN_PROCESS_KEY = "409.002"
EXISTS_KEY = "409.024"
NO_ORDERS_KEY = "404.110"
_EXTERNAL_REF = re.compile(r"^[A-Za-z0-9]{1,100}$")


class Settings(BaseModel):
    """The ``[vendors.tango]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = SANDBOX_URL
    platform_name: str = Field(min_length=1)
    platform_key: SecretStr
    customer_identifier: str = Field(min_length=1)
    account_identifier: str = Field(min_length=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_base_url(value)


def build(settings: Settings, context: BuildContext) -> TangoVendor:
    return TangoVendor(
        settings.base_url,
        settings.platform_name,
        settings.platform_key,
        settings.customer_identifier,
        settings.account_identifier,
        policy=context.policy,
        cache=context.cache,
    )


# Order states (docs/vendors.md: PENDING is a review of up to 2-3 business days). An unknown
# state is read as PENDING: asking again later is safe, a wrong final answer is not.
_ORDER_STATUS: Mapping[str, OrderStatus] = {
    "COMPLETE": OrderStatus.COMPLETE,
    "COMPLETED": OrderStatus.COMPLETE,
    "PENDING": OrderStatus.PENDING,
    "PARTIAL": OrderStatus.NEEDS_PERSON,
    "FAILED": OrderStatus.FAILED,
    "CANCELED": OrderStatus.FAILED,
    "CANCELLED": OrderStatus.FAILED,
}


class _Throttle:
    """At most one call per ``interval`` seconds, across threads."""

    def __init__(self, interval: float, sleep: Callable[[float], None],
                 monotonic: Callable[[], float]) -> None:
        self._interval = interval
        self._sleep = sleep
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: float | None = None

    def wait(self) -> None:
        with self._lock:
            now = self._monotonic()
            if self._last is not None:
                gap = self._last + self._interval - now
                if gap > 0:
                    self._sleep(gap)
                    now += gap
            self._last = now


class _Client(WitnessClient):
    """Remembers the transport error of every attempt (see the Tremendous adapter: a first
    attempt that timed out after sending must not look like "nothing was sent" because the
    last one was refused), and spaces every request by the throttle (Tango's limit covers
    every endpoint)."""

    def __init__(self, *, throttle: _Throttle, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._throttle = throttle

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self._throttle.wait()
        return super().send(request, **kwargs)


class TangoVendor:
    """The ``Vendor`` (and ``CheckableVendor``) for Tango Card RaaS v2."""

    name = NAME

    def __init__(
        self,
        base_url: str,
        platform_name: str,
        platform_key: str | SecretStr,
        customer_identifier: str,
        account_identifier: str,
        *,
        policy: RetryPolicy = RetryPolicy(),
        cache: Cache | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        min_order_interval: float = MIN_ORDER_INTERVAL,
    ) -> None:
        key = platform_key if isinstance(platform_key, SecretStr) else SecretStr(platform_key)
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.platform_name = platform_name
        self.customer_identifier = customer_identifier
        self.account_identifier = account_identifier
        self._policy = policy
        self._cache = cache
        self._sleep = sleep
        self._clock = clock
        self._catalog: tuple[datetime, dict[str, dict[str, Any]]] | None = None
        self._client = _Client(
            base_url=self.base_url + "/",
            auth=httpx.BasicAuth(platform_name, key.get_secret_value()),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=policy.timeout,
            transport=transport,
            throttle=_Throttle(min_order_interval, sleep, monotonic),
        )

    def __repr__(self) -> str:
        return f"TangoVendor(base_url={self.base_url!r}, account={self.account_identifier!r})"

    @property
    def catalog_cache_key(self) -> str:
        """Per host and platform: a sandbox catalog never answers for production."""
        host = urlsplit(self.base_url).netloc
        return f"tango:catalog:{host}:{self.platform_name}:{self.account_identifier}"

    # --- the Vendor protocol ---------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderResult:
        key = request.idempotency_key
        if not request.product:
            raise ConfigFixable(
                "Tango Card needs a UTID and the route gives none: set product in the routing "
                "config", vendor=NAME,
            )
        if not _EXTERNAL_REF.fullmatch(key):
            # Never invent another key: the ledger holds this one.
            raise OperatorFacingError(
                "the idempotency key does not fit Tango's externalRefID (alphanumeric, at most "
                "100 characters)", vendor=NAME,
            )
        self._refuse_wrong_currency(request)
        first, _, last = (request.recipient_name or "").strip().partition(" ")
        recipient: dict[str, str] = {
            "firstName": first or request.recipient_email.partition("@")[0],
            "email": request.recipient_email,
        }
        if last.strip():
            recipient["lastName"] = last.strip()
        body = {
            "customerIdentifier": self.customer_identifier,
            "accountIdentifier": self.account_identifier,
            "utid": request.product,
            "amount": float(request.amount),
            "sendEmail": True,
            "recipient": recipient,
            "externalRefID": key,
        }
        response = self._call("POST", "orders", creates=True, json=body)
        for _ in range(IN_PROCESS_RETRIES):
            if response.status_code != 409 or IN_PROCESS_KEY not in _keys_of(response):
                break
            # Still being processed: the identical request again after >= 2 s.
            log.info("vendor.order.in_process", vendor=NAME, key=key)
            self._sleep(IN_PROCESS_WAIT)
            response = self._call("POST", "orders", creates=True, json=body)
        status = response.status_code
        if status == 409:
            keys = _keys_of(response)
            if IN_PROCESS_KEY in keys:
                raise TransientVendorError(
                    "Tango Card is still processing an order with our externalRefID (409.002); "
                    "the same request is sent again later", vendor=NAME, status=status,
                    retry_after=IN_PROCESS_WAIT,
                )
            found = self.lookup(key)
            if found is not None:
                log.info("vendor.order.repeat", vendor=NAME, key=key,
                         order_id=found.vendor_order_id, http_status=status)
                return found
            raise TransientVendorError(
                f"Tango Card answered HTTP 409 ({', '.join(keys) or 'no key'}) to POST /orders "
                "but the look-up by externalRefID finds no order yet; asking again later",
                vendor=NAME, status=status,
            )
        if 200 <= status < 300:
            order = _order_of(json_or_none(response))
            if order is None:
                log.warning("vendor.call.outcome_unknown", vendor=NAME, call="POST /orders",
                            http_status=status, error="2xx without an order")
                raise UnknownOutcome(
                    f"Tango Card answered HTTP {status} to POST /orders with a body that is not "
                    "an order: the order may or may not exist",
                    vendor=NAME, status=status,
                )
            ref = order.get("externalRefID")
            if isinstance(ref, str) and ref.lower() != key.lower():
                raise UnknownOutcome(
                    f"Tango Card answered HTTP {status} to POST /orders with an order for another "
                    "externalRefID", vendor=NAME, status=status,
                )
            result = self._result(order, fallback_email=request.recipient_email)
            log.info("vendor.order.placed", vendor=NAME, key=key,
                     order_id=result.vendor_order_id, status=result.status.value,
                     http_status=status)
            return result
        self._raise_for(response, "POST /orders", creating=request)

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        response = self._call("GET", "orders", params={"externalRefID": idempotency_key})
        status = response.status_code
        if status == 404 and NO_ORDERS_KEY in _keys_of(response):
            return None  # Tango's own "no orders found for this External Ref ID"
        if not 200 <= status < 300:
            self._raise_for(response, "GET /orders?externalRefID=")
        data = json_or_none(response)
        orders = data.get("orders") if isinstance(data, dict) else data
        if not isinstance(orders, list):
            # A read is safe to repeat: ask again later rather than guess.
            raise TransientVendorError(
                f"Tango Card answered HTTP {status} to GET /orders?externalRefID= without a "
                "list of orders", vendor=NAME, status=status,
            )
        if not orders:
            return None
        mine = [
            order for order in map(_order_of, orders)
            if order is not None and str(order.get("externalRefID", "")).lower()
            == idempotency_key.lower()
        ]
        if not mine:
            raise OperatorFacingError(
                "Tango Card answered the look-up by externalRefID with orders for other "
                "externalRefIDs only (was the filter ignored?); cannot tell whether ours exists",
                vendor=NAME, status=status,
            )
        if len(mine) > 1:
            log.warning("vendor.order.duplicates", vendor=NAME, key=idempotency_key,
                        count=len(mine))
        return self._result(mine[0], fallback_email=None)

    def close(self) -> None:
        self._client.close()

    # --- the configuration check -------------------------------------------------------

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        problems: list[str] = []
        credentials_ok = True
        balance: str | None = None
        try:
            balance = self.account_balance()
        except VendorError as exc:
            # Rejected, or not reached at all: nothing proves the credentials work.
            if exc.status in (401, 403) or isinstance(exc, TransientVendorError):
                credentials_ok = False
            problems.append(str(exc) if credentials_ok is False
                            else f"account balance unavailable: {exc}")
        catalog: dict[str, dict[str, Any]] | None = None
        if credentials_ok:
            try:
                catalog = self.catalog()
            except VendorError as exc:
                if exc.status in (401, 403) or isinstance(exc, TransientVendorError):
                    credentials_ok = False
                problems.append(f"catalog unavailable: {exc}")
        checks = tuple(self._check_item(catalog, p, a, c) for p, a, c in products)
        return VendorCheck(vendor=NAME, credentials_ok=credentials_ok, products=checks,
                           balance=balance, problems=tuple(dict.fromkeys(problems)))

    def account_balance(self) -> str:
        """``"1,234.50 USD"`` from ``GET /accounts/{accountIdentifier}`` (not in
        docs/vendors.md: the field names ``currentBalance``/``currencyCode`` are unconfirmed)."""
        path = f"accounts/{quote(self.account_identifier, safe='')}"
        response = self._call("GET", path)
        if response.status_code == 404:
            raise OperatorFacingError(
                f"Tango Card knows no account {self.account_identifier!r} for these "
                "credentials (check account_identifier)", vendor=NAME, status=404,
            )
        if not 200 <= response.status_code < 300:
            self._raise_for(response, "GET /accounts/<id>")
        data = json_or_none(response)
        amount = _decimal(data.get("currentBalance")) if isinstance(data, dict) else None
        currency = data.get("currencyCode") if isinstance(data, dict) else None
        if amount is None:
            raise TransientVendorError(
                f"Tango Card answered HTTP {response.status_code} to GET /accounts/<id> "
                "without a currentBalance", vendor=NAME, status=response.status_code,
            )
        return f"{amount:,.2f} {currency if isinstance(currency, str) else '?'}"

    def catalog(self) -> dict[str, dict[str, Any]]:
        """UTID -> ``{"utid", "name", "currency", "status", "value_type", "face_value",
        "min", "max"}`` (numbers as strings), from the cache while it is fresh."""
        now = self._clock()
        if self._catalog is not None and now - self._catalog[0] < CATALOG_TTL:
            return self._catalog[1]
        cached = self._cached_catalog(now)
        if cached is not None:
            return cached
        response = self._call("GET", "catalogs")
        if not 200 <= response.status_code < 300:
            self._raise_for(response, "GET /catalogs")
        items = _catalog_items(json_or_none(response))
        if items is None:
            raise TransientVendorError(
                f"Tango Card answered HTTP {response.status_code} to GET /catalogs without a "
                "catalog", vendor=NAME, status=response.status_code,
            )
        log.info("vendor.catalog.fetched", vendor=NAME, items=len(items))
        self._catalog = (now, items)
        if self._cache is not None:
            value = json.dumps({"fetched_at": now.isoformat(), "items": items})
            self._cache.cache_put(self.catalog_cache_key, value, now + CATALOG_TTL)
        return items

    def _cached_catalog(self, now: datetime) -> dict[str, dict[str, Any]] | None:
        if self._cache is None:
            return None
        raw = self._cache.cache_get(self.catalog_cache_key, now)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            fetched = datetime.fromisoformat(data["fetched_at"])
            items = data["items"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(items, dict):
            return None
        self._catalog = (fetched, items)
        return items

    def _check_item(self, catalog: Mapping[str, Mapping[str, Any]] | None, utid: str | None,
                    amount: Decimal, currency: str) -> ProductCheck:
        def result(ok: bool, detail: str) -> ProductCheck:
            return ProductCheck(product=utid, amount=amount, currency=currency, ok=ok,
                                detail=detail)

        if not utid:
            return result(False, "Tango Card needs a UTID as product")
        if catalog is None:
            return result(False, "not checked: the catalog could not be read")
        item = catalog.get(utid)
        if item is None:
            hint = difflib.get_close_matches(utid, list(catalog), n=1)
            return result(False, f"no UTID {utid!r} in the Tango Card catalog"
                          + (f" (did you mean {hint[0]}?)" if hint else ""))
        name = item.get("name") or utid
        problems = _item_problems(item, amount, currency)
        return result(not problems, "; ".join(problems) if problems else str(name))

    def _refuse_wrong_currency(self, request: OrderRequest) -> None:
        """With a catalog already cached (never fetched for this), refuse to send an amount
        in one currency for an item priced in another: Tango would read it in its own."""
        try:
            catalog = self._catalog[1] if self._catalog else self._cached_catalog(self._clock())
        except Exception:  # the cache is a convenience here, never a reason to fail
            return
        item = catalog.get(request.product or "") if catalog else None
        currency = item.get("currency") if item else None
        if isinstance(currency, str) and currency.upper() != request.currency.upper():
            raise ConfigFixable(
                f"Tango Card item {request.product} is priced in {currency}, the route asks "
                f"for {request.currency}: fix the routing config", vendor=NAME,
            )

    # --- internals ---------------------------------------------------------------------

    def _call(self, method: str, path: str, *, creates: bool = False, **kwargs: Any,
              ) -> httpx.Response:
        return call(self._client, method, path, policy=self._policy, sleep=self._sleep,
                    vendor=NAME, label="Tango Card", where=f"{method} /{path.split('/')[0]}",
                    creates=creates, **kwargs)

    def _raise_for(self, response: httpx.Response, what: str, *,
                   creating: OrderRequest | None = None) -> NoReturn:
        """``creating``: the order request this answers (a create's 4xx is classified)."""
        status = response.status_code
        errors = _errors_of(response)
        keys = _keys_of(response)
        said = self._vendor_message(response, errors)
        suffix = f": {said}" if said else ""
        error: VendorError
        if status == 401:
            error = OperatorFacingError(
                f"Tango Card rejected the platform name/key (HTTP 401 to {what}){suffix}",
                vendor=NAME, status=status,
            )
        elif status == 403:
            if "403.016" in keys:
                why = ("Tango flagged the account for order velocity (403.016): contact Tango "
                       "Card; the credentials themselves may be fine")
            elif "403.007" in keys:
                why = (f"customer {self.customer_identifier!r} is not authorised for this "
                       "(403.007): check customer_identifier/account_identifier and the "
                       "platform's permissions; not always a bad key")
            else:
                why = ("Tango Card refused the request: the platform key may lack access to "
                       "this account or call (not always a bad key)")
            error = OperatorFacingError(f"{why} (HTTP 403 to {what}){suffix}", vendor=NAME,
                                        status=status)
        elif status == 402 or FUNDS_KEY in keys:
            error = OperatorFacingError(
                f"not enough funds in Tango Card account {self.account_identifier!r} "
                f"(HTTP {status}{', 402.001' if FUNDS_KEY in keys else ''}){suffix}; top it "
                "up and the waiting redemptions go through", vendor=NAME, status=status,
            )
        elif status == 429:
            error = TransientVendorError(
                f"Tango Card rate limit (HTTP 429 to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status >= 500:
            replay = (" (Tango may have processed it: the retry reuses the externalRefID, so "
                      "it cannot be ordered twice)") if creating is not None else ""
            error = TransientVendorError(
                f"Tango Card server error (HTTP {status} to {what}){replay}{suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status == 404:
            error = OperatorFacingError(
                f"Tango Card answered HTTP 404 to {what} without a Tango error key: is "
                f"base_url right? ({self.base_url}){suffix}", vendor=NAME, status=status,
            )
        elif creating is not None and 400 <= status < 500:
            error = self._invalid_request(errors, keys, status, suffix, creating)
        else:
            error = OperatorFacingError(
                f"Tango Card answered HTTP {status} to {what}, which this adapter does not "
                f"expect{suffix}", vendor=NAME, status=status,
            )
        log.warning("vendor.call.failed", vendor=NAME, call=what, http_status=status,
                    error_class=type(error).__name__, keys=",".join(keys)[:80] or None)
        raise error

    def _invalid_request(self, errors: list[dict[str, Any]], keys: list[str], status: int,
                         suffix: str, request: OrderRequest) -> VendorError:
        named = f" ({', '.join(keys)})" if keys else ""
        known = set(keys) & (CONFIG_KEYS | RECIPIENT_KEYS)
        if known:
            # Tango's error ids decide; the field paths are only a fallback.
            if known & CONFIG_KEYS:
                return self._unavailable_or_config(request, f"HTTP {status}{named}{suffix}",
                                                   status)
            return AdvocateFacingError(
                f"Tango Card: the recipient is invalid (HTTP {status}{named}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        kind = classify_errors(errors)
        if kind == "funds":
            return OperatorFacingError(
                f"not enough funds in Tango Card account {self.account_identifier!r} "
                f"(HTTP {status}){suffix}; top it up and the waiting redemptions go through",
                vendor=NAME, status=status,
            )
        if kind in ("recipient", "both"):
            return AdvocateFacingError(
                f"Tango Card: the recipient is invalid (HTTP {status}{named}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        if kind == "product":
            return self._unavailable_or_config(request, f"HTTP {status}{named}{suffix}", status)
        return OperatorFacingError(
            f"Tango Card rejected our request (HTTP {status}{named}): check the configuration"
            f"{suffix}", vendor=NAME, status=status,
        )

    def _unavailable_or_config(self, request: OrderRequest, refusal: str,
                               status: int) -> VendorError:
        """Tango refused the item or its amount: the (cached) catalog decides whether the
        item is unavailable or the routing config is wrong (``unavailable_or_config``)."""
        utid = request.product or ""

        def listing() -> list[str] | None:
            item = self.catalog().get(utid)
            return None if item is None else _value_problems(item, request.amount,
                                                             request.currency)

        return unavailable_or_config(
            vendor=NAME, label="Tango Card", product=utid, amount=request.amount,
            currency=request.currency, refusal=refusal, status=status, listing=listing,
        )

    def _vendor_message(self, response: httpx.Response, errors: list[dict[str, Any]]) -> str:
        parts = [e["message"] for e in errors if isinstance(e.get("message"), str)]
        data = json_or_none(response)
        if not parts and isinstance(data, dict):
            for name in ("message", "httpPhrase"):
                if isinstance(data.get(name), str):
                    parts.append(data[name])
                    break
        text = "; ".join(parts)
        if isinstance(data, dict) and isinstance(data.get("requestId"), str):
            text += f" (requestId {data['requestId'][:64]})"
        return self._scrub(text.strip())

    def _scrub(self, text: str) -> str:
        """Vendor text made safe to quote: no key, no URL, one line, bounded."""
        return scrub(text, self._key.get_secret_value())

    def _result(self, order: Mapping[str, Any], *, fallback_email: str | None) -> OrderResult:
        raw_status = order.get("status")
        status_text = raw_status.upper() if isinstance(raw_status, str) else ""
        status = _ORDER_STATUS.get(status_text)
        if status is None:
            log.warning("vendor.order.unknown_status", vendor=NAME,
                        order_id=str(order.get("referenceOrderID"))[:40],
                        status=str(raw_status)[:40])
            status = OrderStatus.PENDING
        recipient = obj(order.get("recipient"))
        email = recipient.get("email") if isinstance(recipient.get("email"), str) else None
        email = email or fallback_email
        if status is OrderStatus.NEEDS_PERSON:
            return OrderResult(
                vendor_order_id=str(order["referenceOrderID"]), status=status,
                delivery="partly issued",
                detail=f"Tango Card order {status_text}: only part of the order was issued; "
                       "look at it in the Tango Card portal before telling the advocate",
            )
        if status is OrderStatus.PENDING:
            delivery = "under review at Tango Card"
        elif order.get("sendEmail") is False:
            delivery = "delivered by link"
        else:
            delivery = f"sent by email to {mask_email(email)}" if email else "sent by email"
        return OrderResult(
            vendor_order_id=str(order["referenceOrderID"]),
            status=status,
            delivery=delivery,
            link=_reward_link(obj(order.get("reward"))),
            detail=f"Tango Card order {status_text or '?'}",
        )


# --- reading Tango's answers ---------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _order_of(data: Any) -> dict[str, Any] | None:
    """An order object (Tango answers a create with the order at the top level; some
    answers may wrap it in ``order``)."""
    if isinstance(data, dict) and isinstance(data.get("order"), dict):
        data = data["order"]
    if not isinstance(data, dict) or not isinstance(data.get("referenceOrderID"), str | int):
        return None
    return data


def _reward_link(reward: Mapping[str, Any]) -> str | None:
    """The first redemption URL in the reward (layout unconfirmed; see the module doc)."""
    candidates: list[Any] = []
    for entry in reward.get("credentialList") or []:
        if isinstance(entry, dict):
            kind = str(entry.get("type", "")).lower() + str(entry.get("label", "")).lower()
            if "url" in kind or "link" in kind:
                candidates.append(entry.get("value"))
    credentials = reward.get("credentials")
    if isinstance(credentials, dict):
        candidates.extend(v for k, v in credentials.items() if "url" in str(k).lower())
    candidates.append(reward.get("redemptionUrl"))
    for value in candidates:
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            return value
    return None


def _keys_of(response: httpx.Response) -> list[str]:
    """Tango's error ids (``i18nKey``), top level first, then each of ``errors[]``."""
    data = json_or_none(response)
    if not isinstance(data, dict):
        return []
    found = [data.get("i18nKey")] + [e.get("i18nKey") for e in _errors_of(response)]
    return list(dict.fromkeys(k.strip() for k in found if isinstance(k, str) and k.strip()))


def _errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    data = json_or_none(response)
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, dict):
        errors = [errors]
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


_FUNDS = re.compile(r"insufficient|\bfunds?\b|balance", re.IGNORECASE)
_RECIPIENT = re.compile(r"recipient|e-?mail|first_?name|last_?name", re.IGNORECASE)
_ITEM = re.compile(r"\butid\b|\bitem\b|amount|denomination|catalog|\bbrand\b|face_?value",
                   re.IGNORECASE)


def classify_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """``funds``, ``recipient``, ``product``, ``both`` or ``other`` for a 4xx ``errors`` list
    whose ``i18nKey`` values are not among the documented ones (those decide first, see
    ``TangoVendor._invalid_request``).

    Leans towards ``other`` (hold for a person): refusing a redemption refunds the points,
    a hold costs only a look. The culprit is read from ``path`` (and ``field``, ``i18nKey``,
    ``code``), then from ``message``."""
    kinds: set[str] = set()
    seen = False
    for error in errors:
        seen = True
        where = " ".join(str(error.get(k, "")) for k in ("path", "field", "i18nKey", "code"))
        message = str(error.get("message", ""))
        if _FUNDS.search(where) or _FUNDS.search(message):
            return "funds"
        if _RECIPIENT.search(where) or (not where.strip() and _RECIPIENT.search(message)):
            kinds.add("recipient")
        elif _ITEM.search(where) or (not where.strip() and _ITEM.search(message)):
            kinds.add("product")
        else:
            kinds.add("other")
    if not seen or not kinds or "other" in kinds:
        return "other"
    return "both" if len(kinds) == 2 else kinds.pop()


def _catalog_items(data: Any) -> dict[str, dict[str, Any]] | None:
    """``GET /catalogs`` -> UTID -> the few fields ``check`` reads (kept small for the
    cache). Brands carry ``items``; each item its ``utid``."""
    brands = data.get("brands") if isinstance(data, dict) else None
    if not isinstance(brands, list):
        return None
    items: dict[str, dict[str, Any]] = {}
    for brand in brands:
        if not isinstance(brand, dict):
            continue
        for item in brand.get("items") or []:
            if not isinstance(item, dict) or not isinstance(item.get("utid"), str):
                continue
            numbers = {
                name: _decimal(item.get(field))
                for name, field in (("face_value", "faceValue"), ("min", "minValue"),
                                    ("max", "maxValue"))
            }
            items[item["utid"]] = {
                "utid": item["utid"],
                "name": item.get("rewardName") or brand.get("brandName"),
                "currency": item.get("currencyCode"),
                "status": str(item.get("status", "")).lower() or None,
                "value_type": str(item.get("valueType", "")).upper() or None,
                **{k: (str(v) if v is not None else None) for k, v in numbers.items()},
            }
    return items


def _item_problems(item: Mapping[str, Any], amount: Decimal, currency: str) -> list[str]:
    """What ``check`` reports: the item not active, or ``_value_problems``."""
    problems: list[str] = []
    status = item.get("status")
    if status and status != "active":
        problems.append(f"the item is {status}, not active")
    return problems + _value_problems(item, amount, currency)


def _value_problems(item: Mapping[str, Any], amount: Decimal, currency: str) -> list[str]:
    """What keeps ``amount`` ``currency`` from being ordered from this item (its currency,
    fixed value or min/max), whatever its status: an inactive item at a value it takes is
    listed and unavailable, not a configuration mistake."""
    problems: list[str] = []
    item_currency = item.get("currency")
    if isinstance(item_currency, str) and item_currency.upper() != currency.upper():
        problems.append(f"the item is priced in {item_currency}, the route says {currency}")
    face, low, high = (_decimal(item.get(k)) for k in ("face_value", "min", "max"))
    if item.get("value_type") == "FIXED_VALUE" or (face is not None and low is None
                                                      and high is None):
        if face is not None and face != amount:
            problems.append(f"the item has a fixed value of {face:.2f}, the route says "
                            f"{amount:.2f}")
    else:
        if low is not None and amount < low:
            problems.append(f"{amount:.2f} is below the item's minimum of {low:.2f}")
        if high is not None and amount > high:
            problems.append(f"{amount:.2f} is above the item's maximum of {high:.2f}")
    return problems
