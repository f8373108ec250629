"""Tango Card: the catalog (cached), the account balance and the configuration check."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import structlog

from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    VendorError,
)
from poller.domain.model import OrderRequest
from poller.ports import ProductCheck, VendorCheck
from poller.vendors.base import json_or_none, unavailable_or_config
from poller.vendors.tango.client import _TangoCalls
from poller.vendors.tango.settings import CATALOG_TTL, NAME
from poller.vendors.tango.wire import _decimal

log = structlog.get_logger(__name__)


class _TangoCatalog(_TangoCalls):
    """The catalog and the account, read for ``check()`` and to decide a refused item."""

    @property
    def catalog_cache_key(self) -> str:
        """Per host and platform: a sandbox catalog never answers for production."""
        host = urlsplit(self.base_url).netloc
        return f"tango:catalog:{host}:{self.platform_name}:{self.account_identifier}"

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
