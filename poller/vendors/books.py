"""Reading vendors' own order lists for the books audit (not a vendor: the registry skips
``books``); docs/vendors.md, "Listing orders"."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any, ClassVar

from poller.domain.errors import TransientVendorError
from poller.domain.keys import is_our_key
from poller.domain.money import CurrencyProblem, minor_units, parse_currency
from poller.domain.orders import VendorOrder
from poller.vendors.base import decimal_of, obj
from poller.vendors.ratelimit import TokenBucket

PAGE_SIZE = 100
"""Orders asked for per page of an order list (Tremendous documents at most 100)."""


def minor_amount(value: Any, currency: Any) -> int | None:
    """``value`` (a number in major units, as JSON gives it) in ``currency``'s minor units:
    ``25.0`` USD -> ``2500``. None when either is missing or not what it should be, or the
    value has more decimals than the currency (never rounded into a match)."""
    number = decimal_of(value)
    if number is None or not isinstance(currency, str):
        return None
    try:
        number = number.scaleb(minor_units(parse_currency(currency)))
    except (CurrencyProblem, ArithmeticError, ValueError):
        return None
    return int(number) if number == number.to_integral_value() else None


def parse_instant(value: Any, *, naive: tzinfo = UTC) -> datetime | None:
    """An ISO 8601 / RFC 3339 date-time as an aware datetime (naive means in ``naive``'s
    zone); None when it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=naive)


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as ``2026-05-01T14:11:09Z`` (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SameKeyBook:
    """An ``OrderBook`` whose vendor records our idempotency key as it was sent."""

    def vendor_key(self, idempotency_key: str) -> str:
        return idempotency_key

    def is_ours(self, external_id: str | None) -> bool:
        return is_our_key(external_id)


def in_period(pages: Iterable[list[Any]], order_of: Callable[[Any], VendorOrder | None],
              since: datetime, until: datetime) -> Iterator[VendorOrder]:
    """The orders of an order list read page by page, each page's before the next is asked
    for; orders created outside [since, until) and an order seen twice while paging (a
    newer one moved the offsets) are left out."""
    seen: set[str] = set()
    for items in pages:
        for item in items:
            order = order_of(item)
            if order is None or order.order_id in seen:
                continue
            seen.add(order.order_id)
            if since <= order.created_at < until:
                yield order


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ListBook(SameKeyBook):
    """An ``OrderBook`` over a vendor's own order list, read through its adapter's client
    (auth, retries, error mapping), a token from ``bucket`` before each page
    (docs/vendors.md, "Listing orders")."""

    max_page_size: ClassVar[int | None] = None

    def __init__(self, client: Any, *, bucket: TokenBucket | None,
                 page_size: int = PAGE_SIZE) -> None:
        top = self.max_page_size
        if not 1 <= page_size <= (top or page_size):
            raise ValueError(f"page_size must be between 1 and {top}" if top
                             else "page_size must be at least 1")
        self._v = client
        self.vendor: str = client.name
        self._bucket = bucket
        self._page_size = page_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._v.base_url!r})"

    def close(self) -> None:
        self._v.close()

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        return in_period(self._pages(since, until), self._order, since, until)

    def _pages(self, since: datetime, until: datetime) -> Iterator[list[Any]]:
        """Each page asked for once, after a token. The total decides when given (a page
        the server caps lower is still read whole); without it, a short page is the last."""
        number = offset = 0
        while True:
            if self._bucket is not None:
                self._bucket.acquire()
            items, total = self._page(since, until, number, offset)
            yield items
            offset += len(items)
            number += 1
            if not items or (total is not None and offset >= total) or (
                    total is None and len(items) < self._page_size):
                return

    def _page(self, since: datetime, until: datetime, number: int,
              offset: int) -> tuple[list[Any], int | None]:
        raise NotImplementedError

    def _created_at(self, item: dict[str, Any], field: str, order_id: Any, *,
                    naive: tzinfo = UTC) -> datetime:
        created = parse_instant(item.get(field), naive=naive)
        if created is None:
            raise TransientVendorError(f"{self._v.label} listed order {str(order_id)[:40]!r} "
                                       f"without a readable {field}", vendor=self.vendor)
        return created

    def _listed(self, path: str, what: str, key: str,
                params: dict[str, Any]) -> tuple[list[Any], int | None]:
        """A page answered as ``{key: [...], "total_count": n}``."""
        data, status = self._v._get(path, what, params=params)
        page = obj(data).get(key)
        if not isinstance(page, list):
            raise self._v._missing(status, what, f"a list of {key}")
        return page, int_or_none(obj(data).get("total_count"))

    def _order(self, item: Any) -> VendorOrder | None:
        raise NotImplementedError
