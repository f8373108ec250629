"""Tremendous: the funding source, the products and the configuration check."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx

from poller.domain.errors import (
    RECIPIENT_INVALID,
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    VendorError,
)
from poller.domain.model import OrderRequest
from poller.ports import ProductCheck, VendorCheck
from poller.vendors.base import json_or_none, obj, unavailable_or_config
from poller.vendors.tremendous.client import _TremendousCalls
from poller.vendors.tremendous.settings import NAME
from poller.vendors.tremendous.wire import _classify_invalid, _errors_of, _is_tremendous_error


class _TremendousCatalog(_TremendousCalls):
    """The funding source and products, read for ``check()`` and to decide a refused
    product."""

    # --- helpers for a configuration check --------------------------------------------

    def funding_balance(self) -> dict[str, Any]:
        """The configured funding source: ``{"id", "method", "available_cents"}``.

        ``payment.funding_source_id = "balance"`` is Tremendous's alias for the account
        balance, so that name matches the source whose method is ``balance``.
        """
        response = self._call("GET", "funding_sources")
        if not 200 <= response.status_code < 300:
            self._raise_for(response, "GET /funding_sources")
        data = json_or_none(response)
        sources = data.get("funding_sources") if isinstance(data, dict) else None
        if not isinstance(sources, list):
            raise TransientVendorError(
                f"Tremendous answered HTTP {response.status_code} to GET /funding_sources "
                "without a list of funding sources",
                vendor=NAME, status=response.status_code,
            )
        for source in sources:
            if not isinstance(source, dict):
                continue
            wanted = source.get("id") == self.funding_source_id or (
                self.funding_source_id == "balance" and source.get("method") == "balance"
            )
            if not wanted:
                continue
            meta = obj(source.get("meta"))
            cents = source.get("available_cents", meta.get("available_cents"))
            return {
                "id": source.get("id"),
                "method": source.get("method"),
                "available_cents": cents if isinstance(cents, int) else None,
            }
        raise OperatorFacingError(
            f"Tremendous has no funding source {self.funding_source_id!r} on this account",
            vendor=NAME, status=response.status_code,
        )

    def product(self, product_id: str) -> dict[str, Any] | None:
        """The catalog entry for ``product_id``, or None when Tremendous has no such product."""
        response = self._call("GET", f"products/{quote(product_id, safe='')}")
        if response.status_code == 404 and _is_tremendous_error(response):
            return None
        if not 200 <= response.status_code < 300:
            self._raise_for(response, "GET /products/<id>")
        data = json_or_none(response)
        product = data.get("product", data) if isinstance(data, dict) else None
        if not isinstance(product, dict):
            raise TransientVendorError(
                f"Tremendous answered HTTP {response.status_code} to GET /products/<id> "
                "without a product",
                vendor=NAME, status=response.status_code,
            )
        return product

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        """``reward-poller check``: the key works, the funding source's balance, and each
        product is in ``GET /products`` (the products enabled for this organization, so a
        product missing there cannot be ordered) with that currency and an amount inside one
        of its SKUs' ranges. The balance is read as USD (the currency of Tremendous
        balances; unconfirmed for other funding sources)."""
        problems: list[str] = []
        credentials_ok = True
        balance: str | None = None
        try:
            cents = self.funding_balance()["available_cents"]
            balance = f"{Decimal(cents) / 100:,.2f} USD" if isinstance(cents, int) else None
        except VendorError as exc:
            # Rejected, or not reached at all: nothing proves the key works.
            if exc.status in (401, 403) or isinstance(exc, TransientVendorError):
                credentials_ok = False
            problems.append(str(exc))
        catalog: dict[str, dict[str, Any]] | None = None
        if credentials_ok:
            try:
                catalog = self._products()
            except VendorError as exc:
                problems.append(f"product list unavailable: {exc}")
        checks = tuple(_check_product(catalog, p, a, c) for p, a, c in products)
        return VendorCheck(vendor=NAME, credentials_ok=credentials_ok, products=checks,
                           balance=balance, problems=tuple(problems))

    def _products(self) -> dict[str, dict[str, Any]]:
        response = self._call("GET", "products")
        if not 200 <= response.status_code < 300:
            self._raise_for(response, "GET /products")
        data = json_or_none(response)
        listed = data.get("products") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise TransientVendorError(
                f"Tremendous answered HTTP {response.status_code} to GET /products without a "
                "list of products", vendor=NAME, status=response.status_code,
            )
        return {str(p["id"]): p for p in listed if isinstance(p, dict) and "id" in p}

    def _invalid_request(self, response: httpx.Response, status: int, suffix: str,
                         request: OrderRequest) -> Exception:
        errors = _errors_of(response)
        kind = _classify_invalid(errors)
        if kind == "product" and request.product:
            product = request.product

            def listing() -> list[str] | None:
                found = self.product(product)
                return None if found is None else _product_problems(
                    found, request.amount, request.currency)

            return unavailable_or_config(
                vendor=NAME, label="Tremendous", product=product, amount=request.amount,
                currency=request.currency, refusal=f"HTTP {status}{suffix}", status=status,
                listing=listing,
            )
        if kind == "config":
            return ConfigFixable(
                f"Tremendous rejected the funding source or delivery settings (HTTP {status})"
                f"{suffix}; fix [vendors.tremendous]", vendor=NAME, status=status,
            )
        if kind == "recipient":
            return AdvocateFacingError(
                f"Tremendous: the recipient is invalid (HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        if kind == "both":
            return AdvocateFacingError(
                f"Tremendous: the recipient is invalid and the product is unavailable "
                f"(HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        return OperatorFacingError(
            f"Tremendous rejected our request (HTTP {status}): check the configuration"
            f"{suffix}",
            vendor=NAME, status=status,
        )


def _check_product(catalog: Mapping[str, Mapping[str, Any]] | None, product: str | None,
                   amount: Decimal, currency: str) -> ProductCheck:
    def result(ok: bool, detail: str) -> ProductCheck:
        return ProductCheck(product=product, amount=amount, currency=currency, ok=ok,
                            detail=detail)

    if not product:
        return result(False, "Tremendous needs a product id")
    if catalog is None:
        return result(False, "not checked: the product list could not be read")
    found = catalog.get(product)
    if found is None:
        hint = difflib.get_close_matches(product, list(catalog), n=1)
        return result(False, f"no product {product!r} enabled at Tremendous"
                      + (f" (did you mean {hint[0]}?)" if hint else ""))
    problems = _product_problems(found, amount, currency)
    name = found.get("name")
    return result(not problems, "; ".join(problems) if problems else str(name or product))


def _product_problems(found: Mapping[str, Any], amount: Decimal, currency: str) -> list[str]:
    """What keeps ``amount`` ``currency`` from being ordered from this catalog entry: the
    currency among its ``currency_codes``, the amount inside one of its ``skus`` ranges."""
    problems: list[str] = []
    currencies = found.get("currency_codes")
    if isinstance(currencies, list) and currencies and currency not in currencies:
        listed = ", ".join(map(str, currencies))
        problems.append(f"{currency} is not one of its currencies ({listed})")
    ranges = [(_number(s.get("min")), _number(s.get("max")))
              for s in found.get("skus") or [] if isinstance(s, dict)]
    if ranges and not any((low is None or low <= amount) and (high is None or amount <= high)
                          for low, high in ranges):
        allowed = ", ".join(_range(low, high) for low, high in ranges)
        problems.append(f"{amount:.2f} is outside its values ({allowed})")
    return problems


def _range(low: Decimal | None, high: Decimal | None) -> str:
    if low is not None and low == high:
        return f"{low:.2f}"
    return f"{'-' if low is None else f'{low:.2f}'} to {'-' if high is None else f'{high:.2f}'}"


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
