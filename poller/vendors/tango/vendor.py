"""Tango Card: the ``Vendor``, placing orders and looking them up."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

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
from poller.ports import Cache
from poller.transport import RetryPolicy
from poller.vendors.base import USER_AGENT, json_or_none, mask_email, obj
from poller.vendors.tango.catalog import _TangoCatalog
from poller.vendors.tango.client import _Client, _Throttle
from poller.vendors.tango.settings import (
    IN_PROCESS_RETRIES,
    IN_PROCESS_WAIT,
    MIN_ORDER_INTERVAL,
    NAME,
)
from poller.vendors.tango.wire import (
    _EXTERNAL_REF,
    _ORDER_STATUS,
    IN_PROCESS_KEY,
    NO_ORDERS_KEY,
    _keys_of,
    _order_of,
    _reward_link,
)

log = structlog.get_logger(__name__)


class TangoVendor(_TangoCatalog):
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

