"""Giftbit: its own order list, read for the books audit (``GET /gifts``).

Giftbit's documentation (apiary.apib "list rewards", and its OpenAPI description) lists no
endpoint that pages through campaigns: ``/campaign`` takes a POST and ``/campaign/{id}``
reads one. What it documents for listing is ``GET /gifts``: every reward (gift) with its
``campaign_id`` (the ``id`` we gave the campaign: our key, see ``wire.campaign_id``),
``campaign_uuid``, ``price_in_cents``, ``brand_code``, ``delivery_status``, ``status`` and
``created_date``, filtered by ``created_date_greater_than`` / ``created_date_less_than``
(``yyyy-MM-dd HH:mm:ss``) and paged with ``limit`` (default 20) and ``offset``, the
envelope saying ``number_of_results``, ``limit``, ``offset`` and ``total_count``.

So each gift is one order here: ``order_id`` is the gift's ``uuid``, ``external_id`` its
``campaign_id``. A campaign has one gift per contact and reward-poller sends one contact, so
a second gift under one campaign id is money spent twice, and the audit sees it as a
duplicate. Not documented, so left None: the currency (``price_in_cents`` is in the brand's
currency, which the gift does not name) and the recipient (``recipient_email`` is a filter;
it is read when an answer carries it).

Dates are Pacific time (the documentation says "Pacific Standard Time"; read here as the
America/Los_Angeles zone). The filter bounds are sent a second wider than the period (whether
they are inclusive is not documented) and orders outside [since, until) are dropped here.
Paging stops at ``total_count`` (or an empty page): a ``limit`` the server caps lower is
still read whole. Each page waits for a token from the rate limiter (Giftbit documents
adaptive limiting and no rate: none unless ``rate_limit_per_second`` is set), is asked for
once and yielded before the next; an unreadable page raises, never a short list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from poller.domain.errors import TransientVendorError
from poller.domain.orders import OrderStatus, VendorOrder
from poller.vendors.base import json_or_none, read_pages
from poller.vendors.giftbit.settings import NAME
from poller.vendors.giftbit.vendor import GiftbitVendor
from poller.vendors.giftbit.wire import campaign_id, is_our_campaign
from poller.vendors.ratelimit import TokenBucket

PAGE_SIZE = 100
PACIFIC = ZoneInfo("America/Los_Angeles")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

GIFT_STATUS: Mapping[str, OrderStatus] = {
    "REDEEMED": OrderStatus.COMPLETE,
    "TO_CHARITY": OrderStatus.COMPLETE,  # deprecated
    # Delivered, not claimed in time: whether Giftbit returns the value is not documented.
    "EXPIRED": OrderStatus.COMPLETE,
    "GIVER_CANCELLED": OrderStatus.CANCELLED,
}
"""Gift ``status`` values that decide alone; ``SENT_AND_REDEEMABLE`` is decided by the
``delivery_status`` (``DELIVERY_STATUS``)."""

DELIVERY_STATUS: Mapping[str, OrderStatus] = {
    "DELIVERED": OrderStatus.COMPLETE,
    "LINKCREATED": OrderStatus.COMPLETE,  # deprecated
    "UNSENT": OrderStatus.PENDING,
    "TEMPORARILY_UNDELIVERABLE": OrderStatus.PENDING,
    "UNDELIVERABLE": OrderStatus.FAILED,
    "UNSUBSCRIBED": OrderStatus.FAILED,
    "COMPLAINT": OrderStatus.FAILED,
}


def gift_status(status: str, delivery: str) -> OrderStatus:
    if status in GIFT_STATUS:
        return GIFT_STATUS[status]
    if status == "SENT_AND_REDEEMABLE":
        return DELIVERY_STATUS.get(delivery, OrderStatus.UNKNOWN)
    return OrderStatus.UNKNOWN


def pacific(moment: datetime) -> str:
    """``moment`` as Giftbit's filters take it: Pacific time, ``yyyy-MM-dd HH:mm:ss``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(PACIFIC).strftime(DATE_FORMAT)


def from_pacific(value: Any) -> datetime | None:
    """Giftbit's ``yyyy-MM-dd HH:mm:ss`` (Pacific) as an aware datetime (an ISO 8601 text
    with an offset is taken as it says)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=PACIFIC) if moment.tzinfo is None else moment


class GiftbitOrderBook:
    """``OrderBook`` over ``GET /gifts``, through a ``GiftbitVendor``'s client (its auth,
    retries and error mapping)."""

    vendor = NAME

    def __init__(self, client: GiftbitVendor, *, bucket: TokenBucket | None,
                 page_size: int = PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._v = client
        self._bucket = bucket
        self._page_size = page_size

    def __repr__(self) -> str:
        return f"GiftbitOrderBook(base_url={self._v.base_url!r})"

    def close(self) -> None:
        self._v.close()

    def vendor_key(self, idempotency_key: str) -> str:
        """A gift lists its campaign's id, which is our key made to fit Giftbit's id."""
        return campaign_id(idempotency_key)

    def is_ours(self, external_id: str | None) -> bool:
        return external_id is not None and is_our_campaign(external_id)

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        return read_pages(lambda number, offset: self._page(since, until, offset), self._order,
                          since=since, until=until, page_size=self._page_size)

    def _page(self, since: datetime, until: datetime,
              offset: int) -> tuple[list[Any], int | None]:
        if self._bucket is not None:
            self._bucket.acquire()
        what = "GET /gifts (list)"
        params = {"created_date_greater_than": pacific(since - timedelta(seconds=1)),
                  "created_date_less_than": pacific(until + timedelta(seconds=1)),
                  "limit": self._page_size, "offset": offset}
        v = self._v
        response = v._call("GET", "gifts", params=params)
        if response.status_code != 200:  # Giftbit: only 200 is success
            v._raise_for(response, what)
        data = json_or_none(response)
        page = data.get("gifts") if isinstance(data, dict) else None
        if not isinstance(page, list):
            raise TransientVendorError(
                f"Giftbit answered HTTP 200 to {what} without a list of gifts", vendor=NAME,
                status=200,
            )
        total = data.get("total_count") if isinstance(data, dict) else None
        return page, total if isinstance(total, int) and not isinstance(total, bool) else None

    def _order(self, item: Any) -> VendorOrder | None:
        if not isinstance(item, dict) or not isinstance(item.get("uuid"), str):
            return None
        created = from_pacific(item.get("created_date"))
        if created is None:
            raise TransientVendorError(
                f"Giftbit listed gift {item['uuid'][:40]!r} without a readable created_date",
                vendor=NAME,
            )
        status = str(item.get("status") or "").upper()
        delivery = str(item.get("delivery_status") or "").upper()
        price = item.get("price_in_cents")
        campaign = item.get("campaign_id")
        brand = item.get("brand_code")
        email = item.get("recipient_email")
        return VendorOrder(
            vendor=NAME,
            order_id=item["uuid"],
            external_id=campaign if isinstance(campaign, str) and campaign else None,
            created_at=created.astimezone(UTC),
            status=gift_status(status, delivery),
            raw_status=f"{status or '?'}/{delivery or '?'}",
            amount_minor=price if isinstance(price, int) and not isinstance(price, bool)
            else None,
            currency=None,
            product=brand if isinstance(brand, str) and brand else None,
            recipient=email if isinstance(email, str) and email else None,
        )
