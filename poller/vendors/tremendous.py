"""Tremendous (API v2): the first vendor adapter.

What Tremendous promises (docs/vendors.md, with sources) and what this module assumes on
top of it:

* ``POST /orders`` is idempotent on ``external_id``: 200 is a new order; 201 says the
  ``external_id`` was used before and returns the first order (nothing new is created);
  202 says the order is being created in the background: PENDING, looked up by
  ``external_id`` on later cycles. A 409 (listed by the SDK, unexplained) is answered by
  looking the order up by key.
* ``GET /orders/{external_id}`` finds the order by our key; a 404 in Tremendous's error
  shape means "no such order", any other 404 a wrong ``base_url``.
* Order states: ``EXECUTED`` is placed; ``OPEN``, ``PENDING APPROVAL``, ``PENDING INTERNAL
  PAYMENT APPROVAL`` (and the retired ``CART``, ``PENDING SETTLEMENT``) are pending;
  ``FAILED`` and ``CANCELED`` failed. An ``EXECUTED`` order is complete only when its
  reward's delivery is ``SUCCEEDED``: ``FAILED`` (a bounced e-mail) did not reach the
  advocate and needs a person (NEEDS_PERSON, with the masked address); ``SCHEDULED`` and
  ``PENDING`` are re-checked like a pending order.
* Errors come as ``{"errors": {"message", "payload"}}`` (``payload`` mirrors the request);
  a 429 says ``{"error": ...}``. The 400/422 classification reads the payload's paths: a
  problem with the recipient refuses the redemption; one about the product, its value or
  currency is decided by the catalog (``GET /products/{id}``), never by the message's
  wording: a product listed with that currency and value that Tremendous will not sell is
  unavailable (ProductUnavailable: refused by default), an unknown product or a value or
  currency it does not take is the operator's config (ConfigFixable), and a catalog that
  cannot be read decides nothing (the order waits); a funding source is the operator's
  config; anything it cannot place is the operator's to look at.
* No Retry-After is promised on 429; one is honoured when present.

Secrets: the API key lives in the client's headers only (httpx masks it in reprs) and the
reward link only in ``OrderResult.link``; neither reaches a log line or an exception
message (vendor texts are scrubbed of the key and of URLs before they are quoted).
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NoReturn
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
    obj,
    scrub,
    unavailable_or_config,
)

log = structlog.get_logger(__name__)

NAME = "tremendous"
SANDBOX_URL = "https://testflight.tremendous.com/api/v2"
PRODUCTION_URL = "https://api.tremendous.com/api/v2"

DeliveryMethod = Literal["EMAIL", "LINK"]


class Settings(BaseModel):
    """The ``[vendors.tremendous]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = SANDBOX_URL
    api_key: SecretStr
    funding_source_id: str = "balance"
    delivery_method: DeliveryMethod = "EMAIL"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_base_url(value)


def build(settings: Settings, context: BuildContext) -> TremendousVendor:
    return TremendousVendor(
        settings.base_url,
        settings.api_key,
        settings.funding_source_id,
        settings.delivery_method,
        policy=context.policy,
    )


# Order states (docs/vendors.md). An unknown state is read as PENDING: asking again later
# is safe, while calling it COMPLETE or FAILED could mislead the advocate.
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


class TremendousVendor:
    """The ``Vendor`` for Tremendous. One instance holds one HTTP connection pool."""

    name = NAME

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
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.funding_source_id = funding_source_id
        self.delivery_method: DeliveryMethod = delivery_method
        self._policy = policy
        self._sleep = sleep
        self._client = bearer_client(self.base_url, key.get_secret_value(),
                                     timeout=policy.timeout, transport=transport)

    def __repr__(self) -> str:
        return f"TremendousVendor(base_url={self.base_url!r})"

    # --- the Vendor protocol ---------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderResult:
        if not request.product:
            raise ConfigFixable(
                "Tremendous needs a product id and the route gives none: set one in the "
                "routing config",
                vendor=NAME,
            )
        body = {
            "external_id": request.idempotency_key,
            "payment": {"funding_source_id": self.funding_source_id},
            "reward": {
                "products": [request.product],
                "value": {
                    "denomination": float(request.amount),
                    "currency_code": request.currency,
                },
                "recipient": {
                    "name": request.recipient_name or request.recipient_email,
                    "email": request.recipient_email,
                },
                "delivery": {"method": self.delivery_method},
            },
        }
        response = self._call("POST", "orders", creates=True, json=body)
        status = response.status_code
        if status == 409:
            # Listed for create by the SDK, not explained: the key is known to Tremendous
            # in some way, so the order is found by it rather than guessed at.
            found = self.lookup(request.idempotency_key)
            if found is not None:
                log.info("vendor.order.repeat", vendor=NAME, key=request.idempotency_key,
                         order_id=found.vendor_order_id, http_status=status)
                return found
            raise TransientVendorError(
                "Tremendous answered HTTP 409 to POST /orders and has no order under our "
                "external_id yet; asking again later", vendor=NAME, status=status,
            )
        if status == 202:
            # Accepted, created in the background: look it up by external_id later.
            order = _order_of(response)
            log.info("vendor.order.accepted", vendor=NAME, key=request.idempotency_key,
                     http_status=status)
            return OrderResult(
                vendor_order_id=str(order["id"]) if order else request.idempotency_key,
                status=OrderStatus.PENDING, delivery="being created at Tremendous",
                detail="Tremendous accepted the order (HTTP 202); it is created in the "
                       "background",
            )
        if 200 <= status < 300:
            order = _order_of(response)
            if order is None:
                log.warning("vendor.call.outcome_unknown", vendor=NAME, call="POST /orders",
                            http_status=status, error="2xx without an order")
                raise UnknownOutcome(
                    f"Tremendous answered HTTP {status} to POST /orders with a body that is "
                    "not an order: the order may or may not exist",
                    vendor=NAME, status=status,
                )
            external_id = order.get("external_id")
            if external_id is not None and external_id != request.idempotency_key:
                raise UnknownOutcome(
                    f"Tremendous answered HTTP {status} to POST /orders with an order for "
                    "another external_id",
                    vendor=NAME, status=status,
                )
            result = self._result(order, fallback_email=request.recipient_email)
            log.info(
                "vendor.order.repeat" if status == 201 else "vendor.order.placed",
                vendor=NAME, key=request.idempotency_key,
                order_id=result.vendor_order_id, status=result.status.value, http_status=status,
            )
            return result
        self._raise_for(response, "POST /orders", creating=request)

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        response = self._call("GET", f"orders/{quote(idempotency_key, safe='')}")
        status = response.status_code
        if status == 404 and _is_tremendous_error(response):
            return None
        if 200 <= status < 300:
            order = _order_of(response)
            if order is None:
                # A read is safe to repeat: ask again later rather than guess.
                raise TransientVendorError(
                    f"Tremendous answered HTTP {status} to GET /orders/<key> with a body that "
                    "is not an order",
                    vendor=NAME, status=status,
                )
            external_id = order.get("external_id")
            if external_id is not None and external_id != idempotency_key:
                raise OperatorFacingError(
                    "Tremendous answered the look-up by external_id with an order for another "
                    "external_id",
                    vendor=NAME, status=status,
                )
            return self._result(order, fallback_email=None)
        self._raise_for(response, "GET /orders/<key>")

    def close(self) -> None:
        self._client.close()

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

    # --- internals ---------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, creates: bool = False, json: Any = None,
    ) -> httpx.Response:
        """One logical call through the shared retry loop, transport errors classified.

        For a create, an error where any attempt may have reached Tremendous is an
        UnknownOutcome; a read creates nothing, so its transport errors are transient.
        """
        kwargs: dict[str, Any] = {} if json is None else {"json": json}
        return call(self._client, method, path, policy=self._policy, sleep=self._sleep,
                    vendor=NAME, label="Tremendous", where=f"{method} /{path.split('/')[0]}",
                    creates=creates, **kwargs)

    def _raise_for(
        self, response: httpx.Response, what: str, *, creating: OrderRequest | None = None,
    ) -> NoReturn:
        """``creating``: the order request this answers (a create's 400/422 is classified)."""
        status = response.status_code
        said = self._vendor_message(response)
        suffix = f": {said}" if said else ""
        error: Exception
        if status in (401, 403):
            error = OperatorFacingError(
                f"Tremendous rejected the API key (HTTP {status} to {what}){suffix}",
                vendor=NAME, status=status,
            )
        elif status == 402:
            error = OperatorFacingError(
                f"not enough funds on funding source {self.funding_source_id!r} at Tremendous "
                f"(HTTP 402){suffix}; top it up and the held redemptions go through",
                vendor=NAME, status=status,
            )
        elif status == 429:
            error = TransientVendorError(
                f"Tremendous rate limit (HTTP 429 to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status >= 500:
            error = TransientVendorError(
                f"Tremendous server error (HTTP {status} to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status in (400, 422) and creating is not None:
            error = self._invalid_request(response, status, suffix, creating)
        elif status == 404:
            error = OperatorFacingError(
                f"Tremendous answered HTTP 404 to {what}: is base_url right? "
                f"({self.base_url}){suffix}",
                vendor=NAME, status=status,
            )
        else:
            error = OperatorFacingError(
                f"Tremendous answered HTTP {status} to {what}, which this adapter does not "
                f"expect{suffix}",
                vendor=NAME, status=status,
            )
        log.warning(
            "vendor.call.failed", vendor=NAME, call=what, http_status=status,
            error_class=type(error).__name__,
        )
        raise error

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

    def _vendor_message(self, response: httpx.Response) -> str:
        errors = _errors_of(response)
        message = errors.get("message") if errors else None
        if not isinstance(message, str):
            data = json_or_none(response)
            single = data.get("error") if isinstance(data, dict) else None  # the 429 shape
            single = single.get("message") if isinstance(single, dict) else single
            if not isinstance(single, str):
                return ""
            message = single
        return self._scrub(message)

    def _scrub(self, text: str) -> str:
        """Vendor text made safe to quote: no key, no URL, one line, bounded."""
        return scrub(text, self._key.get_secret_value())

    def _result(self, order: Mapping[str, Any], *, fallback_email: str | None) -> OrderResult:
        raw_status = order.get("status")
        status_text = raw_status.upper() if isinstance(raw_status, str) else ""
        status = _ORDER_STATUS.get(status_text)
        if status is None:
            log.warning("vendor.order.unknown_status", vendor=NAME, order_id=order.get("id"),
                        status=str(raw_status)[:40])
            status = OrderStatus.PENDING
        reward = _first_reward(order)
        delivery = obj(reward.get("delivery"))
        recipient = obj(reward.get("recipient"))
        method = delivery.get("method") if isinstance(delivery.get("method"), str) else None
        method = (method or self.delivery_method).upper()
        email = recipient.get("email") if isinstance(recipient.get("email"), str) else None
        email = email or fallback_email
        if method == "EMAIL":
            text = f"sent by email to {mask_email(email)}" if email else "sent by email"
        elif method == "LINK":
            text = "delivered by link"
        else:
            text = f"delivered by {method.lower()}"
        link = delivery.get("link")
        raw_delivery = delivery.get("status")
        delivery_status = raw_delivery.upper() if isinstance(raw_delivery, str) else ""
        detail = f"Tremendous order {status_text or '?'}"
        if delivery_status:
            detail += f", reward delivery {delivery_status}"
        if status is OrderStatus.COMPLETE and delivery_status == "FAILED":
            # EXECUTED, but the e-mail bounced: the advocate has nothing. Never fulfil.
            where = mask_email(email) if email else "the recipient's address"
            log.error("vendor.delivery.failed", vendor=NAME, order_id=str(order["id"]))
            status = OrderStatus.NEEDS_PERSON
            text = "not delivered"
            detail = (f"{detail}: the reward bounced, Tremendous could not deliver it to "
                      f"{where}; correct the address and resend it at Tremendous")
        elif (status is OrderStatus.COMPLETE and method == "EMAIL"
              and delivery_status in ("PENDING", "SCHEDULED")):
            status = OrderStatus.PENDING  # on its way: re-checked like a pending order
        elif status is OrderStatus.COMPLETE and delivery_status not in ("", "SUCCEEDED") \
                and method == "EMAIL":
            log.warning("vendor.order.unknown_status", vendor=NAME, order_id=str(order["id"]),
                        delivery=delivery_status[:40])
            status = OrderStatus.PENDING
        return OrderResult(
            vendor_order_id=str(order["id"]),
            status=status,
            delivery=text,
            link=link if isinstance(link, str) and link else None,
            detail=detail,
        )


def _order_of(response: httpx.Response) -> dict[str, Any] | None:
    data = json_or_none(response)
    order = data.get("order") if isinstance(data, dict) else None
    if not isinstance(order, dict) or not isinstance(order.get("id"), str | int):
        return None
    return order


def _first_reward(order: Mapping[str, Any]) -> Mapping[str, Any]:
    rewards = order.get("rewards")
    if isinstance(rewards, list) and rewards and isinstance(rewards[0], dict):
        return rewards[0]
    return {}


def _errors_of(response: httpx.Response) -> dict[str, Any] | None:
    """The ``errors`` object of an error body, tolerating a list of them."""
    data = json_or_none(response)
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        errors = next((e for e in errors if isinstance(e, dict)), None)
    return errors if isinstance(errors, dict) else None


def _is_tremendous_error(response: httpx.Response) -> bool:
    """A 404 that Tremendous itself wrote (its error shape), as opposed to a wrong base_url
    answered by some other server: only the former may say "no such order".

    That Tremendous's 404 carries the ``errors`` body is unconfirmed (the docs give that
    shape for errors in general); if it does not, look-ups of unknown keys hold for an
    operator instead of returning None, which is the safe way to be wrong."""
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
    """``recipient``, ``product``, ``config``, ``both`` or ``other`` for a 400/422 body.

    The payload layout is unconfirmed, so this leans towards ``other`` (hold for a person):
    refusing a redemption refunds the advocate's points, a hold costs only a look.
    """
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
