"""Tremendous: placing orders and looking them up (``TremendousVendor``), and its own order
list for the books audit (``TremendousOrderBook``); docs/vendors.md, "Tremendous" and
"Listing orders"."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import structlog

from poller.domain.errors import (
    TransientVendorError,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.domain.orders import OrderStatus as ListStatus
from poller.domain.orders import VendorOrder
from poller.vendors.base import mask_email, obj
from poller.vendors.books import (
    PAGE_SIZE,
    ListBook,
    minor_amount,
    rfc3339,
    text_or_none,
)
from poller.vendors.tremendous.client import (
    _ORDER_STATUS,
    NAME,
    TremendousClient,
    _is_tremendous_error,
    _order_of,
)

log = structlog.get_logger(__name__)


class TremendousVendor(TremendousClient):
    """The ``Vendor`` for Tremendous. One instance holds one HTTP connection pool."""

    key_name = "external_id"

    def place_order(self, request: OrderRequest) -> OrderResult:
        product = self._product_of(request)
        body = {
            "external_id": request.idempotency_key,
            "payment": {"funding_source_id": self.funding_source_id},
            "reward": {
                "products": [product],
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
            found = self._repeat(request.idempotency_key, status)
            if found is not None:
                return found
            raise TransientVendorError(
                "Tremendous answered HTTP 409 to POST /orders and has no order under our "
                "external_id yet; asking again later", vendor=NAME, status=status)
        if status == 202:
            # Accepted, created in the background: look it up by external_id later.
            order = _order_of(response)
            log.info("vendor.order.accepted", vendor=NAME, key=request.idempotency_key,
                     http_status=status)
            return OrderResult(
                vendor_order_id=str(order["id"]) if order else request.idempotency_key,
                status=OrderStatus.PENDING, delivery="being created at Tremendous",
                detail="Tremendous accepted the order (HTTP 202); it is created in the "
                       "background")
        if 200 <= status < 300:
            order = _order_of(response)
            another = obj(order).get("external_id") not in (None, request.idempotency_key)
            order = self._created(status, order, another, "POST /orders")
            result = self._result(order, fallback_email=request.recipient_email)
            log.info(
                "vendor.order.repeat" if status == 201 else "vendor.order.placed",
                vendor=NAME, key=request.idempotency_key,
                order_id=result.vendor_order_id, status=result.status.value, http_status=status)
            return result
        self._raise_for(response, "POST /orders", creating=request)

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        response = self._call("GET", f"orders/{quote(idempotency_key, safe='')}")
        status = response.status_code
        if status == 404 and _is_tremendous_error(response):
            return None
        if 200 <= status < 300:
            order = _order_of(response)
            another = obj(order).get("external_id") not in (None, idempotency_key)
            order = self._found(status, order, another, "GET /orders/<key>")
            return self._result(order, fallback_email=None)
        self._raise_for(response, "GET /orders/<key>")

    def _result(self, order: Mapping[str, Any], *, fallback_email: str | None) -> OrderResult:
        status, status_text = self._state(order, _ORDER_STATUS, order.get("id"))
        rewards = order.get("rewards")
        reward = rewards[0] if isinstance(rewards, list) and rewards \
            and isinstance(rewards[0], dict) else {}
        delivery = obj(reward.get("delivery"))
        recipient = obj(reward.get("recipient"))
        method = delivery.get("method") if isinstance(delivery.get("method"), str) else None
        method = (method or self.delivery_method).upper()
        email = text_or_none(recipient.get("email")) or fallback_email
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
            link=text_or_none(link),
            detail=detail)


ORDER_STATUS: Mapping[str, ListStatus] = {
    "EXECUTED": ListStatus.COMPLETE,
    "OPEN": ListStatus.PENDING,
    "PENDING APPROVAL": ListStatus.PENDING,
    "PENDING INTERNAL PAYMENT APPROVAL": ListStatus.PENDING,
    "CART": ListStatus.PENDING,  # retired, tolerated
    "PENDING SETTLEMENT": ListStatus.PENDING,  # retired, tolerated
    "CANCELED": ListStatus.CANCELLED,
    "FAILED": ListStatus.FAILED,
}
"""The order list's states; any other is UNKNOWN, shown as it came."""


class TremendousOrderBook(ListBook):
    """``OrderBook`` over ``GET /orders`` (offset paging, newest first)."""

    max_page_size = PAGE_SIZE

    def _page(self, since: datetime, until: datetime, number: int,
              offset: int) -> tuple[list[Any], int | None]:
        what = "GET /orders (list)"
        params = {"offset": offset, "limit": self._page_size,
                  "created_at[gte]": rfc3339(since), "created_at[lte]": rfc3339(until)}
        return self._listed("orders", what, "orders", params)

    def _order(self, item: Any) -> VendorOrder | None:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str | int):
            return None
        created = self._created_at(item, "created_at", item["id"])
        raw = item.get("status")
        raw_status = raw.upper() if isinstance(raw, str) else ""
        rewards = [r for r in item.get("rewards") or [] if isinstance(r, dict)] \
            if isinstance(item.get("rewards"), list) else []
        amount, currency = _amount(rewards)
        first = rewards[0] if rewards else {}
        products = first.get("products")
        return VendorOrder(
            vendor=NAME,
            order_id=str(item["id"]),
            external_id=text_or_none(item.get("external_id")),
            created_at=created,
            status=ORDER_STATUS.get(raw_status, ListStatus.UNKNOWN),
            raw_status=raw_status or str(raw),
            amount_minor=amount,
            currency=currency,
            product=products[0] if isinstance(products, list) and products
            and isinstance(products[0], str) else None,
            recipient=text_or_none(obj(first.get("recipient")).get("email")))


def _amount(rewards: list[dict[str, Any]]) -> tuple[int | None, str | None]:
    """The order's face value: the sum of its rewards' ``value.denomination`` in one
    currency (None when a reward has none, or they differ in currency)."""
    total = 0
    currency: str | None = None
    for reward in rewards:
        value = obj(reward.get("value"))
        code = value.get("currency_code")
        minor = minor_amount(value.get("denomination"), code)
        if minor is None or not isinstance(code, str) or (currency not in (None, code)):
            return None, None
        currency = code
        total += minor
    return (total, currency) if currency is not None else (None, None)
