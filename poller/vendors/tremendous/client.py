"""Tremendous: the shapes of its answers, its calls and the mapping of its errors, its
funding sources and products (docs/vendors.md, "Tremendous")."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, NoReturn
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from poller.domain.errors import (
    RECIPIENT_INVALID,
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    VendorError,
)
from poller.domain.model import OrderRequest, OrderStatus
from poller.ports import VendorCheck
from poller.transport import RetryPolicy
from poller.vendors.base import (
    ApiVendor,
    decimal_of,
    json_or_none,
    obj,
)

NAME = "tremendous"
DeliveryMethod = Literal["EMAIL", "LINK"]

_ORDER_STATUS: Mapping[str, OrderStatus] = {
    "EXECUTED": OrderStatus.COMPLETE,
    "OPEN": OrderStatus.PENDING,
    "CART": OrderStatus.PENDING,
    "PENDING APPROVAL": OrderStatus.PENDING,
    "PENDING INTERNAL PAYMENT APPROVAL": OrderStatus.PENDING,
    "PENDING SETTLEMENT": OrderStatus.PENDING,
    "FAILED": OrderStatus.FAILED,
    "CANCELED": OrderStatus.FAILED,
    "CANCELLED": OrderStatus.FAILED,
}


def _order_of(response: httpx.Response) -> dict[str, Any] | None:
    order = obj(json_or_none(response)).get("order")
    if not isinstance(order, dict) or not isinstance(order.get("id"), str | int):
        return None
    return order


def _errors_of(response: httpx.Response) -> dict[str, Any] | None:
    """The ``errors`` object of an error body, tolerating a list of them."""
    errors = obj(json_or_none(response)).get("errors")
    if isinstance(errors, list):
        errors = next((e for e in errors if isinstance(e, dict)), None)
    return errors if isinstance(errors, dict) else None


def _is_tremendous_error(response: httpx.Response) -> bool:
    """A 404 Tremendous itself wrote, not a wrong base_url's: only it may say "no such
    order" (a bare 404 holds for an operator, the safe way to be wrong)."""
    return _errors_of(response) is not None


_RECIPIENT_WORDS = frozenset({"recipient", "recipients", "email"})
_PRODUCT_WORDS = frozenset(
    {"product", "products", "value", "denomination", "currency_code", "sku", "catalog"}
)
_CONFIG_WORDS = frozenset({"payment", "funding_source_id", "delivery", "method"})
_RECIPIENT_TEXT = re.compile(r"\b(recipient|e-?mail)\b", re.IGNORECASE)
_PRODUCT_TEXT = re.compile(r"\b(products?|denomination|sku|catalog)\b", re.IGNORECASE)


def _paths(payload: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The key paths leading to each leaf of an error payload."""
    if isinstance(payload, dict):
        if not payload and prefix:
            yield prefix
        for key, value in payload.items():
            yield from _paths(value, (*prefix, str(key).lower()))
    elif isinstance(payload, list) and any(isinstance(v, dict | list) for v in payload):
        for value in payload:
            yield from _paths(value, prefix)
    elif prefix:
        yield prefix


def _classify_invalid(errors: Mapping[str, Any] | None) -> str:
    """``recipient``, ``product``, ``config``, ``both`` or ``other`` for a 400/422 body;
    leaning towards ``other`` like Tango's ``classify_errors`` (docs/vendors.md)."""
    if not errors:
        return "other"
    kinds: set[str] = set()
    for path in _paths(errors.get("payload")):
        words = set(path)
        if words & _RECIPIENT_WORDS:
            kinds.add("recipient")
        elif words & _PRODUCT_WORDS:
            kinds.add("product")
        elif words & _CONFIG_WORDS:
            kinds.add("config")
        else:
            kinds.add("other")
    if not kinds:
        message = errors.get("message")
        text = message if isinstance(message, str) else ""
        if _RECIPIENT_TEXT.search(text):
            kinds.add("recipient")
        if _PRODUCT_TEXT.search(text):
            kinds.add("product")
        if len(kinds) != 1:
            return "other"
    if "other" in kinds or not kinds:
        return "other"
    if "config" in kinds:
        return "config" if kinds <= {"config", "product"} else "other"
    return "both" if len(kinds) == 2 else kinds.pop()


def _product_problems(found: Mapping[str, Any], amount: Decimal, currency: str) -> list[str]:
    """What keeps ``amount`` ``currency`` from being ordered from this catalog entry: the
    currency among its ``currency_codes``, the amount inside one of its ``skus`` ranges."""
    problems: list[str] = []
    currencies = found.get("currency_codes")
    if isinstance(currencies, list) and currencies and currency not in currencies:
        listed = ", ".join(map(str, currencies))
        problems.append(f"{currency} is not one of its currencies ({listed})")
    ranges = [(decimal_of(s.get("min")), decimal_of(s.get("max")))
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


class TremendousClient(ApiVendor):
    """Tremendous's calls, its error mapping, funding sources and products; the order calls
    are ``TremendousVendor``'s."""

    name = NAME
    label = "Tremendous"
    product_kind = "a product id"

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        funding_source_id: str = "balance",
        delivery_method: DeliveryMethod = "EMAIL",
        *,
        policy: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(base_url, api_key, policy=policy, transport=transport, sleep=sleep)
        self.funding_source_id = funding_source_id
        self.delivery_method = delivery_method

    def _raise_for(self, response: httpx.Response, what: str, *,
                   creating: OrderRequest | None = None) -> NoReturn:
        """``creating``: the order request this answers (a create's 400/422 is classified)."""
        status = response.status_code
        said = self._vendor_message(response)
        suffix = f": {said}" if said else ""
        error: VendorError
        if status == 402:
            error = OperatorFacingError(
                f"not enough funds on funding source {self.funding_source_id!r} at Tremendous "
                f"(HTTP 402){suffix}; top it up and the held redemptions go through",
                vendor=NAME, status=status)
        elif status in (400, 422) and creating is not None:
            error = self._invalid_request(response, status, suffix, creating)
        else:
            error = self._usual_error(response, what, suffix)
        self._failed(error, what)

    def _vendor_message(self, response: httpx.Response) -> str:
        message = obj(_errors_of(response)).get("message")
        if not isinstance(message, str):
            single = obj(json_or_none(response)).get("error")  # the 429 shape
            message = single.get("message") if isinstance(single, dict) else single
        return self._scrub(message) if isinstance(message, str) else ""

    def _invalid_request(self, response: httpx.Response, status: int, suffix: str,
                         request: OrderRequest) -> VendorError:
        kind = _classify_invalid(_errors_of(response))
        if kind == "product" and request.product:
            return self._unavailable_or_config(request, f"HTTP {status}{suffix}", status,
                                               self.product, _product_problems)
        if kind == "config":
            return ConfigFixable(
                f"Tremendous rejected the funding source or delivery settings (HTTP {status})"
                f"{suffix}; fix [vendors.tremendous]", vendor=NAME, status=status)
        if kind in ("recipient", "both"):
            also = " and the product is unavailable" if kind == "both" else ""
            return AdvocateFacingError(
                f"Tremendous: the recipient is invalid{also} (HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID)
        return OperatorFacingError(
            f"Tremendous rejected our request (HTTP {status}): check the configuration"
            f"{suffix}", vendor=NAME, status=status)

    def funding_balance(self) -> dict[str, Any]:
        """The configured funding source: ``{"id", "method", "available_cents"}``.
        ``"balance"`` is Tremendous's alias for the source whose method is ``balance``."""
        data, status = self._get("funding_sources", "GET /funding_sources")
        sources = obj(data).get("funding_sources")
        if not isinstance(sources, list):
            raise self._missing(status, "GET /funding_sources", "a list of funding sources")
        for source in sources:
            if not isinstance(source, dict):
                continue
            if source.get("id") == self.funding_source_id or (
                    self.funding_source_id == "balance" and source.get("method") == "balance"):
                cents = source.get("available_cents", obj(source.get("meta")).get(
                    "available_cents"))
                return {"id": source.get("id"), "method": source.get("method"),
                        "available_cents": cents if isinstance(cents, int) else None}
        raise OperatorFacingError(
            f"Tremendous has no funding source {self.funding_source_id!r} on this account",
            vendor=NAME, status=status)

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
            raise self._missing(response.status_code, "GET /products/<id>", "a product")
        return product

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        """The balance read as USD, the currency of Tremendous balances (docs/vendors.md)."""
        return self._check(products, self._balance, self._products, _product_problems,
                           catalog="product list", catalog_proves=False,
                           unknown="no product {!r} enabled at Tremendous")

    def _balance(self) -> str | None:
        cents = self.funding_balance()["available_cents"]
        return f"{Decimal(cents) / 100:,.2f} USD" if isinstance(cents, int) else None

    def _products(self) -> dict[str, dict[str, Any]]:
        data, status = self._get("products", "GET /products")
        listed = obj(data).get("products")
        if not isinstance(listed, list):
            raise self._missing(status, "GET /products", "a list of products")
        return {str(p["id"]): p for p in listed if isinstance(p, dict) and "id" in p}
