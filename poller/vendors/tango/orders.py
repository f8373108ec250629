"""Tango Card: its own order list, read for the books audit (``GET /orders``).

Tango documents ``GET /orders`` with ``accountIdentifier``, ``customerIdentifier``,
``externalRefID``, ``startDate`` / ``endDate`` (RFC 3339 date or date-time),
``elementsPerBlock`` and ``page``; the answer is ``{"orders": [...], "page":
{"elementsPerBlock", "number", "resultCount", "totalCount"}}`` (OrderListView). Pages are
numbered from 0 (the documented empty answer says ``"number": 0``); an answer naming another
page than the one asked for is refused rather than read twice or skipped. Whether the date
bounds are inclusive is not documented: orders outside [since, until) are dropped here.
The largest ``elementsPerBlock`` is not documented: ``PAGE_SIZE`` (100) is used.
Sources in docs/vendors.md ("Listing orders").

Tango allows one request a second on every endpoint: each page waits for a token from the
vendor's rate limiter, and the client's own throttle spaces every request (retries included)
as for orders. Each page is asked for once and its orders yielded before the next is asked
for; an unreadable page raises the adapter's errors, never a short list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from poller.domain.errors import OperatorFacingError, TransientVendorError
from poller.domain.orders import OrderStatus, VendorOrder
from poller.vendors.base import (
    SameKeyBook,
    json_or_none,
    minor_amount,
    obj,
    parse_instant,
    read_pages,
    rfc3339,
)
from poller.vendors.ratelimit import TokenBucket
from poller.vendors.tango.settings import NAME
from poller.vendors.tango.vendor import TangoVendor
from poller.vendors.tango.wire import NO_ORDERS_KEY, _keys_of

PAGE_SIZE = 100

ORDER_STATUS: Mapping[str, OrderStatus] = {
    "COMPLETE": OrderStatus.COMPLETE,
    "PENDING": OrderStatus.PENDING,
    # Partly fulfilled: some money spent, not all delivered; a person looks (raw status kept).
    "PARTIAL": OrderStatus.PENDING,
    "FAILED": OrderStatus.FAILED,  # Tango refunds the account
}
"""The documented order states; any other is UNKNOWN, shown as it came."""


class TangoOrderBook(SameKeyBook):
    """``OrderBook`` over ``GET /orders`` for the configured account, through a
    ``TangoVendor``'s client (its auth, throttle, retries and error mapping)."""

    vendor = NAME

    def __init__(self, client: TangoVendor, *, bucket: TokenBucket | None,
                 page_size: int = PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._v = client
        self._bucket = bucket
        self._page_size = page_size

    def __repr__(self) -> str:
        return f"TangoOrderBook(base_url={self._v.base_url!r})"

    def close(self) -> None:
        self._v.close()

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        return read_pages(lambda number, offset: self._page(since, until, number), self._order,
                          since=since, until=until, page_size=self._page_size)

    def _page(self, since: datetime, until: datetime,
              number: int) -> tuple[list[Any], int | None]:
        if self._bucket is not None:
            self._bucket.acquire()
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
        data = json_or_none(response)
        page = data.get("orders") if isinstance(data, dict) else None
        if not isinstance(page, list):
            raise TransientVendorError(
                f"Tango Card answered HTTP {status} to {what} without a list of orders",
                vendor=NAME, status=status,
            )
        paging = obj(data.get("page"))
        answered = paging.get("number")
        if isinstance(answered, int) and not isinstance(answered, bool) and answered != number:
            raise OperatorFacingError(
                f"Tango Card answered page {answered} when page {number} of {what} was asked "
                "for: its page numbering is not the documented one, so the list cannot be "
                "read completely", vendor=NAME, status=status,
            )
        size = paging.get("elementsPerBlock")
        if isinstance(size, int) and not isinstance(size, bool) and size != self._page_size \
                and page:
            raise OperatorFacingError(
                f"Tango Card answered {what} in blocks of {size} when {self._page_size} were "
                "asked for: pages by number would skip or repeat orders",
                vendor=NAME, status=status,
            )
        total = paging.get("totalCount")
        return page, total if isinstance(total, int) and not isinstance(total, bool) else None

    def _order(self, item: Any) -> VendorOrder | None:
        if not isinstance(item, dict) or not isinstance(item.get("referenceOrderID"), str | int):
            return None
        created = parse_instant(item.get("createdAt"))
        if created is None:
            raise TransientVendorError(
                f"Tango Card listed order {str(item['referenceOrderID'])[:40]!r} without a "
                "readable createdAt", vendor=NAME,
            )
        raw = item.get("status")
        raw_status = raw.upper() if isinstance(raw, str) else ""
        denomination = obj(item.get("denomination"))
        currency = denomination.get("currencyCode")
        amount = minor_amount(denomination.get("value"), currency)
        external = item.get("externalRefID")
        email = obj(item.get("recipient")).get("email")
        utid = item.get("utid")
        return VendorOrder(
            vendor=NAME,
            order_id=str(item["referenceOrderID"]),
            external_id=external if isinstance(external, str) and external else None,
            created_at=created,
            status=ORDER_STATUS.get(raw_status, OrderStatus.UNKNOWN),
            raw_status=raw_status or str(raw),
            amount_minor=amount,
            currency=currency if amount is not None and isinstance(currency, str) else None,
            product=utid if isinstance(utid, str) and utid else None,
            recipient=email if isinstance(email, str) and email else None,
        )
