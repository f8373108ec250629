"""The vendors' own order lists, as the books audit reads them (``poller.vendors.<name>.
orders``), and the stand-ins' answers to them.

* Each reader against a cassette composed from the vendor's documented list example
  (``cassettes/orders``, see ``doc_cassettes.py``): the orders it yields, field by field.
* Each stand-in answers a list request in the cassette's shape.
* Paging against the stand-in: 10,000 orders read with each page asked for exactly once
  (counted at the stand-in), never faster than the rate limit (measured on the limiter's
  own clock, which the test drives); an error on page 3 raises instead of ending the list.
* What ``/_standin/inject`` adds (an orphan, a duplicate, a mismatch) is in the list.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import structlog

from poller.core.redact import DEFAULT_SECRET_URL_KEYS, is_secret_url_key
from poller.domain.errors import (
    NotAuditable,
    OperatorFacingError,
    TransientVendorError,
    VendorUnreachable,
)
from poller.domain.keys import is_our_key
from poller.domain.orders import OrderStatus, VendorOrder
from poller.sandbox import http_receiver
from poller.sandbox.server import ServerThread
from poller.sandbox.tremendous import API_PREFIX as TREMENDOUS_PREFIX
from poller.sandbox.tremendous import TremendousState
from poller.sandbox.tremendous import create_app as tremendous_app
from poller.transport import RetryPolicy
from poller.vendors import BuildContext, build_order_book, validate_settings
from poller.vendors.giftbit import GiftbitOrderBook, GiftbitVendor
from poller.vendors.http import HttpOrderBook
from poller.vendors.ratelimit import HEADROOM, TokenBucket
from poller.vendors.tango import TangoOrderBook, TangoVendor
from poller.vendors.tremendous import TremendousOrderBook, TremendousVendor

from .doc_cassettes import CASSETTES, interactions, replayer, response_json
from .support import (
    FAST,
    STANDIN_KEY,
    GiftbitStandin,
    ReceiverStandin,
    TangoStandin,
    giftbit_standin,
    make_request,
    receiver_standin,
    tango_standin,
)

LIBRARY = CASSETTES / "orders"
MAY = datetime(2026, 5, 1, tzinfo=UTC)
JUNE = datetime(2026, 6, 1, tzinfo=UTC)
NO_RETRY = RetryPolicy(attempts=1, timeout=5.0)


@dataclass
class FakeClock:
    """The limiter's clock: ``sleep`` moves it on; nothing really waits."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Stamped(httpx.HTTPTransport):
    """A real transport that notes the limiter's clock as each request leaves."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.sent: list[tuple[float, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((self.clock(), str(request.url)))
        return super().handle_request(request)


def assert_within_rate(times: list[float], rate: float) -> None:
    """No two requests closer than the limiter allows (rate less its headroom): at most
    ``rate`` requests in any one-second window of the limiter's clock."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps, "fewer than two requests"
    assert min(gaps) >= 1 / rate - 1e-9
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + 1.0) <= rate


# --- Tremendous -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tremendous() -> Iterator[tuple[str, TremendousState]]:
    state = TremendousState()
    with ServerThread(tremendous_app(state, api_key=STANDIN_KEY)) as url:
        yield url, state


@pytest.fixture
def trem(tremendous: tuple[str, TremendousState]) -> Iterator[tuple[str, TremendousState]]:
    url, state = tremendous
    state.reset()
    yield url, state
    state.reset()


def tremendous_book(url: str, *, bucket: TokenBucket | None = None, page_size: int = 100,
                    transport: httpx.BaseTransport | None = None,
                    policy: RetryPolicy = FAST) -> TremendousOrderBook:
    vendor = TremendousVendor(url + TREMENDOUS_PREFIX, STANDIN_KEY, policy=policy,
                              sleep=lambda s: None, transport=transport)
    return TremendousOrderBook(vendor, bucket=bucket, page_size=page_size)


def test_tremendous_reads_the_documented_list() -> None:
    vendor = TremendousVendor("https://testflight.tremendous.com/api/v2", "REDACTED",
                              policy=NO_RETRY)
    book = TremendousOrderBook(vendor, bucket=None, page_size=2)
    with replayer(LIBRARY).use_cassette("tremendous_list.yaml") as cassette:
        got = list(book.orders(MAY, JUNE))
        assert cassette.all_played
    assert got == [
        VendorOrder(vendor="tremendous", order_id="ORD000000003", external_id="rp3c0ffee",
                    created_at=datetime(2026, 5, 20, 9, 30, tzinfo=UTC),
                    status=OrderStatus.CANCELLED, raw_status="CANCELED", amount_minor=1000,
                    currency="USD", product=None, recipient="carol@example.com"),
        VendorOrder(vendor="tremendous", order_id="ORD000000002", external_id="rp2beef",
                    created_at=datetime(2026, 5, 12, 16, 45, 10, tzinfo=UTC),
                    status=OrderStatus.PENDING, raw_status="PENDING APPROVAL",
                    amount_minor=5000, currency="EUR", product=None,
                    recipient="bob@example.com"),
        VendorOrder(vendor="tremendous", order_id="ORD000000001", external_id="rp1cafe",
                    created_at=datetime(2026, 5, 1, 14, 11, 9, tzinfo=UTC),
                    status=OrderStatus.COMPLETE, raw_status="EXECUTED", amount_minor=2500,
                    currency="USD", product=None, recipient="alice@example.com"),
    ]


def test_tremendous_status_not_documented_is_unknown_as_it_came() -> None:
    vendor = TremendousVendor("https://x.invalid", "k", policy=NO_RETRY)
    book = TremendousOrderBook(vendor, bucket=None)
    order = book._order({"id": "O1", "created_at": "2026-05-02T00:00:00Z",
                         "status": "REVERSED", "rewards": []})
    assert order is not None
    assert order.status is OrderStatus.UNKNOWN
    assert order.raw_status == "REVERSED"
    assert order.amount_minor is None and order.currency is None


def _shape(value: Any) -> Any:
    """Key layout and value types, list items merged."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        merged: dict[str, Any] = {}
        for item in value:
            shaped = _shape(item)
            if isinstance(shaped, dict):
                merged.update(shaped)
            else:
                return [shaped]
        return [merged] if merged else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _fields(shape: Any, keep: set[str], prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(shape, dict):
        for k, v in shape.items():
            path = f"{prefix}.{k}" if prefix else k
            if path in keep:
                out.add(f"{path}:{v if not isinstance(v, dict | list) else type(v).__name__}")
            out |= _fields(v, keep, path)
    elif isinstance(shape, list) and shape:
        out |= _fields(shape[0], keep, f"{prefix}.*")
    return out


TREMENDOUS_FIELDS = {
    "orders", "total_count", "orders.*.id", "orders.*.external_id", "orders.*.created_at",
    "orders.*.status", "orders.*.rewards", "orders.*.rewards.*.value.denomination",
    "orders.*.rewards.*.value.currency_code", "orders.*.rewards.*.recipient.email",
    "orders.*.rewards.*.delivery.status",
}


def test_tremendous_standin_lists_in_the_documented_shape(
    trem: tuple[str, TremendousState],
) -> None:
    url, state = trem
    state.inject("orphan", count=3, created_at="2026-05-03T10:00:00Z")
    state.inject("orphan", external_id="later", created_at="2026-06-03T10:00:00Z")
    recorded = interactions(LIBRARY / "tremendous_list.yaml")
    with httpx.Client(headers={"Authorization": f"Bearer {STANDIN_KEY}"}) as client:
        for interaction in recorded:
            parts = urlsplit(interaction["request"]["uri"])
            answer = client.get(url + parts.path + "?" + parts.query)
            assert answer.status_code == 200
            mine, documented = answer.json(), response_json(interaction)
            assert _fields(_shape(mine), TREMENDOUS_FIELDS) == \
                _fields(_shape(documented), TREMENDOUS_FIELDS)
            assert mine["total_count"] == 3  # the June order is outside the bounds
        newest_first = client.get(url + TREMENDOUS_PREFIX + "/orders",
                                  params={"limit": 500}).json()["orders"]
        assert [o["created_at"] for o in newest_first] == sorted(
            (o["created_at"] for o in newest_first), reverse=True)
        too_many = client.get(url + TREMENDOUS_PREFIX + "/orders", params={"limit": 501})
        assert too_many.status_code == 400


def test_tremendous_reads_10000_orders_each_page_once_within_the_rate(
    trem: tuple[str, TremendousState],
) -> None:
    url, state = trem
    state.inject("orphan", count=10_000, created_at="2026-05-15T12:00:00Z")
    clock = FakeClock()
    bucket = TokenBucket(2.0, headroom=HEADROOM, clock=clock, sleep=clock.sleep)
    stamped = Stamped(clock)
    book = tremendous_book(url, bucket=bucket, transport=stamped)
    got = list(book.orders(MAY, JUNE))
    assert len(got) == 10_000
    assert len({o.order_id for o in got}) == 10_000
    offsets = [int(q["offset"]) for q in state.list_requests]
    assert sorted(offsets) == list(range(0, 10_000, 100))  # each page exactly once
    assert len(stamped.sent) == 100
    assert_within_rate([t for t, _ in stamped.sent], 2.0)


def test_tremendous_streams_and_an_error_on_page_3_raises(
    trem: tuple[str, TremendousState],
) -> None:
    url, state = trem
    state.inject("orphan", count=500, created_at="2026-05-15T12:00:00Z")
    orders = tremendous_book(url).orders(MAY, JUNE)
    first_two_pages = [next(orders) for _ in range(200)]
    assert len(state.list_requests) == 2  # nothing read ahead
    state.fail(500, None, method="GET", path="/orders")
    with pytest.raises(TransientVendorError, match="HTTP 500"):
        next(orders)
    assert len(first_two_pages) == 200


def test_tremendous_unreachable_list_raises_not_an_empty_list() -> None:
    book = tremendous_book("http://127.0.0.1:9", policy=NO_RETRY)
    with pytest.raises(VendorUnreachable):
        list(book.orders(MAY, JUNE))


def test_tremendous_injected_orphan_duplicate_and_mismatch_are_listed(
    trem: tuple[str, TremendousState],
) -> None:
    url, _ = trem
    with httpx.Client(base_url=url) as admin:
        api = {"Authorization": f"Bearer {STANDIN_KEY}"}
        placed = admin.post(TREMENDOUS_PREFIX + "/orders", headers=api, json={
            "external_id": "rpours1", "payment": {"funding_source_id": "balance"},
            "reward": {"products": ["AMZN-US"],
                       "value": {"denomination": 25.0, "currency_code": "USD"},
                       "recipient": {"name": "A", "email": "a@example.com"},
                       "delivery": {"method": "EMAIL"}}})
        assert placed.status_code == 200
        admin.post(TREMENDOUS_PREFIX + "/orders", headers=api, json={
            "external_id": "rpours2", "payment": {"funding_source_id": "balance"},
            "reward": {"products": ["AMZN-US"],
                       "value": {"denomination": 10.0, "currency_code": "USD"},
                       "recipient": {"name": "B", "email": "b@example.com"},
                       "delivery": {"method": "EMAIL"}}})
        for body in ({"kind": "orphan", "external_id": "notours"},
                     {"kind": "duplicate", "external_id": "rpours1"},
                     {"kind": "mismatch", "external_id": "rpours2"}):
            answer = admin.post("/_standin/inject", json=body)
            assert answer.status_code == 200, answer.text
        assert admin.post("/_standin/inject", json={"kind": "bogus"}).status_code == 400
        assert admin.post("/_standin/inject",
                          json={"kind": "mismatch", "external_id": "nope"}).status_code == 404
    now = datetime.now(UTC)
    got = list(tremendous_book(url).orders(datetime(2020, 1, 1, tzinfo=UTC),
                                           now.replace(year=now.year + 1)))
    by_key: dict[str | None, list[VendorOrder]] = {}
    for order in got:
        by_key.setdefault(order.external_id, []).append(order)
    assert len(by_key["notours"]) == 1
    assert len(by_key["rpours1"]) == 2
    assert len({o.order_id for o in by_key["rpours1"]}) == 2
    assert [o.amount_minor for o in by_key["rpours2"]] == [1100]


def test_tremendous_order_book_is_built_from_its_section() -> None:
    settings = validate_settings("tremendous", {"api_key": "k", "base_url": "https://x.invalid"})
    book = build_order_book("tremendous", settings, BuildContext(policy=FAST))
    assert isinstance(book, TremendousOrderBook)
    assert book.vendor == "tremendous"
    assert book._bucket is not None and book._bucket.rate == 2.0  # documented default
    configured = build_order_book("tremendous", settings,
                                  BuildContext(policy=FAST, rate_limit_per_second=5.0))
    assert isinstance(configured, TremendousOrderBook)
    assert configured._bucket is not None and configured._bucket.rate == 5.0


def test_manual_has_no_order_list() -> None:
    settings = validate_settings("manual", {})
    with pytest.raises(NotAuditable, match="no order list to read"):
        build_order_book("manual", settings, BuildContext(policy=FAST))


# --- Tango Card -------------------------------------------------------------------------------


@pytest.fixture
def tango() -> Iterator[TangoStandin]:
    standin = tango_standin()
    yield standin
    standin.state.reset()


def tango_book(standin: TangoStandin, *, clock: FakeClock | None = None,
               bucket: TokenBucket | None = None, page_size: int = 100,
               transport: httpx.BaseTransport | None = None) -> TangoOrderBook:
    clock = clock or FakeClock()
    vendor = TangoVendor(standin.base_url, standin.platform_name, standin.platform_key,
                         standin.customer, standin.account, policy=FAST, sleep=clock.sleep,
                         monotonic=clock, transport=transport)
    return TangoOrderBook(vendor, bucket=bucket, page_size=page_size)


def test_tango_reads_the_documented_list() -> None:
    vendor = TangoVendor("https://integration-api.tangocard.com/raas/v2", "platform",
                         "REDACTED", "standin-customer", "standin-account", policy=NO_RETRY,
                         sleep=lambda s: None)
    book = TangoOrderBook(vendor, bucket=None, page_size=2)
    with replayer(LIBRARY).use_cassette("tango_list.yaml") as cassette:
        got = list(book.orders(MAY, JUNE))
        assert cassette.all_played
    common = {"vendor": "tango", "currency": "USD", "product": "U561593"}
    assert got == [
        VendorOrder(order_id="RA260501-1024-36", external_id="rp1cafe",
                    created_at=datetime(2026, 5, 1, 14, 11, 9, 362000, tzinfo=UTC),
                    status=OrderStatus.COMPLETE, raw_status="COMPLETE", amount_minor=2500,
                    recipient="alice@example.com", **common),
        VendorOrder(order_id="RA260512-2048-11", external_id="rp2beef",
                    created_at=datetime(2026, 5, 12, 16, 45, 10, 4000, tzinfo=UTC),
                    status=OrderStatus.PENDING, raw_status="PENDING", amount_minor=5000,
                    recipient="bob@example.com", **common),
        VendorOrder(order_id="RA260520-4096-02", external_id="rp3c0ffee",
                    created_at=datetime(2026, 5, 20, 9, 30, tzinfo=UTC),
                    status=OrderStatus.FAILED, raw_status="FAILED", amount_minor=1000,
                    recipient="carol@example.com", **common),
    ]


TANGO_FIELDS = {
    "orders", "page", "page.number", "page.elementsPerBlock", "page.resultCount",
    "page.totalCount", "orders.*.referenceOrderID", "orders.*.externalRefID",
    "orders.*.createdAt", "orders.*.status", "orders.*.utid", "orders.*.denomination.value",
    "orders.*.denomination.currencyCode", "orders.*.recipient.email",
}


def test_tango_standin_lists_in_the_documented_shape(tango: TangoStandin) -> None:
    tango.state.inject("orphan", count=3, created_at="2026-05-03T10:00:00.000Z")
    tango.state.inject("orphan", created_at="2026-06-03T10:00:00.000Z")
    recorded = interactions(LIBRARY / "tango_list.yaml")
    auth = httpx.BasicAuth(tango.platform_name, tango.platform_key)
    with httpx.Client(auth=auth) as client:
        for index, interaction in enumerate(recorded):
            parts = urlsplit(interaction["request"]["uri"])
            answer = client.get(tango.url + parts.path + "?" + parts.query)
            assert answer.status_code == 200
            mine, documented = answer.json(), response_json(interaction)
            assert _fields(_shape(mine), TANGO_FIELDS) == \
                _fields(_shape(documented), TANGO_FIELDS)
            assert mine["page"]["number"] == index
            assert mine["page"]["totalCount"] == 3  # the June order is outside the dates
        assert not any("reward" in o for o in client.get(
            tango.base_url + "/orders").json()["orders"])  # the list carries no credentials


def test_tango_reads_10000_orders_each_page_once_within_the_rate(tango: TangoStandin) -> None:
    tango.state.inject("orphan", count=10_000, created_at="2026-05-15T12:00:00.000Z")
    clock = FakeClock()
    bucket = TokenBucket(1.0, headroom=HEADROOM, clock=clock, sleep=clock.sleep)
    stamped = Stamped(clock)
    got = list(tango_book(tango, clock=clock, bucket=bucket, transport=stamped)
               .orders(MAY, JUNE))
    assert len(got) == 10_000
    assert len({o.order_id for o in got}) == 10_000
    pages = [int(q["page"]) for q in tango.state.list_requests]
    assert sorted(pages) == list(range(100))  # each page exactly once
    assert len(stamped.sent) == 100
    assert_within_rate([t for t, _ in stamped.sent], 1.0)


def test_tango_streams_and_an_error_on_page_3_raises(tango: TangoStandin) -> None:
    tango.state.inject("orphan", count=500, created_at="2026-05-15T12:00:00.000Z")
    orders = tango_book(tango).orders(MAY, JUNE)
    for _ in range(200):
        next(orders)
    assert len(tango.state.list_requests) == 2
    tango.state.fail(503, None, method="GET", path="/orders")
    with pytest.raises(TransientVendorError, match="HTTP 503"):
        next(orders)


def test_tango_page_numbered_otherwise_is_refused(tango: TangoStandin) -> None:
    def one_based(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page"]) + 1
        return httpx.Response(200, json={"orders": [], "page": {
            "number": number, "elementsPerBlock": 100, "resultCount": 0, "totalCount": 0}})

    book = tango_book(tango, transport=httpx.MockTransport(one_based))
    with pytest.raises(OperatorFacingError, match="page numbering"):
        list(book.orders(MAY, JUNE))


def test_tango_injected_orphan_duplicate_and_mismatch_are_listed(tango: TangoStandin) -> None:
    with httpx.Client(base_url=tango.url) as admin:
        for key in ("rpours1", "rpours2"):
            assert admin.post("/_standin/inject",
                              json={"kind": "orphan", "external_id": key}).status_code == 200
        for body in ({"kind": "orphan", "external_id": "notours"},
                     {"kind": "duplicate", "external_id": "rpours1"},
                     {"kind": "mismatch", "external_id": "rpours2"}):
            answer = admin.post("/_standin/inject", json=body)
            assert answer.status_code == 200, answer.text
    now = datetime.now(UTC)
    got = list(tango_book(tango).orders(datetime(2020, 1, 1, tzinfo=UTC),
                                        now.replace(year=now.year + 1)))
    by_key: dict[str | None, list[VendorOrder]] = {}
    for order in got:
        by_key.setdefault(order.external_id, []).append(order)
    assert len(by_key["notours"]) == 1
    assert len({o.order_id for o in by_key["rpours1"]}) == 2
    assert [o.amount_minor for o in by_key["rpours2"]] == [2600]


def test_tango_order_book_is_built_from_its_section() -> None:
    settings = validate_settings("tango", {
        "platform_name": "p", "platform_key": "k", "customer_identifier": "c",
        "account_identifier": "a", "base_url": "https://x.invalid"})
    book = build_order_book("tango", settings, BuildContext(policy=FAST))
    assert isinstance(book, TangoOrderBook)
    assert book._bucket is not None and book._bucket.rate == 1.0


# --- Giftbit ----------------------------------------------------------------------------------


@pytest.fixture
def giftbit() -> Iterator[GiftbitStandin]:
    standin = giftbit_standin()
    yield standin
    standin.state.reset()


def giftbit_book(standin: GiftbitStandin, *, bucket: TokenBucket | None = None,
                 page_size: int = 100,
                 transport: httpx.BaseTransport | None = None) -> GiftbitOrderBook:
    vendor = GiftbitVendor(standin.base_url, standin.api_key, policy=FAST,
                           sleep=lambda s: None, transport=transport)
    return GiftbitOrderBook(vendor, bucket=bucket, page_size=page_size)


def test_giftbit_reads_the_documented_list() -> None:
    vendor = GiftbitVendor("https://api-testbed.giftbit.com/papi/v1", "REDACTED",
                           policy=NO_RETRY)
    book = GiftbitOrderBook(vendor, bucket=None, page_size=2)
    with replayer(LIBRARY).use_cassette("giftbit_list.yaml") as cassette:
        got = list(book.orders(MAY, JUNE))
        assert cassette.all_played
    common = {"vendor": "giftbit", "currency": None, "product": "amazonus", "recipient": None}
    assert got == [
        VendorOrder(order_id="d30be501ed2546e580c5c9eaf56633d9", external_id="rp3c0ffee",
                    created_at=datetime(2026, 5, 20, 9, 30, tzinfo=UTC),  # 02:30 PDT
                    status=OrderStatus.FAILED, raw_status="SENT_AND_REDEEMABLE/UNDELIVERABLE",
                    amount_minor=1000, **common),
        VendorOrder(order_id="a41cf612fe3657f691d6dafb067744e0", external_id="rp2beef",
                    created_at=datetime(2026, 5, 12, 16, 45, 10, tzinfo=UTC),
                    status=OrderStatus.CANCELLED, raw_status="GIVER_CANCELLED/DELIVERED",
                    amount_minor=5000, **common),
        VendorOrder(order_id="b52d0723af4768a7a2e7eb0c178855f1", external_id="rp1cafe",
                    created_at=datetime(2026, 5, 1, 14, 11, 9, tzinfo=UTC),
                    status=OrderStatus.COMPLETE, raw_status="SENT_AND_REDEEMABLE/DELIVERED",
                    amount_minor=2500, **common),
    ]


@pytest.mark.parametrize(("status", "delivery", "expected"), [
    ("SENT_AND_REDEEMABLE", "UNSENT", OrderStatus.PENDING),
    ("SENT_AND_REDEEMABLE", "TEMPORARILY_UNDELIVERABLE", OrderStatus.PENDING),
    ("SENT_AND_REDEEMABLE", "COMPLAINT", OrderStatus.FAILED),
    ("REDEEMED", "DELIVERED", OrderStatus.COMPLETE),
    ("SENT_AND_REDEEMABLE", "LOST_IN_THE_POST", OrderStatus.UNKNOWN),
    ("ON_HOLD", "DELIVERED", OrderStatus.UNKNOWN),
])
def test_giftbit_gift_statuses(status: str, delivery: str, expected: OrderStatus) -> None:
    from poller.vendors.giftbit import gift_status

    assert gift_status(status, delivery) is expected


GIFTBIT_FIELDS = {
    "gifts", "number_of_results", "limit", "offset", "total_count", "info.code",
    "gifts.*.uuid", "gifts.*.campaign_uuid", "gifts.*.campaign_id", "gifts.*.price_in_cents",
    "gifts.*.brand_code", "gifts.*.delivery_status", "gifts.*.status", "gifts.*.created_date",
}


def test_giftbit_standin_lists_in_the_documented_shape(giftbit: GiftbitStandin) -> None:
    giftbit.state.inject("orphan", count=3, created_at="2026-05-03 10:00:00")
    giftbit.state.inject("orphan", created_at="2026-05-31 17:00:02")  # June in UTC
    recorded = interactions(LIBRARY / "giftbit_list.yaml")
    with httpx.Client(headers={"Authorization": f"Bearer {giftbit.api_key}"}) as client:
        for interaction in recorded:
            parts = urlsplit(interaction["request"]["uri"])
            answer = client.get(giftbit.url + parts.path + "?" + parts.query)
            assert answer.status_code == 200
            mine, documented = answer.json(), response_json(interaction)
            assert _fields(_shape(mine), GIFTBIT_FIELDS) == \
                _fields(_shape(documented), GIFTBIT_FIELDS)
            assert mine["total_count"] == 3
            assert mine["info"]["code"] == documented["info"]["code"]


def test_giftbit_reads_10000_orders_each_page_once_within_the_rate(
    giftbit: GiftbitStandin,
) -> None:
    giftbit.state.inject("orphan", count=10_000, created_at="2026-05-15 12:00:00")
    clock = FakeClock()
    bucket = TokenBucket(5.0, headroom=HEADROOM, clock=clock, sleep=clock.sleep)
    stamped = Stamped(clock)
    got = list(giftbit_book(giftbit, bucket=bucket, transport=stamped).orders(MAY, JUNE))
    assert len(got) == 10_000
    assert len({o.external_id for o in got}) == 10_000
    offsets = [int(q["offset"]) for q in giftbit.state.list_requests]
    assert sorted(offsets) == list(range(0, 10_000, 100))
    assert len(stamped.sent) == 100
    assert_within_rate([t for t, _ in stamped.sent], 5.0)


def test_giftbit_streams_and_an_error_on_page_3_raises(giftbit: GiftbitStandin) -> None:
    giftbit.state.inject("orphan", count=500, created_at="2026-05-15 12:00:00")
    orders = giftbit_book(giftbit).orders(MAY, JUNE)
    for _ in range(200):
        next(orders)
    assert len(giftbit.state.list_requests) == 2
    giftbit.state.fail(502, None, method="GET", path="/gifts")
    with pytest.raises(TransientVendorError, match="HTTP 502"):
        next(orders)


def test_giftbit_capped_limit_is_still_read_whole(giftbit: GiftbitStandin) -> None:
    giftbit.state.inject("orphan", count=250, created_at="2026-05-15 12:00:00")
    real = httpx.HTTPTransport()

    def capped(request: httpx.Request) -> httpx.Response:
        url = request.url.copy_set_param("limit", "40")
        answer = real.handle_request(httpx.Request(request.method, url,
                                                   headers=request.headers))
        answer.read()
        return answer

    got = list(giftbit_book(giftbit, transport=httpx.MockTransport(capped))
               .orders(MAY, JUNE))
    assert len({o.order_id for o in got}) == 250


def test_giftbit_injected_orphan_duplicate_and_mismatch_are_listed(
    giftbit: GiftbitStandin,
) -> None:
    with httpx.Client(base_url=giftbit.url) as admin:
        for key in ("rpours1", "rpours2"):
            assert admin.post("/_standin/inject",
                              json={"kind": "orphan", "external_id": key}).status_code == 200
        for body in ({"kind": "orphan", "external_id": "notours"},
                     {"kind": "duplicate", "external_id": "rpours1"},
                     {"kind": "mismatch", "external_id": "rpours2"}):
            answer = admin.post("/_standin/inject", json=body)
            assert answer.status_code == 200, answer.text
    now = datetime.now(UTC)
    got = list(giftbit_book(giftbit).orders(datetime(2020, 1, 1, tzinfo=UTC),
                                            now.replace(year=now.year + 1)))
    by_key: dict[str | None, list[VendorOrder]] = {}
    for order in got:
        by_key.setdefault(order.external_id, []).append(order)
    assert len(by_key["notours"]) == 1
    assert len({o.order_id for o in by_key["rpours1"]}) == 2
    assert [o.amount_minor for o in by_key["rpours2"]] == [2600]


def test_giftbit_order_book_has_no_default_rate() -> None:
    settings = validate_settings("giftbit", {"api_key": "k", "base_url": "https://x.invalid"})
    book = build_order_book("giftbit", settings, BuildContext(policy=FAST))
    assert isinstance(book, GiftbitOrderBook)
    assert book._bucket is None


# --- the HTTP vendor --------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[ReceiverStandin]:
    standin = receiver_standin()
    yield standin
    standin.state.reset()


def http_book(receiver: ReceiverStandin, *, bucket: TokenBucket | None = None,
              transport: httpx.BaseTransport | None = None,
              url: str | None = None) -> HttpOrderBook:
    return HttpOrderBook(url or receiver.url + http_receiver.ORDERS_PATH, receiver.secret,
                         bucket=bucket, policy=FAST, sleep=lambda s: None,
                         transport=transport)


def test_http_reads_the_contract_list() -> None:
    book = HttpOrderBook("https://hooks.example.com/order-list", "s" * 16, bucket=None,
                         policy=NO_RETRY)
    with replayer(LIBRARY).use_cassette("http_list.yaml") as cassette:
        got = list(book.orders(MAY, JUNE))
        assert cassette.all_played
    assert got == [
        VendorOrder(vendor="http", order_id="HOOK-000001", external_id="rp1cafe",
                    created_at=datetime(2026, 5, 1, 14, 11, 9, tzinfo=UTC),
                    status=OrderStatus.COMPLETE, raw_status="accepted", amount_minor=2500,
                    currency="USD", product="AMZN", recipient="alice@example.com"),
        VendorOrder(vendor="http", order_id="HOOK-000002", external_id="rp2beef",
                    created_at=datetime(2026, 5, 12, 16, 45, 10, tzinfo=UTC),
                    status=OrderStatus.CANCELLED, raw_status="refused", amount_minor=5000,
                    currency="EUR", product=None, recipient="bob@example.com"),
        VendorOrder(vendor="http", order_id="MANUAL-7", external_id=None,
                    created_at=datetime(2026, 5, 20, 9, 30, tzinfo=UTC),
                    status=OrderStatus.PENDING, raw_status="pending", amount_minor=1000,
                    currency="USD", product=None, recipient=None),
    ]


HTTP_FIELDS = {
    "orders", "next_cursor", "orders.*.idempotency_key", "orders.*.order_id",
    "orders.*.created_at", "orders.*.status", "orders.*.amount", "orders.*.currency",
    "orders.*.email",
}


def test_http_receiver_lists_in_the_contract_shape_and_checks_the_signature(
    receiver: ReceiverStandin,
) -> None:
    receiver.state.inject("orphan", external_id="k1", count=150,
                          created_at="2026-05-03T10:00:00Z")
    documented = [response_json(i) for i in interactions(LIBRARY / "http_list.yaml")]
    list(http_book(receiver).orders(MAY, JUNE))
    assert [r["signature_ok"] for r in receiver.state.list_requests] == [True, True]
    assert [r["query"].get("cursor") for r in receiver.state.list_requests] == [None, "100"]
    with httpx.Client() as client:
        unsigned = client.get(receiver.url + http_receiver.ORDERS_PATH,
                              params={"since": "2026-05-01T00:00:00Z"})
        assert unsigned.status_code == 401
        query = "since=2026-05-01T00%3A00%3A00Z&until=2026-06-01T00%3A00%3A00Z"
        from poller.vendors.http import signature

        mine = client.get(receiver.url + http_receiver.ORDERS_PATH + "?" + query, headers={
            "X-Reward-Poller-Signature": signature(receiver.secret, query.encode(),
                                                   int(datetime.now(UTC).timestamp()))}).json()
    assert _fields(_shape(mine), HTTP_FIELDS) == _fields(_shape(documented[0]), HTTP_FIELDS)


def test_http_reads_10000_orders_each_page_once_within_the_rate(
    receiver: ReceiverStandin,
) -> None:
    receiver.state.inject("orphan", count=10_000, created_at="2026-05-15T12:00:00Z")
    clock = FakeClock()
    bucket = TokenBucket(3.0, headroom=HEADROOM, clock=clock, sleep=clock.sleep)
    stamped = Stamped(clock)
    got = list(http_book(receiver, bucket=bucket, transport=stamped).orders(MAY, JUNE))
    assert len({o.order_id for o in got}) == len(got) == 10_000
    cursors = [r["query"].get("cursor", "0") for r in receiver.state.list_requests]
    assert sorted(cursors, key=int) == [str(n) for n in range(0, 10_000, 100)]
    assert len(stamped.sent) == 100
    assert_within_rate([t for t, _ in stamped.sent], 3.0)


def test_http_streams_and_an_error_on_page_3_raises(receiver: ReceiverStandin) -> None:
    receiver.state.inject("orphan", count=500, created_at="2026-05-15T12:00:00Z")
    orders = http_book(receiver).orders(MAY, JUNE)
    for _ in range(200):
        next(orders)
    assert len(receiver.state.list_requests) == 2
    receiver.state.fail(503, None)
    with pytest.raises(TransientVendorError, match="HTTP 503"):
        next(orders)


def test_http_cursor_given_twice_is_an_error_not_a_loop() -> None:
    def stuck(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"orders": [], "next_cursor": "again"})

    book = HttpOrderBook("https://hooks.example.com/list", "s" * 16, bucket=None,
                         policy=NO_RETRY, transport=httpx.MockTransport(stuck))
    with pytest.raises(OperatorFacingError, match="next_cursor"):
        list(book.orders(MAY, JUNE))


def test_http_list_errors_name_only_the_origin() -> None:
    book = HttpOrderBook("http://user:hookp4ss-9f2c@127.0.0.1:9/catch/ab12cd34ef56/list",
                         "s" * 16, bucket=None, policy=NO_RETRY)
    with pytest.raises(VendorUnreachable) as caught:
        list(book.orders(MAY, JUNE))
    for part in ("hookp4ss", "ab12cd34ef56", "/catch"):
        assert part not in str(caught.value)
        assert part not in repr(book)


def test_http_injected_orphan_duplicate_and_mismatch_are_listed(
    receiver: ReceiverStandin,
) -> None:
    from poller.vendors.http import HttpVendor

    vendor = HttpVendor(receiver.hook_url, receiver.secret, policy=FAST)
    try:
        ours = [make_request(r, vendor="http") for r in ("h-1", "h-2")]
        for request in ours:
            vendor.place_order(request)
    finally:
        vendor.close()
    with httpx.Client(base_url=receiver.url) as admin:
        for body in ({"kind": "orphan"},
                     {"kind": "duplicate", "external_id": ours[0].idempotency_key},
                     {"kind": "mismatch", "external_id": ours[1].idempotency_key}):
            answer = admin.post("/_standin/inject", json=body)
            assert answer.status_code == 200, answer.text
    now = datetime.now(UTC)
    got = list(http_book(receiver).orders(datetime(2020, 1, 1, tzinfo=UTC),
                                          now.replace(year=now.year + 1)))
    by_key: dict[str | None, list[VendorOrder]] = {}
    for order in got:
        by_key.setdefault(order.external_id, []).append(order)
    orphans = [k for k in by_key if k not in (ours[0].idempotency_key,
                                                 ours[1].idempotency_key)]
    # The orphan carries a key of our shape that no redemption has: the audit's orphan.
    assert len(orphans) == 1 and is_our_key(orphans[0]) and len(by_key[orphans[0]]) == 1
    assert len({o.order_id for o in by_key[ours[0].idempotency_key]}) == 2
    assert [o.amount_minor for o in by_key[ours[1].idempotency_key]] == [2600]


def test_http_without_orders_url_is_not_auditable() -> None:
    settings = validate_settings("http", {"url": "https://hooks.example.com/x",
                                          "secret": "s" * 16})
    with pytest.raises(NotAuditable, match="no orders_url configured"):
        build_order_book("http", settings, BuildContext(policy=FAST))
    with_list = validate_settings("http", {"url": "https://hooks.example.com/x",
                                           "secret": "s" * 16,
                                           "orders_url": "https://hooks.example.com/list"})
    book = build_order_book("http", with_list, BuildContext(policy=FAST))
    assert isinstance(book, HttpOrderBook)
    assert book._bucket is None  # no documented rate: none unless configured
    with pytest.raises(ValueError, match="orders_url"):
        validate_settings("http", {"url": "https://h.example.com", "secret": "s" * 16,
                                   "orders_url": "ftp://h.example.com/list"})


def test_orders_url_is_a_secret_url_key() -> None:
    assert "vendors.*.orders_url" in DEFAULT_SECRET_URL_KEYS
    assert is_secret_url_key("vendors.http.orders_url", DEFAULT_SECRET_URL_KEYS)


# --- reward-poller sandbox --inject -----------------------------------------------------------


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """``run_command`` configures logging for the process: put it back for the next test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_sandbox_inject_adds_to_the_running_standins(
    trem: tuple[str, TremendousState], capsys: pytest.CaptureFixture[str],
    restored_logging: None,
) -> None:
    from poller.cli.main import run_command

    url, state = trem
    port = str(urlsplit(url).port)
    assert run_command(["sandbox", "--tremendous-port", port,
                        "--inject", "tremendous:orphan:notours"]) == 0
    assert run_command(["sandbox", "--tremendous-port", port,
                        "--inject", "tremendous:duplicate:notours",
                        "--inject", "tremendous:mismatch:notours"]) == 0
    out = capsys.readouterr().out
    assert "tremendous: orphan injected: order ORD" in out
    assert out.count("(key notours)") == 3
    listed = list(tremendous_book(url).orders(datetime(2020, 1, 1, tzinfo=UTC),
                                              datetime(2100, 1, 1, tzinfo=UTC)))
    assert len(listed) == 2
    assert sorted(o.amount_minor or 0 for o in listed) == [2500, 2600]
    assert len(state.orders) == 2


def test_sandbox_inject_names_a_bad_request(
    capsys: pytest.CaptureFixture[str], restored_logging: None,
) -> None:
    from poller.cli.main import run_command

    assert run_command(["sandbox", "--inject", "amazon:orphan"]) != 0
    assert "the vendor is one of tremendous, tango, giftbit, http" in capsys.readouterr().err


def test_http_signature_covers_a_query_orders_url_already_has(
    receiver: ReceiverStandin,
) -> None:
    receiver.state.inject("orphan", created_at="2026-05-03T10:00:00Z")
    url = receiver.url + http_receiver.ORDERS_PATH + "?token=ab%2Fcd+ef&team=x"
    got = list(http_book(receiver, url=url).orders(MAY, JUNE))
    assert len(got) == 1
    [request] = receiver.state.list_requests
    assert request["signature_ok"] is True
    assert request["query"]["token"] == "ab/cd ef"


def test_giftbit_orders_are_matched_and_judged_by_their_campaign_id() -> None:
    """A gift lists its campaign's id, which is our 42-character key made to fit Giftbit's
    40: the audit matches a fulfilled row through the book's ``vendor_key`` and still calls
    an unowned gift under such an id an orphan (not someone else's order)."""
    from dataclasses import replace as _replace
    from decimal import Decimal as _Decimal

    from poller.core.audit import Kind, audit_vendor
    from poller.domain.keys import idempotency_key
    from poller.domain.model import LedgerEntry
    from poller.domain.orders import OrderStatus, VendorOrder
    from poller.domain.states import State
    from poller.vendors.giftbit import GiftbitOrderBook, campaign_id

    book = GiftbitOrderBook.__new__(GiftbitOrderBook)  # no client: only the key rules
    since = datetime(2026, 11, 1, tzinfo=UTC)
    owned_key = idempotency_key(namespace="org", source="influitive", redemption_id="r1")
    stray_key = idempotency_key(namespace="org", source="influitive", redemption_id="r2")
    assert campaign_id(owned_key) != owned_key and book.is_ours(campaign_id(stray_key))
    assert not book.is_ours("holiday-campaign-2026")
    row = LedgerEntry(
        pk=1, source="influitive", redemption_id="r1", state=State.FULFILLED, payload={},
        email="a1@example.com", vendor="giftbit", product="AMAZONUS", amount=_Decimal("25.00"),
        currency="USD", idempotency_key=owned_key, vendor_order_id="gift-1",
        created_at=since, updated_at=since, ordered_at=since + timedelta(hours=1))
    gift = VendorOrder(vendor="giftbit", order_id="gift-1", external_id=campaign_id(owned_key),
                       created_at=since + timedelta(hours=1), status=OrderStatus.COMPLETE,
                       raw_status="SENT_AND_REDEEMABLE", amount_minor=2500)
    stray = _replace(gift, order_id="gift-2", external_id=campaign_id(stray_key))
    theirs = _replace(gift, order_id="gift-3", external_id="holiday-campaign-2026")
    audit = audit_vendor("giftbit", [gift, stray, theirs], [row], since=since,
                         until=since + timedelta(days=7), vendor_key=book.vendor_key,
                         is_ours=book.is_ours)
    assert [(d.kind, d.order_id) for d in audit.discrepancies] == [(Kind.ORPHAN, "gift-2")]
    assert audit.matched == 1 and audit.not_ours == 1


def test_every_stand_ins_default_orphan_carries_a_key_of_our_shape_no_redemption_has() -> None:
    # An order under any other key is another system's (not_ours): only counted, never an
    # orphan. What --inject VENDOR:orphan adds must be one the audit reports.
    from poller.sandbox.giftbit import GiftbitState
    from poller.sandbox.http_receiver import ReceiverState
    from poller.sandbox.tango import TangoState

    two = TremendousState().inject("orphan", count=2)
    assert two[0]["external_id"] != two[1]["external_id"]
    keys = [two[1]["external_id"], TangoState().inject("orphan")[0]["externalRefID"],
            GiftbitState().inject("orphan")[0]["campaign_id"],
            ReceiverState().inject("orphan")[0]["idempotency_key"]]
    assert all(is_our_key(k) for k in keys), keys


def test_tremendous_forgets_an_order_over_the_admin_route(
    trem: tuple[str, TremendousState],
) -> None:
    url, state = trem
    kept, dropped = state.inject("orphan", count=2)
    with httpx.Client(base_url=url) as admin:
        answer = admin.post(f"/_standin/orders/{dropped['external_id']}/forget")
        assert answer.status_code == 200
        assert answer.json()["forgotten"]["id"] == dropped["id"]
        assert admin.post(f"/_standin/orders/{dropped['id']}/forget").status_code == 404
        api = {"Authorization": f"Bearer {STANDIN_KEY}"}
        assert admin.get(TREMENDOUS_PREFIX + f"/orders/{dropped['id']}",
                         headers=api).status_code == 404
    listed = list(tremendous_book(url).orders(datetime(2020, 1, 1, tzinfo=UTC),
                                              datetime.now(UTC) + timedelta(days=1)))
    assert [o.order_id for o in listed] == [kept["id"]]
