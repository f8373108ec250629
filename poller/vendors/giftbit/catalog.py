"""Giftbit: the funds, the brands and the configuration check."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from poller.domain.errors import TransientVendorError, VendorError
from poller.domain.model import OrderRequest
from poller.ports import ProductCheck, VendorCheck
from poller.vendors.base import json_or_none, unavailable_or_config
from poller.vendors.giftbit.client import _GiftbitCalls
from poller.vendors.giftbit.settings import NAME
from poller.vendors.giftbit.wire import NO_SUCH_BRAND, _error_of, _funds_of


class _GiftbitCatalog(_GiftbitCalls):
    """The funds and brands, read for ``check()`` and to decide a refused brand."""

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
