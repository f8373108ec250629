"""Tremendous: its own order list, read for the books audit (``GET /orders``).

Tremendous documents ``GET /orders`` with ``offset`` and ``limit`` paging (newest first) and
creation-time bounds ``created_at[gte]`` / ``created_at[lte]`` (ISO 8601, both inclusive);
the answer is ``{"orders": [...], "total_count"}``. ``limit`` is documented as at most 100
in one SDK version and 500 in a later one: pages of ``PAGE_SIZE`` (100) hold under both.
Sources in docs/vendors.md ("Listing orders").

Each page is asked for once, after a token from the vendor's rate limiter, and its orders
are yielded before the next page is asked for. An order seen twice while paging (a newer
order moved the offsets) is yielded once: only orders with different ids can be
duplicates. An unreadable page raises the adapter's errors (``VendorUnreachable``,
``TransientVendorError``, ``OperatorFacingError``): never a short list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from poller.domain.errors import TransientVendorError
from poller.domain.orders import OrderStatus, VendorOrder
from poller.vendors.base import (
    SameKeyBook,
    call,
    json_or_none,
    minor_amount,
    obj,
    parse_instant,
    read_pages,
    rfc3339,
)
from poller.vendors.ratelimit import TokenBucket
from poller.vendors.tremendous.settings import NAME
from poller.vendors.tremendous.vendor import TremendousVendor

PAGE_SIZE = 100

ORDER_STATUS: Mapping[str, OrderStatus] = {
    "EXECUTED": OrderStatus.COMPLETE,
    "OPEN": OrderStatus.PENDING,
    "PENDING APPROVAL": OrderStatus.PENDING,
    "PENDING INTERNAL PAYMENT APPROVAL": OrderStatus.PENDING,
    "CART": OrderStatus.PENDING,  # retired, tolerated
    "PENDING SETTLEMENT": OrderStatus.PENDING,  # retired, tolerated
    "CANCELED": OrderStatus.CANCELLED,
    "FAILED": OrderStatus.FAILED,
}
"""The documented order states; any other is UNKNOWN, shown as it came."""


class TremendousOrderBook(SameKeyBook):
    """``OrderBook`` over ``GET /orders``, through a ``TremendousVendor``'s client (its
    auth, retries and error mapping)."""

    vendor = NAME

    def __init__(self, client: TremendousVendor, *, bucket: TokenBucket | None,
                 page_size: int = PAGE_SIZE) -> None:
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}")
        self._v = client
        self._bucket = bucket
        self._page_size = page_size

    def __repr__(self) -> str:
        return f"TremendousOrderBook(base_url={self._v.base_url!r})"

    def close(self) -> None:
        self._v.close()

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        return read_pages(lambda number, offset: self._page(since, until, offset), self._order,
                          since=since, until=until, page_size=self._page_size)

    def _page(self, since: datetime, until: datetime,
              offset: int) -> tuple[list[Any], int | None]:
        if self._bucket is not None:
            self._bucket.acquire()
        what = "GET /orders (list)"
        params = {"offset": offset, "limit": self._page_size,
                  "created_at[gte]": rfc3339(since), "created_at[lte]": rfc3339(until)}
        v = self._v
        response = call(v._client, "GET", "orders", policy=v._policy, sleep=v._sleep,
                        vendor=NAME, label="Tremendous", where=what, creates=False,
                        params=params)
        if not 200 <= response.status_code < 300:
            v._raise_for(response, what)
        data = json_or_none(response)
        page = data.get("orders") if isinstance(data, dict) else None
        if not isinstance(page, list):
            raise TransientVendorError(
                f"Tremendous answered HTTP {response.status_code} to {what} without a list "
                "of orders", vendor=NAME, status=response.status_code,
            )
        total = data.get("total_count") if isinstance(data, dict) else None
        return page, total if isinstance(total, int) and not isinstance(total, bool) else None

    def _order(self, item: Any) -> VendorOrder | None:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str | int):
            return None
        created = parse_instant(item.get("created_at"))
        if created is None:
            raise TransientVendorError(
                f"Tremendous listed order {str(item['id'])[:40]!r} without a readable "
                "created_at", vendor=NAME,
            )
        raw = item.get("status")
        raw_status = raw.upper() if isinstance(raw, str) else ""
        rewards = [r for r in item.get("rewards") or [] if isinstance(r, dict)] \
            if isinstance(item.get("rewards"), list) else []
        amount, currency = _amount(rewards)
        first = rewards[0] if rewards else {}
        products = first.get("products")
        email = obj(first.get("recipient")).get("email")
        external = item.get("external_id")
        return VendorOrder(
            vendor=NAME,
            order_id=str(item["id"]),
            external_id=external if isinstance(external, str) and external else None,
            created_at=created,
            status=ORDER_STATUS.get(raw_status, OrderStatus.UNKNOWN),
            raw_status=raw_status or str(raw),
            amount_minor=amount,
            currency=currency,
            product=products[0] if isinstance(products, list) and products
            and isinstance(products[0], str) else None,
            recipient=email if isinstance(email, str) and email else None,
        )


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
