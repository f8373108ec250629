"""Tremendous: the ``Vendor``, placing orders and looking them up."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from pydantic import SecretStr

from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.transport import RetryPolicy
from poller.vendors.base import bearer_client, mask_email, obj
from poller.vendors.tremendous.catalog import _TremendousCatalog
from poller.vendors.tremendous.settings import NAME, DeliveryMethod
from poller.vendors.tremendous.wire import (
    _ORDER_STATUS,
    _first_reward,
    _is_tremendous_error,
    _order_of,
)

log = structlog.get_logger(__name__)


class TremendousVendor(_TremendousCatalog):
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

