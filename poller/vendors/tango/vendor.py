"""Tango Card: placing orders and looking them up (``TangoVendor``), and its own order list
for the books audit (``TangoOrderBook``); docs/vendors.md, "Tango Card" and "Listing
orders"."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog

from poller.domain.errors import (
    OperatorFacingError,
    TransientVendorError,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.domain.orders import OrderStatus as ListStatus
from poller.domain.orders import VendorOrder
from poller.vendors.base import json_or_none, mask_email, obj
from poller.vendors.books import (
    ListBook,
    int_or_none,
    minor_amount,
    rfc3339,
    text_or_none,
)
from poller.vendors.tango.client import (
    _EXTERNAL_REF,
    _ORDER_STATUS,
    IN_PROCESS_KEY,
    IN_PROCESS_RETRIES,
    IN_PROCESS_WAIT,
    NAME,
    NO_ORDERS_KEY,
    TangoClient,
    _keys_of,
    _order_of,
    _reward_link,
)

log = structlog.get_logger(__name__)


class TangoVendor(TangoClient):
    """The ``Vendor`` (and ``CheckableVendor``) for Tango Card RaaS v2."""

    key_name = "externalRefID"

    def place_order(self, request: OrderRequest) -> OrderResult:
        key = request.idempotency_key
        product = self._product_of(request)
        if not _EXTERNAL_REF.fullmatch(key):
            # Never invent another key: the ledger holds this one.
            raise OperatorFacingError(
                "the idempotency key does not fit Tango's externalRefID (alphanumeric, at most "
                "100 characters)", vendor=NAME)
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
            "utid": product,
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
                    retry_after=IN_PROCESS_WAIT)
            found = self._repeat(key, status)
            if found is not None:
                return found
            raise TransientVendorError(
                f"Tango Card answered HTTP 409 ({', '.join(keys) or 'no key'}) to POST /orders "
                "but the look-up by externalRefID finds no order yet; asking again later",
                vendor=NAME, status=status)
        if 200 <= status < 300:
            order = _order_of(json_or_none(response))
            ref = obj(order).get("externalRefID")
            another = isinstance(ref, str) and ref.lower() != key.lower()
            order = self._created(status, order, another, "POST /orders")
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
                "list of orders", vendor=NAME, status=status)
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
                vendor=NAME, status=status)
        if len(mine) > 1:
            log.warning("vendor.order.duplicates", vendor=NAME, key=idempotency_key,
                        count=len(mine))
        return self._result(mine[0], fallback_email=None)

    def _result(self, order: Mapping[str, Any], *, fallback_email: str | None) -> OrderResult:
        status, status_text = self._state(order, _ORDER_STATUS, order.get("referenceOrderID"))
        email = text_or_none(obj(order.get("recipient")).get("email")) or fallback_email
        if status is OrderStatus.NEEDS_PERSON:
            return OrderResult(
                vendor_order_id=str(order["referenceOrderID"]), status=status,
                delivery="partly issued",
                detail=f"Tango Card order {status_text}: only part of the order was issued; "
                       "look at it in the Tango Card portal before telling the advocate")
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
            detail=f"Tango Card order {status_text or '?'}")



ORDER_STATUS: Mapping[str, ListStatus] = {
    "COMPLETE": ListStatus.COMPLETE,
    "PENDING": ListStatus.PENDING,
    # Partly fulfilled: some money spent, not all delivered; a person looks (raw status kept).
    "PARTIAL": ListStatus.PENDING,
    "FAILED": ListStatus.FAILED,  # Tango refunds the account
}
"""The documented order states; any other is UNKNOWN, shown as it came."""


class TangoOrderBook(ListBook):
    """``OrderBook`` over ``GET /orders`` for the configured account (pages numbered from
    0); the client's own spacing applies as for orders."""

    def _page(self, since: datetime, until: datetime, number: int,
              offset: int) -> tuple[list[Any], int | None]:
        what = "GET /orders (list)"
        v = self._v
        params = {"accountIdentifier": v.account_identifier,
                  "customerIdentifier": v.customer_identifier,
                  "startDate": rfc3339(since), "endDate": rfc3339(until),
                  "elementsPerBlock": self._page_size, "page": number}
        response = v._call("GET", "orders", params=params)
        status = response.status_code
        if status == 404 and number == 0 and NO_ORDERS_KEY in _keys_of(response):
            return [], 0  # Tango's own "no orders found"
        if not 200 <= status < 300:
            v._raise_for(response, what)
        data = obj(json_or_none(response))
        page = data.get("orders")
        if not isinstance(page, list):
            raise v._missing(status, what, "a list of orders")
        paging = obj(data.get("page"))
        answered = int_or_none(paging.get("number"))
        if answered is not None and answered != number:
            raise OperatorFacingError(
                f"Tango Card answered page {answered} when page {number} of {what} was asked "
                "for: its page numbering is not the documented one, so the list cannot be "
                "read completely", vendor=NAME, status=status)
        size = int_or_none(paging.get("elementsPerBlock"))
        if size is not None and size != self._page_size and page:
            raise OperatorFacingError(
                f"Tango Card answered {what} in blocks of {size} when {self._page_size} were "
                "asked for: pages by number would skip or repeat orders",
                vendor=NAME, status=status)
        return page, int_or_none(paging.get("totalCount"))

    def _order(self, item: Any) -> VendorOrder | None:
        if not isinstance(item, dict) or not isinstance(item.get("referenceOrderID"), str | int):
            return None
        created = self._created_at(item, "createdAt", item["referenceOrderID"])
        raw = item.get("status")
        raw_status = raw.upper() if isinstance(raw, str) else ""
        denomination = obj(item.get("denomination"))
        currency = denomination.get("currencyCode")
        amount = minor_amount(denomination.get("value"), currency)
        return VendorOrder(
            vendor=NAME,
            order_id=str(item["referenceOrderID"]),
            external_id=text_or_none(item.get("externalRefID")),
            created_at=created,
            status=ORDER_STATUS.get(raw_status, ListStatus.UNKNOWN),
            raw_status=raw_status or str(raw),
            amount_minor=amount,
            currency=currency if amount is not None and isinstance(currency, str) else None,
            product=text_or_none(item.get("utid")),
            recipient=text_or_none(obj(item.get("recipient")).get("email")))
