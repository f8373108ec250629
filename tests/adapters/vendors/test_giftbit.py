"""The Giftbit adapter against its stand-in (and ``httpx.MockTransport`` for shapes the
stand-in cannot produce); awaiting funds as a pending order; ``check``."""

from __future__ import annotations

import json
import re
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
    RECIPIENT_INVALID,
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
)
from poller.domain.keys import idempotency_key
from poller.domain.model import OrderStatus
from poller.sandbox.server import free_port
from poller.transport import RetryPolicy
from poller.vendors.giftbit import MAX_CAMPAIGN_ID, GiftbitVendor, Settings, campaign_id

from .support import FAST, GiftbitStandin, giftbit_standin, make_request

MakeVendor = Callable[..., GiftbitVendor]


@pytest.fixture
def standin() -> GiftbitStandin:
    return giftbit_standin()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_vendor(standin: GiftbitStandin, sleeps: list[float]) -> Iterator[MakeVendor]:
    made: list[GiftbitVendor] = []

    def make(**overrides: Any) -> GiftbitVendor:
        kwargs: dict[str, Any] = {"base_url": standin.base_url, "api_key": standin.api_key,
                                  "policy": FAST, "sleep": sleeps.append}
        kwargs.update(overrides)
        vendor = GiftbitVendor(**kwargs)
        made.append(vendor)
        return vendor

    yield make
    for vendor in made:
        vendor.close()


@pytest.fixture
def vendor(make_vendor: MakeVendor) -> GiftbitVendor:
    return make_vendor()


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", "amazonus")
    return make_request(rid, vendor="giftbit", **kw)


def cid(request: Any) -> str:
    return campaign_id(request.idempotency_key)


# --- the campaign id ------------------------------------------------------------------------


def test_campaign_ids_fit_the_assumed_limits_and_are_stable() -> None:
    key = idempotency_key(namespace="org", source="influitive", redemption_id="42")
    assert len(key) > MAX_CAMPAIGN_ID
    ident = campaign_id(key)
    assert re.fullmatch(r"[A-Za-z0-9]{1,40}", ident)
    assert ident == campaign_id(key)
    assert campaign_id("short1") == "short1"
    assert campaign_id("has-dash") != "has-dash"


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_campaign_ids_of_different_keys_differ(a: str, b: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9]{1,40}", campaign_id(a))
    if a != b:
        assert campaign_id(a) != campaign_id(b)


# --- the happy path ------------------------------------------------------------------------


def test_create_sends_one_campaign(vendor: GiftbitVendor, standin: GiftbitStandin) -> None:
    request = req("g-create")
    result = vendor.place_order(request)
    # A funded create answers API_CREATING: pending until the look-up sees it sent.
    assert result.status is OrderStatus.PENDING
    assert result.vendor_order_id == cid(request)
    assert "API_CREATING" in result.detail and "uuid" in result.detail
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.COMPLETE
    assert found.delivery == "sent by email to a***@example.com"
    assert "CAMPAIGN_CREATED" in found.detail and "DELIVERED" in found.detail
    campaign = standin.state.find(cid(request))
    assert campaign is not None
    assert campaign["price_in_cents"] == 2500
    assert campaign["brand_codes"] == ["amazonus"]
    assert campaign["contacts"] == [{"firstname": "Alice", "lastname": "Example",
                                     "email": "alice@example.com"}]
    assert standin.state.funds["USD"] == 1_000_000 - 2500


@pytest.mark.parametrize("mode", ["error", "replay"])
def test_repeat_create_returns_the_first_campaign(
    vendor: GiftbitVendor, standin: GiftbitStandin, mode: Any,
) -> None:
    standin.state.set_repeat_mode(mode)
    request = req(f"g-repeat-{mode}")
    first = vendor.place_order(request)
    second = vendor.place_order(request)
    assert second.vendor_order_id == first.vendor_order_id
    assert second.status is OrderStatus.COMPLETE  # sent by now: its gift was delivered
    assert standin.state.counts()[cid(request)] == {"received": 2, "created": 1}
    assert standin.state.funds["USD"] == 1_000_000 - 2500


def test_lookup_by_id(vendor: GiftbitVendor) -> None:
    request = req("g-lookup")
    placed = vendor.place_order(request)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.vendor_order_id == placed.vendor_order_id
    assert found.status is OrderStatus.COMPLETE
    assert vendor.lookup("rpneverplaced") is None


def test_awaiting_funds_is_pending_until_funded(vendor: GiftbitVendor,
                                                standin: GiftbitStandin) -> None:
    standin.state.set_funds("USD", 1000)
    request = req("g-funds")
    placed = vendor.place_order(request)
    assert placed.status is OrderStatus.PENDING
    assert placed.delivery == "waiting for funds at Giftbit"
    assert "AWAITING_FUNDS" in placed.detail
    assert "the Giftbit balance needs a top-up" in placed.detail
    assert standin.state.created_for(cid(request)) == 1  # the campaign exists already
    still = vendor.lookup(request.idempotency_key)
    assert still is not None and still.status is OrderStatus.PENDING
    standin.state.add_funds("USD", 5000)
    done = vendor.lookup(request.idempotency_key)
    assert done is not None and done.status is OrderStatus.COMPLETE
    assert done.vendor_order_id == placed.vendor_order_id


def test_api_creating_until_campaign_created(vendor: GiftbitVendor,
                                             standin: GiftbitStandin) -> None:
    request = req("g-pending", product="PENDING")
    assert vendor.place_order(request).status is OrderStatus.PENDING
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.PENDING
    assert "API_CREATING" in found.detail
    standin.state.approve(cid(request))
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.COMPLETE


@pytest.mark.parametrize("delivery", ["UNDELIVERABLE", "COMPLAINT", "UNSUBSCRIBED"])
def test_an_undeliverable_gift_needs_a_person(vendor: GiftbitVendor, standin: GiftbitStandin,
                                              delivery: str) -> None:
    request = req(f"g-bounce-{delivery}")
    vendor.place_order(request)
    standin.state.set_delivery(cid(request), delivery)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.NEEDS_PERSON
    assert delivery in found.detail and "a***@example.com" in found.detail
    assert "alice@example.com" not in found.detail


def test_a_bounced_address_is_held_from_the_first_look(vendor: GiftbitVendor) -> None:
    request = req("g-bounce", email="bob@bounce.example")
    vendor.place_order(request)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.NEEDS_PERSON
    assert "b***@bounce.example" in found.detail and "does not exist" in found.detail


@pytest.mark.parametrize("delivery", ["UNSENT", "TEMPORARILY_UNDELIVERABLE"])
def test_a_gift_not_delivered_yet_is_pending(vendor: GiftbitVendor, standin: GiftbitStandin,
                                             delivery: str) -> None:
    request = req(f"g-later-{delivery}")
    vendor.place_order(request)
    standin.state.set_delivery(cid(request), delivery)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.PENDING
    standin.state.set_delivery(cid(request), "DELIVERED")
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.COMPLETE


# --- error classes -------------------------------------------------------------------------


def test_wrong_key_is_operator_facing(make_vendor: MakeVendor) -> None:
    with pytest.raises(OperatorFacingError, match="rejected the API key") as caught:
        make_vendor(api_key="gb_wrong_token").place_order(req("g-401"))
    assert caught.value.status == 401


@pytest.mark.parametrize(("product", "amount"), [("UNAVAILABLE", "25"),
                                                 ("starbucksus", "7.50")])
def test_invalid_brand_or_price_is_the_operators_config(
    vendor: GiftbitVendor, standin: GiftbitStandin, product: str, amount: str,
) -> None:
    with pytest.raises(ConfigFixable, match="ERROR_CAMPAIGN_INVALID_BRAND") as caught:
        vendor.place_order(req(f"g-brand-{product}", product=product, amount=amount))
    assert caught.value.status == 422
    assert standin.state.campaigns == {}


def test_invalid_recipient_is_advocate_facing(vendor: GiftbitVendor) -> None:
    with pytest.raises(AdvocateFacingError, match="ERROR_CAMPAIGN_NO_CONTACTS") as caught:
        vendor.place_order(req("g-email", email="bob@invalid.example"))
    assert caught.value.advocate_message == RECIPIENT_INVALID
    assert not isinstance(caught.value, ConfigFixable)


def test_fractions_of_a_cent_and_missing_brand_send_nothing(
    vendor: GiftbitVendor, standin: GiftbitStandin,
) -> None:
    with pytest.raises(ConfigFixable, match="whole cents"):
        vendor.place_order(req("g-cents", amount="10.005"))
    with pytest.raises(ConfigFixable, match="brand code"):
        vendor.place_order(req("g-none", product=None))
    assert standin.state.received == []


def test_429_is_transient(vendor: GiftbitVendor, standin: GiftbitStandin) -> None:
    standin.state.fail(429, None, retry_after="1")
    with pytest.raises(TransientVendorError) as caught:
        vendor.place_order(req("g-429"))
    assert caught.value.status == 429 and caught.value.retry_after == 1.0


def test_the_testbed_rate_limit_header_is_honoured_by_the_standin(
    standin: GiftbitStandin,
) -> None:
    answer = httpx.get(standin.base_url + "/funds", headers={
        "Authorization": f"Bearer {standin.api_key}", "SIMULATE-RATELIMIT": "true"})
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "ERROR_RATE_LIMIT"


def test_5xx_is_transient(vendor: GiftbitVendor, standin: GiftbitStandin) -> None:
    standin.state.fail(503, None)
    with pytest.raises(TransientVendorError):
        vendor.place_order(req("g-503"))
    with pytest.raises(TransientVendorError):
        vendor.lookup("rpanything")


def test_5xx_then_success(vendor: GiftbitVendor, standin: GiftbitStandin) -> None:
    standin.state.fail(502, 2)
    request = req("g-502")
    assert vendor.place_order(request).status is OrderStatus.PENDING
    assert standin.state.created_for(cid(request)) == 1


def test_lost_answer_is_unknown_then_lookup_and_replay_find_it(
    vendor: GiftbitVendor, standin: GiftbitStandin,
) -> None:
    standin.state.lose_answers(FAST.attempts)
    request = req("g-lost")
    with pytest.raises(UnknownOutcome):
        vendor.place_order(request)
    assert vendor.lookup(request.idempotency_key) is not None
    standin.state.set_repeat_mode("replay")
    assert vendor.place_order(request).status is OrderStatus.COMPLETE
    assert standin.state.created_for(cid(request)) == 1


def test_one_lost_answer_is_recovered_by_the_duplicate_answer(
    vendor: GiftbitVendor, standin: GiftbitStandin,
) -> None:
    standin.state.lose_answers(1)
    request = req("g-lost-once")
    assert vendor.place_order(request).status is OrderStatus.COMPLETE  # found sent
    assert [r["outcome"] for r in standin.state.received] == ["created", "repeat"]


def test_hung_answer_is_unknown(make_vendor: MakeVendor, standin: GiftbitStandin) -> None:
    vendor = make_vendor(policy=RetryPolicy(attempts=1, timeout=0.3))
    standin.state.lose_answers(1, mode="hang", hang_seconds=5)
    with pytest.raises(UnknownOutcome, match="ReadTimeout"):
        vendor.place_order(req("g-hang"))


def test_garbage_200_is_unknown(vendor: GiftbitVendor, standin: GiftbitStandin) -> None:
    standin.state.garbage(1)
    request = req("g-garbage")
    with pytest.raises(UnknownOutcome):
        vendor.place_order(request)
    assert vendor.lookup(request.idempotency_key) is not None


def test_wrong_base_url_and_refused_connection(make_vendor: MakeVendor,
                                               standin: GiftbitStandin) -> None:
    with pytest.raises(OperatorFacingError, match="HTTP 404"):
        make_vendor(base_url=standin.url + "/papi/v2").place_order(req("g-404"))
    refused = make_vendor(base_url=f"http://127.0.0.1:{free_port()}/papi/v1")
    with pytest.raises(TransientVendorError, match="ConnectError"):
        refused.place_order(req("g-refused"))


# --- shapes only a mock can produce ---------------------------------------------------------


def _mock(handler: Callable[[httpx.Request], httpx.Response]) -> GiftbitVendor:
    return GiftbitVendor("https://giftbit.mock/papi/v1", "gb_mock_key_123", policy=FAST,
                         transport=httpx.MockTransport(handler), sleep=lambda _s: None)


def _error(code: str, message: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "name": code, "message": message}, "status": 422}


def test_the_request_is_the_documented_one() -> None:
    seen: list[httpx.Request] = []
    request = req("g-body", amount="12.50", reward_name="Coffee")

    def handler(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return httpx.Response(200, json={"campaign": {"id": cid(request),
                                                      "status": "API_CREATING"}})

    _mock(handler).place_order(request)
    assert str(seen[0].url) == "https://giftbit.mock/papi/v1/campaign"
    assert seen[0].headers["Authorization"] == "Bearer gb_mock_key_123"
    assert json.loads(seen[0].content) == {
        "id": cid(request),
        "contacts": [{"firstname": "Alice", "lastname": "Example",
                      "email": "alice@example.com"}],
        "price_in_cents": 1250, "brand_codes": ["amazonus"],
        "subject": "Your Coffee",
        "message": "Thank you for being an advocate! Here is your Coffee.",
    }


def test_only_200_is_success() -> None:
    with pytest.raises(UnknownOutcome, match="only 200"):
        _mock(lambda r: httpx.Response(201, json={"campaign": {"status": "API_CREATING"}})
              ).place_order(req("g-201"))


def test_info_code_alone_means_awaiting_funds() -> None:
    body = {"campaign": {"status": "CREATED"},
            "info": {"code": "INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED"}, "status": 200}
    result = _mock(lambda r: httpx.Response(200, json=body)).place_order(req("g-info"))
    assert result.status is OrderStatus.PENDING


GIFTS: dict[str, Any] = {"gifts": [], "number_of_results": 0, "limit": 20, "offset": 0,
                         "total_count": 0, "status": 200}


@pytest.mark.parametrize(("status", "gift", "expected"), [
    ("API_CREATING", None, OrderStatus.PENDING),
    ("AWAITING_FUNDS", None, OrderStatus.PENDING),
    ("CAMPAIGN_CREATED", "DELIVERED", OrderStatus.COMPLETE),
    ("CAMPAIGN_CREATED", None, OrderStatus.PENDING),
    ("CAMPAIGN_CREATED", "UNSENT", OrderStatus.PENDING),
    ("CAMPAIGN_CREATED", "TEMPORARILY_UNDELIVERABLE", OrderStatus.PENDING),
    ("CAMPAIGN_CREATED", "UNDELIVERABLE", OrderStatus.NEEDS_PERSON),
    ("CAMPAIGN_CREATED", "COMPLAINT", OrderStatus.NEEDS_PERSON),
    ("CAMPAIGN_CREATED", "UNSUBSCRIBED", OrderStatus.NEEDS_PERSON),
    ("COMPLETED", None, OrderStatus.PENDING),  # not a Giftbit status: never final
    (None, None, OrderStatus.PENDING),
])
def test_status_mapping(status: str | None, gift: str | None, expected: OrderStatus) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path}?{request.url.query.decode()}")
        if request.url.path.endswith("/gifts"):
            gifts = [] if gift is None else [{"campaign_id": "rpx", "delivery_status": gift,
                                              "status": "SENT_AND_REDEEMABLE",
                                              "recipient_email": "alice@example.com"}]
            return httpx.Response(200, json={**GIFTS, "gifts": gifts})
        return httpx.Response(200, json={"campaign": {"id": "rpx", "status": status},
                                         "info": {"code": "INFO_CAMPAIGN_RETRIEVED"}})

    found = _mock(handler).lookup("rpx")
    assert found is not None and found.status is expected
    asked_gifts = "/papi/v1/gifts?campaign_id=rpx" in seen
    assert asked_gifts == (status == "CAMPAIGN_CREATED")


def test_a_failing_gift_lookup_is_not_an_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/gifts"):
            return httpx.Response(503, text="<html>busy</html>")
        return httpx.Response(200, json={"campaign": {"id": "rpx",
                                                      "status": "CAMPAIGN_CREATED"}})

    with pytest.raises(TransientVendorError, match="503"):
        _mock(handler).lookup("rpx")


def test_a_duplicate_id_that_cannot_be_found_is_operator_facing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(422, json=_error("ERROR_DUPLICATE_ID", "id already exists"))
        return httpx.Response(404, json=_error("ERROR_CAMPAIGN_NOT_FOUND"))

    with pytest.raises(OperatorFacingError, match="is taken but"):
        _mock(handler).place_order(req("g-dup"))


def test_a_funds_error_is_operator_facing() -> None:
    with pytest.raises(OperatorFacingError, match="top-up failed") as caught:
        _mock(lambda r: httpx.Response(402, json=_error("ERROR_INSUFFICIENT_FUNDS"))
              ).place_order(req("g-402"))
    assert not isinstance(caught.value, ConfigFixable)


def test_a_404_that_is_not_giftbit_is_no_answer_to_a_lookup() -> None:
    with pytest.raises(OperatorFacingError, match="base_url"):
        _mock(lambda r: httpx.Response(404, text="Not Found")).lookup("rpx")


def test_another_campaign_is_unknown() -> None:
    with pytest.raises(UnknownOutcome):
        _mock(lambda r: httpx.Response(200, json={"campaign": {"id": "someone",
                                                               "status": "API_CREATING"}})
              ).place_order(req("g-other"))


# --- check ----------------------------------------------------------------------------------


def test_check_finds_a_mistyped_brand(vendor: GiftbitVendor) -> None:
    result = vendor.check([
        ("amazonus", Decimal("25"), "USD"),
        ("amazonuss", Decimal("25"), "USD"),
        ("amazonca", Decimal("25"), "USD"),
        ("starbucksus", Decimal("250"), "USD"),
        ("starbucksus", Decimal("7.50"), "USD"),
        ("starbucksus", Decimal("10"), "USD"),
        (None, Decimal("5"), "USD"),
    ])
    assert result.credentials_ok and not result.ok
    assert result.balance == "10,000.00 USD, 10,000.00 CAD"
    by = {(p.product, p.amount): p for p in result.products}
    assert by["amazonus", 25].ok and by["amazonus", 25].detail == "Amazon.com"
    assert by["amazonuss", 25].detail == \
        "no brand 'amazonuss' at Giftbit (did you mean amazonus?)"
    assert "priced in CAD" in by["amazonca", 25].detail
    assert "250.00 is not one of the brand's prices (5.00, 10.00, 25.00)" in \
        by["starbucksus", 250].detail
    assert not by["starbucksus", Decimal("7.50")].ok
    assert by["starbucksus", 10].ok
    assert not by[None, 5].ok


def test_check_reads_the_documented_brand_fields() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/funds"):
            return httpx.Response(200, json={"fundsbycurrency": {"USD": {
                "available_in_cents": 1234, "pending_in_cents": 0, "reserved_in_cents": 0}}})
        if request.url.path.endswith("/brands/nosuch"):
            return httpx.Response(422, json=_error("ERROR_BRANDS_NO_SUCH_BRAND"))
        if request.url.path.endswith("/brands"):
            return httpx.Response(200, json={"brands": [{"brand_code": "itunesus"}]})
        return httpx.Response(200, json={"brand": {
            "brand_code": "itunesus", "name": "iTunes", "fund_currencyisocode": "USD",
            "variable_price": False, "allowed_prices_in_cents": [1500, 2500]}})

    result = _mock(handler).check([("itunesus", Decimal("15"), "USD"),
                                   ("itunesus", Decimal("20"), "USD"),
                                   ("itunesus", Decimal("15"), "CAD"),
                                   ("nosuch", Decimal("15"), "USD")])
    assert result.credentials_ok and result.balance == "12.34 USD"
    assert [p.ok for p in result.products] == [True, False, False, False]
    assert "not one of the brand's prices (15.00, 25.00)" in result.products[1].detail
    assert "priced in USD" in result.products[2].detail
    assert result.products[3].detail == "no brand 'nosuch' at Giftbit"


def test_check_of_an_unreachable_giftbit_fails(make_vendor: MakeVendor) -> None:
    result = make_vendor(base_url=f"http://127.0.0.1:{free_port()}/papi/v1").check(
        [("amazonus", Decimal("25"), "USD")])
    assert not result.credentials_ok and not result.ok
    assert "Giftbit" in result.problems[0] and "could not reach" in result.problems[0]
    assert result.products[0].detail == "not checked: Giftbit could not be reached"


def test_check_with_a_wrong_key(make_vendor: MakeVendor) -> None:
    result = make_vendor(api_key="gb_wrong_token").check([("amazonus", Decimal("25"), "USD")])
    assert not result.credentials_ok and not result.ok
    assert "rejected the API key" in result.problems[0]


# --- settings and registry -------------------------------------------------------------------


def test_settings_and_registry(standin: GiftbitStandin) -> None:
    assert Settings.model_validate({"api_key": "x"}).base_url == \
        "https://api-testbed.giftbit.com/papi/v1"
    with pytest.raises(ValidationError):
        Settings.model_validate({"api_key": "x", "token": "typo"})
    settings = vendors.validate_settings("giftbit", {"api_key": standin.api_key,
                                                     "base_url": standin.base_url})
    vendor = vendors.build_vendor("giftbit", settings, vendors.BuildContext(policy=FAST))
    try:
        assert vendor.name == "giftbit"
        assert vendor.lookup("rpnone") is None
        assert standin.api_key not in repr(vendor)
        assert standin.api_key not in str(vars(vendor))
    finally:
        vendor.close()
