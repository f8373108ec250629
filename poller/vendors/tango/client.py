"""Tango Card RaaS v2: the shapes of its answers, its calls (spaced a second apart) and the
mapping of its errors, its catalog (cached) and account (docs/vendors.md, "Tango Card")."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import httpx
import structlog
from pydantic import SecretStr

from poller.domain.errors import (
    RECIPIENT_INVALID,
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    VendorError,
)
from poller.domain.model import OrderRequest, OrderStatus
from poller.ports import Cache, VendorCheck
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors.base import (
    USER_AGENT,
    ApiVendor,
    WitnessClient,
    decimal_of,
    json_or_none,
    obj,
    price_problems,
)
from poller.vendors.ratelimit import TokenBucket

log = structlog.get_logger(__name__)

NAME = "tango"
CATALOG_TTL = timedelta(hours=12)
"""Tango asks for about two catalog calls a day."""
MIN_ORDER_INTERVAL = 1.0
"""Seconds between two requests of any kind (Tango: 1 request/s on every endpoint)."""
IN_PROCESS_WAIT = 2.0
"""After ``409.002`` wait at least 2 s before sending the same externalRefID."""
IN_PROCESS_RETRIES = 2

CONFIG_KEYS = frozenset({"422.024", "422.025", "422.026", "422.027", "422.030", "422.097",
                         "422.098", "422.099"})
"""UTID, amount and inactive-item errors: decided by the catalog."""
RECIPIENT_KEYS = frozenset({"422.009", "422.028", "422.029", "422.134"})
FUNDS_KEY = "402.001"
IN_PROCESS_KEY = "409.002"
NO_ORDERS_KEY = "404.110"
_EXTERNAL_REF = re.compile(r"^[A-Za-z0-9]{1,100}$")

_ORDER_STATUS: Mapping[str, OrderStatus] = {
    "COMPLETE": OrderStatus.COMPLETE,
    "COMPLETED": OrderStatus.COMPLETE,
    "PENDING": OrderStatus.PENDING,
    "PARTIAL": OrderStatus.NEEDS_PERSON,
    "FAILED": OrderStatus.FAILED,
    "CANCELED": OrderStatus.FAILED,
    "CANCELLED": OrderStatus.FAILED,
}


def _order_of(data: Any) -> dict[str, Any] | None:
    """An order object (at the top level of a create's answer, or wrapped in ``order``)."""
    if isinstance(data, dict) and isinstance(data.get("order"), dict):
        data = data["order"]
    if not isinstance(data, dict) or not isinstance(data.get("referenceOrderID"), str | int):
        return None
    return data


def _reward_link(reward: Mapping[str, Any]) -> str | None:
    """The first redemption URL in the reward (layout unconfirmed)."""
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


def _errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    errors = obj(json_or_none(response)).get("errors")
    if isinstance(errors, dict):
        errors = [errors]
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _keys_of(response: httpx.Response) -> list[str]:
    """Tango's error ids (``i18nKey``), top level first, then each of ``errors[]``."""
    top = obj(json_or_none(response)).get("i18nKey")
    found = [top] + [e.get("i18nKey") for e in _errors_of(response)]
    return list(dict.fromkeys(k.strip() for k in found if isinstance(k, str) and k.strip()))


_FUNDS = re.compile(r"insufficient|\bfunds?\b|balance", re.IGNORECASE)
_RECIPIENT = re.compile(r"recipient|e-?mail|first_?name|last_?name", re.IGNORECASE)
_ITEM = re.compile(r"\butid\b|\bitem\b|amount|denomination|catalog|\bbrand\b|face_?value",
                   re.IGNORECASE)


def classify_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """``funds``, ``recipient``, ``product``, ``both`` or ``other`` for a 4xx ``errors`` list
    without a documented ``i18nKey`` (those decide first).

    Leans towards ``other`` (hold for a person): refusing a redemption refunds the points,
    a hold costs only a look. The culprit is read from ``path`` (and ``field``, ``i18nKey``,
    ``code``), then from ``message``."""
    kinds: set[str] = set()
    for error in errors:
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
    if not kinds or "other" in kinds:
        return "other"
    return "both" if len(kinds) == 2 else kinds.pop()


def _catalog_items(data: Any) -> dict[str, dict[str, Any]] | None:
    """``GET /catalogs`` -> UTID -> the few fields ``check`` reads (kept small for the
    cache). Brands carry ``items``; each item its ``utid``."""
    brands = obj(data).get("brands")
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
                name: decimal_of(item.get(field))
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
    status = item.get("status")
    inactive = [f"the item is {status}, not active"] if status and status != "active" else []
    return inactive + _value_problems(item, amount, currency)


def _value_problems(item: Mapping[str, Any], amount: Decimal, currency: str) -> list[str]:
    """What keeps ``amount`` ``currency`` from being ordered from this item (its currency,
    fixed value or min/max), whatever its status: an inactive item at a value it takes is
    listed and unavailable, not a configuration mistake."""
    face, low, high = (decimal_of(item.get(k)) for k in ("face_value", "min", "max"))
    if item.get("value_type") == "FIXED_VALUE" or (face is not None and low is None
                                                      and high is None):
        problems = price_problems("item", amount, currency, item.get("currency"), None, None)
        if face is not None and face != amount:
            problems.append(f"the item has a fixed value of {face:.2f}, the route says "
                            f"{amount:.2f}")
        return problems
    return price_problems("item", amount, currency, item.get("currency"), low, high)


class TangoClient(ApiVendor):
    """Tango's calls, its error mapping, catalog and account; the order calls are
    ``TangoVendor``'s."""

    name = NAME
    label = "Tango Card"
    credential = "platform name/key"
    product_kind = "a UTID"

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
        self.platform_name = platform_name
        self.customer_identifier = customer_identifier
        self.account_identifier = account_identifier
        self._cache = cache
        self._clock = clock
        self._catalog: tuple[datetime, dict[str, dict[str, Any]]] | None = None
        self._spacing = TokenBucket(1 / min_order_interval, clock=monotonic, sleep=sleep) \
            if min_order_interval > 0 else None
        super().__init__(base_url, platform_key, policy=policy, transport=transport,
                         sleep=sleep)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.base_url!r}, "
                f"account={self.account_identifier!r})")

    def _make_client(self, transport: httpx.BaseTransport | None) -> WitnessClient:
        # Every request is spaced, retries included: Tango's limit covers every endpoint.
        spacing = self._spacing
        hooks = [lambda _request: spacing.acquire()] if spacing is not None else []
        return WitnessClient(
            base_url=self.base_url + "/",
            auth=httpx.BasicAuth(self.platform_name, self._key.get_secret_value()),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=self._policy.timeout, transport=transport,
            event_hooks={"request": hooks})

    def _raise_for(self, response: httpx.Response, what: str, *,
                   creating: OrderRequest | None = None) -> NoReturn:
        """``creating``: the order request this answers (a create's 4xx is classified)."""
        status = response.status_code
        errors = _errors_of(response)
        keys = _keys_of(response)
        said = self._vendor_message(response, errors)
        suffix = f": {said}" if said else ""
        error: VendorError
        if status == 403:
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
        elif status != 401 and (status == 402 or FUNDS_KEY in keys):
            error = self._no_funds(status, f"{', 402.001' if FUNDS_KEY in keys else ''}",
                                   suffix)
        elif status >= 500 and creating is not None:
            error = TransientVendorError(
                f"Tango Card server error (HTTP {status} to {what}) (Tango may have processed "
                f"it: the retry reuses the externalRefID, so it cannot be ordered twice)"
                f"{suffix}", vendor=NAME, status=status, retry_after=retry_after_of(response))
        elif creating is not None and 400 <= status < 500 and status not in (401, 404, 429):
            error = self._invalid_request(errors, keys, status, suffix, creating)
        else:
            error = self._usual_error(response, what, suffix)
        self._failed(error, what, keys=",".join(keys)[:80] or None)

    def _no_funds(self, status: int, key: str, suffix: str) -> OperatorFacingError:
        return OperatorFacingError(
            f"not enough funds in Tango Card account {self.account_identifier!r} "
            f"(HTTP {status}{key}){suffix}; top it up and the waiting redemptions go through",
            vendor=NAME, status=status)

    def _invalid_request(self, errors: list[dict[str, Any]], keys: list[str], status: int,
                         suffix: str, request: OrderRequest) -> VendorError:
        named = f" ({', '.join(keys)})" if keys else ""
        known = set(keys) & (CONFIG_KEYS | RECIPIENT_KEYS)
        # Tango's error ids decide; the field paths are only a fallback.
        kind = ("product" if known & CONFIG_KEYS else "recipient") if known \
            else classify_errors(errors)
        if kind == "funds":
            return self._no_funds(status, "", suffix)
        if kind in ("recipient", "both"):
            return AdvocateFacingError(
                f"Tango Card: the recipient is invalid (HTTP {status}{named}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID)
        if kind == "product":
            return self._unavailable_or_config(
                request, f"HTTP {status}{named}{suffix}", status,
                lambda utid: self.catalog().get(utid), _value_problems)
        return OperatorFacingError(
            f"Tango Card rejected our request (HTTP {status}{named}): check the configuration"
            f"{suffix}", vendor=NAME, status=status)

    def _vendor_message(self, response: httpx.Response, errors: list[dict[str, Any]]) -> str:
        parts = [e["message"] for e in errors if isinstance(e.get("message"), str)]
        data = obj(json_or_none(response))
        if not parts:
            parts = [data[k] for k in ("message", "httpPhrase")
                     if isinstance(data.get(k), str)][:1]
        text = "; ".join(parts)
        if isinstance(data.get("requestId"), str):
            text += f" (requestId {data['requestId'][:64]})"
        return self._scrub(text.strip())

    @property
    def catalog_cache_key(self) -> str:
        """Per host and platform: a sandbox catalog never answers for production."""
        host = urlsplit(self.base_url).netloc
        return f"tango:catalog:{host}:{self.platform_name}:{self.account_identifier}"

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        return self._check(products, self.account_balance, self.catalog, _item_problems,
                           balance_note="account balance unavailable: ", catalog="catalog",
                           catalog_proves=True, unknown="no UTID {!r} in the Tango Card catalog")

    def account_balance(self) -> str:
        """``"1,234.50 USD"`` from ``GET /accounts/{accountIdentifier}`` (field names
        unconfirmed)."""
        path = f"accounts/{quote(self.account_identifier, safe='')}"
        response = self._call("GET", path)
        if response.status_code == 404:
            raise OperatorFacingError(
                f"Tango Card knows no account {self.account_identifier!r} for these "
                "credentials (check account_identifier)", vendor=NAME, status=404)
        if not 200 <= response.status_code < 300:
            self._raise_for(response, "GET /accounts/<id>")
        data = obj(json_or_none(response))
        amount = decimal_of(data.get("currentBalance"))
        currency = data.get("currencyCode")
        if amount is None:
            raise self._missing(response.status_code, "GET /accounts/<id>",
                                "a currentBalance")
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
        data, status = self._get("catalogs", "GET /catalogs")
        items = _catalog_items(data)
        if items is None:
            raise self._missing(status, "GET /catalogs", "a catalog")
        log.info("vendor.catalog.fetched", vendor=NAME, items=len(items))
        self._catalog = (now, items)
        if self._cache is not None:
            value = json.dumps({"fetched_at": now.isoformat(), "items": items})
            self._cache.cache_put(self.catalog_cache_key, value, now + CATALOG_TTL)
        return items

    def _cached_catalog(self, now: datetime) -> dict[str, dict[str, Any]] | None:
        raw = self._cache.cache_get(self.catalog_cache_key, now) if self._cache else None
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
                f"for {request.currency}: fix the routing config", vendor=NAME)
