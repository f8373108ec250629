"""Giftbit (papi v1): the campaign id, the shapes of its answers, its calls and the mapping
of its errors, its funds and brands (docs/vendors.md, "Giftbit")."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, NoReturn
from urllib.parse import quote

import httpx

from poller.domain.errors import (
    RECIPIENT_INVALID,
    AdvocateFacingError,
    OperatorFacingError,
    VendorError,
)
from poller.domain.keys import is_our_key
from poller.domain.model import OrderRequest
from poller.ports import ProductCheck, VendorCheck
from poller.vendors.base import ApiVendor, json_or_none, obj, price_problems

NAME = "giftbit"
MAX_CAMPAIGN_ID = 40
INVALID_BRAND = "ERROR_CAMPAIGN_INVALID_BRAND"
NO_SUCH_BRAND = "ERROR_BRANDS_NO_SUCH_BRAND"
NO_CONTACTS = "ERROR_CAMPAIGN_NO_CONTACTS"

_CAMPAIGN_ID = re.compile(rf"^[A-Za-z0-9]{{1,{MAX_CAMPAIGN_ID}}}$")
_DUPLICATE = re.compile(r"duplicate|already[ _-]?(exists|used|taken)|id[ _-]?exists|in use",
                        re.IGNORECASE)
_RECIPIENT = re.compile(r"e-?mail|contact|recipient", re.IGNORECASE)
_FUNDS = re.compile(r"insufficient|\bfunds?\b|balance", re.IGNORECASE)


def campaign_id(idempotency_key: str) -> str:
    """The Giftbit campaign ``id`` for an idempotency key: the key itself when it fits the
    assumed limits, else a stable hash of it (docs/vendors.md, "The campaign id")."""
    if _CAMPAIGN_ID.fullmatch(idempotency_key):
        return idempotency_key
    return "rp" + hashlib.sha256(idempotency_key.encode()).hexdigest()[: MAX_CAMPAIGN_ID - 2]


def is_our_campaign(text: str) -> bool:
    """Whether a campaign id has the shape ``campaign_id`` gives one of our keys."""
    return (text.startswith("rp") and len(text) == MAX_CAMPAIGN_ID
            and set(text[2:]) <= set("0123456789abcdef")) or is_our_key(text)


def _error_of(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of a Giftbit error body (None when the body is not one)."""
    error = obj(json_or_none(response)).get("error")
    return error if isinstance(error, dict) else None


def _is_duplicate(error: Mapping[str, Any] | None) -> bool:
    text = " ".join(str(error.get(k, "")) for k in ("code", "name", "message")) if error else ""
    return bool(_DUPLICATE.search(text))


def _funds_of(data: Any) -> dict[str, int] | None:
    """``{"USD": 125000}`` from ``GET /funds``: ``fundsbycurrency`` maps each currency to
    ``{"available_in_cents", ...}`` (a list of ``{"currency", "available_in_cents"}`` is
    tolerated too)."""
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
    """What keeps ``amount`` ``currency`` from being ordered from this brand: its
    ``fund_currencyisocode``; ``variable_price`` true with ``min_price_in_cents``/
    ``max_price_in_cents``, or false with ``allowed_prices_in_cents``."""
    brand_currency = next((brand[k] for k in ("fund_currencyisocode", "currencyisocode")
                           if isinstance(brand.get(k), str)), None)
    cents = amount * 100
    fixed = brand.get("allowed_prices_in_cents")
    if brand.get("variable_price") is False or (isinstance(fixed, list)
                                                  and brand.get("variable_price") is not True):
        problems = price_problems("brand", amount, currency, brand_currency, None, None)
        allowed = [c for c in fixed if isinstance(c, int)] if isinstance(fixed, list) else []
        if cents not in allowed:
            listed = ", ".join(f"{Decimal(c) / 100:.2f}" for c in allowed) or "none listed"
            problems.append(f"{amount:.2f} is not one of the brand's prices ({listed})")
        return problems
    low, high = (Decimal(c) / 100 if isinstance(c, int) else None
                 for c in (brand.get("min_price_in_cents"), brand.get("max_price_in_cents")))
    return price_problems("brand", amount, currency, brand_currency, low, high)


class GiftbitClient(ApiVendor):
    """Giftbit's calls, its error mapping, funds and brands; the campaign calls are
    ``GiftbitVendor``'s."""

    name = NAME
    label = "Giftbit"
    product_kind = "a brand code"
    thing = "campaign"
    ok_statuses = range(200, 201)  # only 200 is success

    def _raise_for(self, response: httpx.Response, what: str, *,
                   creating: OrderRequest | None = None) -> NoReturn:
        """``creating``: the order request this answers (a create's 4xx is classified)."""
        status = response.status_code
        error_body = _error_of(response) or {}
        code = str(error_body.get("code", ""))
        said = self._scrub(" ".join(str(error_body[k]) for k in ("code", "message")
                                    if isinstance(error_body.get(k), str)))
        suffix = f": {said}" if said else ""
        text = f"{code} {error_body.get('name', '')} {error_body.get('message', '')}"
        error: VendorError
        if status in (401, 403, 429) or status >= 500:
            error = self._usual_error(response, what, suffix)
        elif status == 402:
            error = OperatorFacingError(
                f"Giftbit: payment required (HTTP 402 to {what}: a credit-card top-up failed)"
                f"{suffix}; fund the account", vendor=NAME, status=status)
        elif creating is not None and code == INVALID_BRAND:
            error = self._unavailable_or_config(creating, f"HTTP {status}{suffix}", status,
                                                self.brand, _brand_problems)
        elif creating is not None and code == NO_CONTACTS:
            error = AdvocateFacingError(
                f"Giftbit could not add the recipient (HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID)
        elif creating is not None and _FUNDS.search(text):
            error = OperatorFacingError(
                f"Giftbit: not enough funds (HTTP {status}){suffix}; top the account up",
                vendor=NAME, status=status)
        elif creating is not None and status in (400, 422) and _RECIPIENT.search(text):
            error = AdvocateFacingError(
                f"Giftbit: the recipient is invalid (HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID)
        else:
            error = self._usual_error(response, what, suffix)
        self._failed(error, what, code=code[:60] or None)

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        problems: list[str] = []
        balance: str | None = None
        unchecked = ""
        try:
            funds = self.funds()
            balance = ", ".join(f"{Decimal(c) / 100:,.2f} {cur}"
                                for cur, c in funds.items()) or None
        except VendorError as exc:
            # Rejected or unreachable: either way nothing here proves the key works.
            problems.append(str(exc))
            unchecked = ("not checked: credentials rejected" if exc.status in (401, 403)
                         else "not checked: Giftbit could not be reached")
        codes: list[str] | None = None
        checks: list[ProductCheck] = []
        for code, amount, currency in products:
            ok, detail = False, unchecked
            if not unchecked:
                try:
                    brand = self.brand(code) if code else None
                except VendorError as exc:
                    brand, detail = None, f"not checked: {exc}"
                else:
                    if brand is not None:
                        issues = _brand_problems(brand, amount, currency)
                        name = brand.get("name") if isinstance(brand.get("name"), str) else code
                        ok, detail = not issues, "; ".join(issues) if issues else str(name)
                    elif not code:
                        detail = f"Giftbit needs {self.product_kind} as product"
                    else:
                        codes = self._brand_codes() if codes is None else codes
                        hint = difflib.get_close_matches(code, codes, n=1)
                        detail = f"no brand {code!r} at Giftbit" + (
                            f" (did you mean {hint[0]}?)" if hint else "")
            checks.append(ProductCheck(product=code, amount=amount, currency=currency, ok=ok,
                                       detail=detail))
        return VendorCheck(vendor=NAME, credentials_ok=not unchecked,
                           products=tuple(checks), balance=balance, problems=tuple(problems))

    def funds(self) -> dict[str, int]:
        """Available cents per currency, from ``GET /funds``."""
        data, status = self._get("funds", "GET /funds")
        funds = _funds_of(data)
        if funds is None:
            raise self._missing(status, "GET /funds", "funds")
        return funds

    def brand(self, code: str) -> dict[str, Any] | None:
        """The brand, or None when Giftbit has no such brand code."""
        response = self._call("GET", f"brands/{quote(code, safe='')}")
        if response.status_code == 422 and \
                str((_error_of(response) or {}).get("code")) == NO_SUCH_BRAND:
            return None
        if response.status_code != 200:
            self._raise_for(response, "GET /brands/<code>")
        data = json_or_none(response)
        brand = data.get("brand", data) if isinstance(data, dict) else None
        if not isinstance(brand, dict):
            raise self._missing(200, "GET /brands/<code>", "a brand")
        return brand

    def _brand_codes(self) -> list[str]:
        """Every brand code (only to suggest one for a typo; failures suggest nothing)."""
        try:
            response = self._call("GET", "brands", params={"limit": 500})
        except VendorError:
            return []
        data = json_or_none(response) if response.status_code == 200 else None
        brands = obj(data).get("brands")
        if not isinstance(brands, list):
            return []
        return [b["brand_code"] for b in brands
                if isinstance(b, dict) and isinstance(b.get("brand_code"), str)]
