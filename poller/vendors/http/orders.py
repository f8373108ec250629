"""The HTTP vendor: the receiver's own order list, read for the books audit.

Optional, like the look-up: ``[vendors.http] orders_url``. The contract (query, signature,
answer, cursor paging) is in ``poller.vendors.http.wire``. Without ``orders_url``,
``order_book`` raises ``NotAuditable``: the audit says it cannot check the receiver rather
than reporting an empty list.

``orders_url`` may carry credentials or be a secret itself, like ``url``: messages, log
lines and exceptions name only its origin. Each page waits for a token from the rate
limiter (none unless ``rate_limit_per_second`` is set), is asked for once and yielded before
the next; an unreadable page raises the adapter's errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from poller.domain.errors import OperatorFacingError
from poller.domain.orders import OrderStatus, VendorOrder
from poller.transport import RetryPolicy
from poller.vendors.base import (
    USER_AGENT,
    SameKeyBook,
    WitnessClient,
    call,
    json_or_none,
    minor_amount,
    origin,
    parse_instant,
    rfc3339,
)
from poller.vendors.http.client import _HttpCalls
from poller.vendors.http.settings import NAME
from poller.vendors.http.wire import SIGNATURE_HEADER, signature
from poller.vendors.ratelimit import TokenBucket

ORDER_STATUS: Mapping[str, OrderStatus] = {
    "accepted": OrderStatus.COMPLETE,
    "pending": OrderStatus.PENDING,
    "refused": OrderStatus.CANCELLED,  # by the contract, a refused order took nothing
    "cancelled": OrderStatus.CANCELLED,
    "failed": OrderStatus.FAILED,
}


class HttpOrderBook(_HttpCalls, SameKeyBook):
    """``OrderBook`` over the receiver's ``orders_url``."""

    vendor = NAME

    def __init__(
        self, orders_url: str, secret: str | SecretStr, *, bucket: TokenBucket | None,
        policy: RetryPolicy = RetryPolicy(), transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        self._url = orders_url  # may hold credentials or a secret path: never quoted
        self.host = origin(orders_url)
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._bucket = bucket
        self._client = WitnessClient(
            target=orders_url,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=policy.timeout, transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpOrderBook(origin={self.host!r})"

    def close(self) -> None:
        self._client.close()

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        cursors: set[str] = set()
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            page, cursor = self._page(since, until, cursor)
            for item in page:
                order = self._order(item)
                if order is None or order.order_id in seen:
                    continue
                seen.add(order.order_id)
                if since <= order.created_at < until:
                    yield order
            if cursor is None:
                return
            if cursor in cursors:
                raise OperatorFacingError(
                    f"{self.host} answered the order list with a next_cursor it gave before: "
                    "the list cannot be read to its end; fix the receiver's order list",
                    vendor=NAME,
                )
            cursors.add(cursor)

    def _page(self, since: datetime, until: datetime,
              cursor: str | None) -> tuple[list[Any], str | None]:
        if self._bucket is not None:
            self._bucket.acquire()
        what = "GET (order list)"
        ours = {"since": rfc3339(since), "until": rfc3339(until)}
        if cursor is not None:
            ours["cursor"] = cursor
        parts = urlsplit(self._url)
        query = (parts.query + "&" if parts.query else "") + urlencode(ours)
        url = urlunsplit(parts._replace(query=query))
        headers = {SIGNATURE_HEADER: signature(self._secret, query.encode(),
                                               int(self._clock()))}
        response = call(self._client, "GET", url, policy=self._policy, sleep=self._sleep,
                        vendor=NAME, label=self.host, where=what, creates=False,
                        reach="the receiver", hide_path=True, headers=headers)
        if not 200 <= response.status_code < 300:
            self._raise_for(response, what, url_key="orders_url")
        data = json_or_none(response)
        page = data.get("orders") if isinstance(data, dict) else None
        following = data.get("next_cursor") if isinstance(data, dict) else None
        if not isinstance(page, list) or not (following is None or isinstance(following, str)):
            raise OperatorFacingError(
                f"{self.host} answered HTTP {response.status_code} to the order list with a "
                'body that is not the documented answer ({"orders": [...], "next_cursor"}); '
                "fix the receiver's order list", vendor=NAME, status=response.status_code,
            )
        return page, following or None

    def _order(self, item: Any) -> VendorOrder | None:
        if not isinstance(item, dict):
            return None
        key = item.get("idempotency_key")
        order_id = item.get("order_id")
        order_id = order_id if isinstance(order_id, str | int) and str(order_id) else key
        created = parse_instant(item.get("created_at"))
        if not isinstance(order_id, str | int) or created is None:
            raise OperatorFacingError(
                f"{self.host} listed an order without an order_id (or idempotency_key) and a "
                "readable created_at; fix the receiver's order list", vendor=NAME,
            )
        raw = item.get("status")
        raw_status = raw.lower() if isinstance(raw, str) else str(raw)
        currency = item.get("currency")
        amount = _decimal_text(item.get("amount"))
        minor = minor_amount(amount, currency) if amount is not None else None
        product, email = item.get("product"), item.get("email")
        return VendorOrder(
            vendor=NAME,
            order_id=str(order_id)[:200],
            external_id=key if isinstance(key, str) and key else None,
            created_at=created,
            status=ORDER_STATUS.get(raw_status, OrderStatus.UNKNOWN),
            raw_status=raw_status[:40],
            amount_minor=minor,
            currency=currency.upper() if minor is not None and isinstance(currency, str)
            else None,
            product=product if isinstance(product, str) and product else None,
            recipient=email if isinstance(email, str) and email else None,
        )


def _decimal_text(value: Any) -> str | None:
    """The contract's decimal-string amount (a JSON number is taken too)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        Decimal(str(value))
    except InvalidOperation:
        return None
    return str(value)
