"""The generic HTTP vendor: the signature, the wire format, the answers, the optional
look-up route, and a look-up that never sends an order, against the receiver stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from poller import vendors
from poller.domain.errors import (
    AdvocateFacingError,
    LookupUnavailable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
)
from poller.domain.model import OrderStatus, Shipping
from poller.sandbox.http_receiver import BAD_EMAIL, LOOKUP_PATH, OUT_OF_STOCK
from poller.sandbox.server import free_port
from poller.transport import RetryPolicy
from poller.vendors.http import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    HttpVendor,
    Settings,
    order_body,
    signature,
    verify_signature,
)

from .support import FAST, HTTP_SECRET, DictCache, ReceiverStandin, make_request, receiver_standin

MakeVendor = Callable[..., HttpVendor]
NOW = 1_790_000_000


@pytest.fixture
def receiver() -> ReceiverStandin:
    return receiver_standin()


@pytest.fixture
def make_vendor(receiver: ReceiverStandin) -> Iterator[MakeVendor]:
    made: list[HttpVendor] = []

    def make(**overrides: Any) -> HttpVendor:
        kwargs: dict[str, Any] = {"url": receiver.hook_url, "secret": receiver.secret,
                                  "policy": FAST, "sleep": lambda _s: None}
        kwargs.update(overrides)
        vendor = HttpVendor(**kwargs)
        made.append(vendor)
        return vendor

    yield make
    for vendor in made:
        vendor.close()


@pytest.fixture
def vendor(make_vendor: MakeVendor) -> HttpVendor:
    return make_vendor()


def with_lookup(make_vendor: MakeVendor, receiver: ReceiverStandin, **kw: Any) -> HttpVendor:
    """A vendor with the receiver's look-up route configured."""
    return make_vendor(lookup_url=receiver.url + LOOKUP_PATH, **kw)


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", "HOODIE-M")
    return make_request(rid, vendor="http", **kw)


# --- the signature --------------------------------------------------------------------------


def test_signature_round_trip() -> None:
    body = b'{"a":1}'
    header = signature("s3cret-s3cret-s3cret", body, NOW)
    assert header.startswith(f"t={NOW},v1=")
    assert len(header.partition(",v1=")[2]) == 64
    assert verify_signature("s3cret-s3cret-s3cret", header, body, 300, now=NOW + 10)
    assert verify_signature(b"s3cret-s3cret-s3cret", header, body, None, now=0)


def test_a_tampered_body_fails_verification() -> None:
    body = b'{"routing":{"amount":"25.00"}}'
    header = signature("s3cret-s3cret-s3cret", body, NOW)
    assert not verify_signature("s3cret-s3cret-s3cret", header,
                                b'{"routing":{"amount":"2500.00"}}', 300, now=NOW)
    assert not verify_signature("s3cret-s3cret-s3cret", header, body + b" ", 300, now=NOW)


@pytest.mark.parametrize("header", [
    None, "", "v1=abc", f"t={NOW}", f"t=now,v1={'0' * 64}", "garbage",
    f"t={NOW},v1={'0' * 64}",
])
def test_malformed_or_wrong_headers_fail(header: str | None) -> None:
    assert not verify_signature("s3cret-s3cret-s3cret", header, b"{}", 300, now=NOW)


def test_wrong_secret_stale_and_future_fail() -> None:
    header = signature("s3cret-s3cret-s3cret", b"{}", NOW)
    assert not verify_signature("another-secret-000", header, b"{}", 300, now=NOW)
    assert not verify_signature("s3cret-s3cret-s3cret", header, b"{}", 300, now=NOW + 301)
    assert not verify_signature("s3cret-s3cret-s3cret", header, b"{}", 300, now=NOW - 301)


def test_any_matching_v1_passes_for_secret_rotation() -> None:
    good = signature("new-secret-new-secret", b"{}", NOW).partition(",v1=")[2]
    header = f"t={NOW},v1={'f' * 64},v1={good}"
    assert verify_signature("new-secret-new-secret", header, b"{}", 300, now=NOW)


@given(body=st.binary(max_size=200), flip=st.integers(min_value=0, max_value=199))
def test_any_changed_byte_fails(body: bytes, flip: int) -> None:
    header = signature("s3cret-s3cret-s3cret", body, NOW)
    assert verify_signature("s3cret-s3cret-s3cret", header, body, 300, now=NOW)
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
        assert not verify_signature("s3cret-s3cret-s3cret", header, changed, 300, now=NOW)


# --- the wire format ------------------------------------------------------------------------


def test_the_request_is_the_documented_one() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "accepted", "order_id": "Z-1"})

    shipping = Shipping(address="1 Main St", city="Springfield", state="IL", zip="62701",
                        country="US")
    request = req("h-body", amount="12.50", shipping=shipping)
    vendor = HttpVendor("https://hooks.example.com/orders", HTTP_SECRET, policy=FAST,
                        transport=httpx.MockTransport(handler), clock=lambda: NOW)
    assert vendor.place_order(request).vendor_order_id == "Z-1"
    sent = seen[0]
    assert sent.method == "POST" and str(sent.url) == "https://hooks.example.com/orders"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers[IDEMPOTENCY_HEADER] == request.idempotency_key
    assert sent.headers[SIGNATURE_HEADER].startswith(f"t={NOW},v1=")
    assert verify_signature(HTTP_SECRET, sent.headers[SIGNATURE_HEADER], sent.content,
                            now=NOW)
    assert "Authorization" not in sent.headers
    assert HTTP_SECRET.encode() not in sent.content
    assert sent.content == order_body(request)
    assert json.loads(sent.content) == {
        "idempotency_key": request.idempotency_key,
        "redemption": {"id": "h-body", "source": "influitive", "reward_name": "$25 gift card"},
        "advocate": {"name": "Alice Example", "email": "alice@example.com", "shipping": {
            "address": "1 Main St", "address_2": None, "city": "Springfield", "state": "IL",
            "zip": "62701", "country": "US", "phone_number": None}},
        "routing": {"vendor": "http", "product": "HOODIE-M", "amount": "12.50",
                    "currency": "USD"},
    }
    canonical = json.dumps(json.loads(sent.content), sort_keys=True, separators=(",", ":"))
    assert sent.content == canonical.encode()  # keys sorted, no spaces


# --- answers, against the receiver ----------------------------------------------------------


def test_accepted_is_complete(vendor: HttpVendor, receiver: ReceiverStandin) -> None:
    request = req("h-accept")
    result = vendor.place_order(request)
    assert result.status is OrderStatus.COMPLETE
    assert result.vendor_order_id.startswith("HOOK-")
    assert result.delivery == "sent by email to a***@example.com"
    assert receiver.state.created_for(request.idempotency_key) == 1


def test_repeat_sends_identical_bytes_and_creates_nothing(
    vendor: HttpVendor, receiver: ReceiverStandin,
) -> None:
    request = req("h-repeat")
    first = vendor.place_order(request)
    again = vendor.place_order(req("h-repeat", amount="99"))  # same key, changed route
    assert again.vendor_order_id == first.vendor_order_id
    assert [r["outcome"] for r in receiver.state.received] == ["created", "repeat"]
    assert receiver.state.counts()[request.idempotency_key] == {"received": 2, "created": 1}


def test_pending_is_re_asked_by_repeating_until_accepted(
    vendor: HttpVendor, receiver: ReceiverStandin,
) -> None:
    request = req("h-pending", product="PENDING")
    placed = vendor.place_order(request)
    assert placed.status is OrderStatus.PENDING
    assert "Waiting for approval" in placed.detail
    still = vendor.place_order(request)  # what the worker does for a pending one
    assert still.status is OrderStatus.PENDING
    receiver.state.approve(request.idempotency_key)
    done = vendor.place_order(request)
    assert done.status is OrderStatus.COMPLETE
    assert done.vendor_order_id == placed.vendor_order_id
    assert receiver.state.counts()[request.idempotency_key] == {"received": 3, "created": 1}
    # Without a look-up route the look-up says it cannot tell, and sends nothing.
    with pytest.raises(LookupUnavailable) as caught:
        vendor.lookup(request.idempotency_key)
    assert caught.value.idempotent_resend
    assert receiver.state.posts() == 3 and receiver.state.lookups == []


def test_the_lookup_route_answers_pending_then_accepted(
    make_vendor: MakeVendor, receiver: ReceiverStandin,
) -> None:
    vendor = with_lookup(make_vendor, receiver)
    request = req("h-route", product="PENDING")
    placed = vendor.place_order(request)
    still = vendor.lookup(request.idempotency_key)
    assert still is not None and still.status is OrderStatus.PENDING
    receiver.state.approve(request.idempotency_key)
    done = vendor.lookup(request.idempotency_key)
    assert done is not None and done.status is OrderStatus.COMPLETE
    assert done.vendor_order_id == placed.vendor_order_id
    assert receiver.state.posts() == 1  # the look-ups were GETs, signed over the key
    assert [(r["status"], r["signature_ok"]) for r in receiver.state.lookups] == \
        [(200, True), (200, True)]


def test_the_lookup_route_says_not_found_only_in_its_own_words(
    make_vendor: MakeVendor, receiver: ReceiverStandin,
) -> None:
    vendor = with_lookup(make_vendor, receiver)
    assert vendor.lookup("rpneverordered") is None  # 404 {"status": "not_found"}
    receiver.state.fail(404, 1, method="GET")  # a 404 that is not the receiver's "not_found"
    with pytest.raises(OperatorFacingError, match="lookup_url"):
        vendor.lookup("rpneverordered")
    receiver.state.fail(503, None, method="GET")
    with pytest.raises(TransientVendorError):
        vendor.lookup("rpneverordered")
    wrong = with_lookup(make_vendor, receiver, secret="not-the-receivers-secret")
    receiver.state.clear_faults()
    with pytest.raises(OperatorFacingError, match="same secret"):
        wrong.lookup("rpneverordered")
    assert receiver.state.posts() == 0


def test_refused_is_advocate_facing_with_the_receivers_reason(vendor: HttpVendor) -> None:
    with pytest.raises(AdvocateFacingError) as caught:
        vendor.place_order(req("h-refuse", product="UNAVAILABLE"))
    assert caught.value.advocate_message == OUT_OF_STOCK
    with pytest.raises(AdvocateFacingError) as caught:
        vendor.place_order(req("h-email", email="bob@invalid.example"))
    assert caught.value.advocate_message == BAD_EMAIL


def test_a_pending_order_refused_later_refuses_on_lookup(
    make_vendor: MakeVendor, receiver: ReceiverStandin,
) -> None:
    vendor = with_lookup(make_vendor, receiver)
    request = req("h-later", product="PENDING")
    vendor.place_order(request)
    receiver.state.set_status(request.idempotency_key, "refused", "Sold out, sorry")
    with pytest.raises(AdvocateFacingError, match="Sold out"):
        vendor.lookup(request.idempotency_key)


def test_wrong_secret_is_operator_facing(make_vendor: MakeVendor,
                                         receiver: ReceiverStandin) -> None:
    vendor = make_vendor(secret="not-the-receivers-secret")
    with pytest.raises(OperatorFacingError, match="same secret") as caught:
        vendor.place_order(req("h-401"))
    assert caught.value.status == 401
    assert receiver.state.orders == {}


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_4xx_is_operator_facing(vendor: HttpVendor, receiver: ReceiverStandin,
                                      status: int) -> None:
    receiver.state.fail(status, None)
    with pytest.raises(OperatorFacingError, match=f"HTTP {status}"):
        vendor.place_order(req(f"h-{status}"))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_5xx_and_429_are_transient(vendor: HttpVendor, receiver: ReceiverStandin,
                                   status: int) -> None:
    receiver.state.fail(status, None, retry_after="2")
    with pytest.raises(TransientVendorError) as caught:
        vendor.place_order(req(f"h-{status}"))
    assert caught.value.status == status and caught.value.retry_after == 2.0


def test_transient_then_success(vendor: HttpVendor, receiver: ReceiverStandin) -> None:
    receiver.state.fail(503, 2)
    assert vendor.place_order(req("h-503-once")).status is OrderStatus.COMPLETE


def test_an_unreadable_2xx_is_operator_facing(vendor: HttpVendor,
                                              receiver: ReceiverStandin) -> None:
    receiver.state.garbage(1)
    request = req("h-garbage")
    with pytest.raises(OperatorFacingError, match="not the documented answer"):
        vendor.place_order(request)
    found = vendor.place_order(request)  # the receiver took it: the repeat says so
    assert found.status is OrderStatus.COMPLETE
    assert receiver.state.created_for(request.idempotency_key) == 1


def test_lost_answer_is_unknown_then_the_lookup_route_finds_it(
    make_vendor: MakeVendor, receiver: ReceiverStandin,
) -> None:
    vendor = with_lookup(make_vendor, receiver)
    receiver.state.lose_answers(FAST.attempts)
    request = req("h-lost")
    with pytest.raises(UnknownOutcome):
        vendor.place_order(request)
    posts = receiver.state.posts()
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.COMPLETE
    assert receiver.state.created_for(request.idempotency_key) == 1
    assert receiver.state.posts() == posts


def test_lost_answer_without_a_route_is_unconfirmable_and_sends_nothing(
    make_vendor: MakeVendor, receiver: ReceiverStandin,
) -> None:
    vendor = make_vendor(policy=RetryPolicy(attempts=1, timeout=0.3))
    receiver.state.ignore(1)  # the receiver hangs and records nothing
    request = req("h-lost-bare")
    with pytest.raises(UnknownOutcome):
        vendor.place_order(request)
    with pytest.raises(LookupUnavailable, match="lookup_url is not set"):
        vendor.lookup(request.idempotency_key)
    assert receiver.state.posts() == 0 and receiver.state.orders == {}


def test_hung_answer_is_unknown(make_vendor: MakeVendor, receiver: ReceiverStandin) -> None:
    vendor = make_vendor(policy=RetryPolicy(attempts=1, timeout=0.3))
    receiver.state.lose_answers(1, mode="hang", hang_seconds=5)
    with pytest.raises(UnknownOutcome, match="ReadTimeout"):
        vendor.place_order(req("h-hang"))


def test_connection_refused_is_transient_and_lookup_then_says_none(
    make_vendor: MakeVendor,
) -> None:
    vendor = make_vendor(url=f"http://127.0.0.1:{free_port()}/hooks/orders")
    request = req("h-refused")
    with pytest.raises(TransientVendorError, match="ConnectError"):
        vendor.place_order(request)
    # No attempt reached a receiver (every one was refused): nothing can have been taken,
    # so the look-up says so without sending, and a withdrawn redemption is not ordered.
    assert vendor.lookup(request.idempotency_key) is None


def test_a_lookup_that_cannot_connect_raises_and_never_creates(
    make_vendor: MakeVendor, receiver: ReceiverStandin,
) -> None:
    cache = DictCache()
    request = req("h-lookup-refused")
    receiver.state.lose_answers(FAST.attempts)
    with pytest.raises(UnknownOutcome):
        make_vendor(cache=cache).place_order(request)  # taken, answer lost
    dead = make_vendor(cache=cache,
                       lookup_url=f"http://127.0.0.1:{free_port()}/orders/{{idempotency_key}}")
    with pytest.raises(TransientVendorError, match="ConnectError"):
        dead.lookup(request.idempotency_key)
    found = with_lookup(make_vendor, receiver, cache=cache).lookup(request.idempotency_key)
    assert found is not None
    assert receiver.state.created_for(request.idempotency_key) == 1


# --- lookup: what it sends and when it sends nothing ----------------------------------------


def test_lookup_of_a_key_never_sent_sends_nothing(vendor: HttpVendor,
                                                  receiver: ReceiverStandin) -> None:
    assert vendor.lookup("rpneversent") is None
    assert receiver.state.received == []


def test_lookup_after_only_refusing_answers_sends_nothing(
    vendor: HttpVendor, receiver: ReceiverStandin,
) -> None:
    receiver.state.fail(503, None)
    request = req("h-not-taken")
    with pytest.raises(TransientVendorError):
        vendor.place_order(request)
    sent = len(receiver.state.received)
    assert vendor.lookup(request.idempotency_key) is None  # by contract, nothing was taken
    assert len(receiver.state.received) == sent
    receiver.state.clear_faults()
    assert vendor.place_order(request).status is OrderStatus.COMPLETE
    with pytest.raises(LookupUnavailable):  # taken now: only the receiver could say more
        vendor.lookup(request.idempotency_key)


def test_a_new_process_repeats_the_identical_request_from_the_cache(
    make_vendor: MakeVendor, receiver: ReceiverStandin,
) -> None:
    cache = DictCache()
    request = req("h-restart", product="PENDING")
    make_vendor(cache=cache).place_order(request)
    receiver.state.approve(request.idempotency_key)
    later = make_vendor(cache=cache)  # e.g. the next --run-once
    with pytest.raises(LookupUnavailable):
        later.lookup(request.idempotency_key)  # it remembers sending, and says no more
    found = later.place_order(req("h-restart", product="PENDING", amount="99"))
    assert found.status is OrderStatus.COMPLETE
    bodies = {r["outcome"] for r in receiver.state.received}
    assert bodies == {"created", "repeat"}  # a different body would be a 422 "conflict"
    assert make_vendor().lookup(request.idempotency_key) is None  # no cache, no memory


def test_the_body_is_saved_before_it_is_sent(make_vendor: MakeVendor) -> None:
    cache = DictCache()
    vendor = make_vendor(url=f"http://127.0.0.1:{free_port()}/hooks/orders", cache=cache)
    request = req("h-saved")
    with pytest.raises(TransientVendorError):
        vendor.place_order(request)
    saved = json.loads(cache.values[f"http:order:{request.idempotency_key}"][0])
    assert saved["body"].encode() == order_body(request)
    assert HTTP_SECRET not in cache.values[f"http:order:{request.idempotency_key}"][0]


# --- the receiver stand-in ------------------------------------------------------------------


def test_the_receiver_rejects_stale_and_conflicting_requests(receiver: ReceiverStandin) -> None:
    body = order_body(req("h-raw"))
    key = req("h-raw").idempotency_key
    stale = signature(HTTP_SECRET, body, NOW - 10_000)
    answer = httpx.post(receiver.hook_url, content=body, headers={
        SIGNATURE_HEADER: stale, IDEMPOTENCY_HEADER: key})
    assert answer.status_code == 401
    fresh = signature(HTTP_SECRET, body, int(time.time()))
    ok = httpx.post(receiver.hook_url, content=body,
                    headers={SIGNATURE_HEADER: fresh, IDEMPOTENCY_HEADER: key})
    assert ok.status_code == 200 and ok.json()["status"] == "accepted"
    other = order_body(req("h-raw", amount="30"))
    conflict = httpx.post(receiver.hook_url, content=other, headers={
        SIGNATURE_HEADER: signature(HTTP_SECRET, other, int(time.time())),
        IDEMPOTENCY_HEADER: key})
    assert conflict.status_code == 422
    wrong_key = httpx.post(receiver.hook_url, content=body,
                           headers={SIGNATURE_HEADER: fresh, IDEMPOTENCY_HEADER: "other"})
    assert wrong_key.status_code == 400


# --- check, settings, registry --------------------------------------------------------------


def test_check_sends_nothing_and_passes_products_through(
    vendor: HttpVendor, receiver: ReceiverStandin,
) -> None:
    result = vendor.check([("HOODIE-M", Decimal("25"), "USD"), (None, Decimal("5"), "USD")])
    assert result.ok and len(result.products) == 2
    assert "not checked" in result.products[0].detail
    assert receiver.state.received == []


def test_settings() -> None:
    settings = Settings.model_validate({"url": "https://hooks.example.com/x",
                                        "secret": "0123456789abcdef"})
    assert "0123456789abcdef" not in repr(settings)
    with_route = Settings.model_validate({
        "url": "https://hooks.example.com/x", "secret": "0123456789abcdef",
        "lookup_url": "https://hooks.example.com/orders/{idempotency_key}"})
    assert with_route.lookup_url == "https://hooks.example.com/orders/{idempotency_key}"
    for bad in ({"url": "ftp://x", "secret": "0123456789abcdef"},
                {"url": "https://x", "secret": "short"},
                {"url": "https://x", "secret": "0123456789abcdef",
                 "lookup_url": "https://x/orders"},  # no {idempotency_key}
                {"url": "https://x", "secret": "0123456789abcdef",
                 "lookup_url": "ftp://x/{idempotency_key}"},
                {"url": "https://x", "secret": "0123456789abcdef", "sekret": "typo"}):
        with pytest.raises(ValidationError):
            Settings.model_validate(bad)


def test_registry_and_reprs(receiver: ReceiverStandin) -> None:
    settings = vendors.validate_settings("http", {"url": receiver.hook_url,
                                                  "secret": receiver.secret})
    vendor = vendors.build_vendor("http", settings, vendors.BuildContext(policy=FAST))
    try:
        assert vendor.name == "http"
        assert vendor.place_order(req("h-registry")).status is OrderStatus.COMPLETE
        assert receiver.secret not in repr(vendor)
        assert receiver.secret not in str(vars(vendor))
    finally:
        vendor.close()


def test_the_body_is_ascii_even_for_odd_names() -> None:
    body = order_body(req("h-odd", name="Zoë \ud800 Ng"))
    assert body.isascii()
    assert json.loads(body)["advocate"]["name"] == "Zoë \ud800 Ng"


def test_final_answers_leave_memory_but_not_the_cache(make_vendor: MakeVendor) -> None:
    cache = DictCache()
    vendor = make_vendor(cache=cache)
    request = req("h-memory")
    first = vendor.place_order(request)
    assert vendor._sent == {}
    assert vendor.place_order(request).vendor_order_id == first.vendor_order_id
    assert json.loads(cache.values[f"http:order:{request.idempotency_key}"][0])["taken"] is True
