"""The Tremendous adapter against the stand-in (and, for a few shapes the stand-in cannot
produce, against ``httpx.MockTransport``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from poller import vendors
from poller.domain.errors import (
    PRODUCT_UNAVAILABLE,
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
)
from poller.domain.model import OrderRequest, OrderStatus
from poller.sandbox.server import free_port
from poller.sandbox.tremendous import LINK_BASE
from poller.transport import RetryPolicy
from poller.vendors.base import mask_email
from poller.vendors.tremendous import Settings, TremendousVendor, build
from poller.vendors.tremendous.client import _classify_invalid

from .support import FAST, Standin

MakeVendor = Callable[..., TremendousVendor]
MakeRequest = Callable[..., OrderRequest]


# --- the happy path ------------------------------------------------------------------------


def test_create_places_one_order(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    request = order_request("r-create")
    result = vendor.place_order(request)

    assert result.status is OrderStatus.COMPLETE
    assert result.vendor_order_id.startswith("ORD")
    assert result.delivery == "sent by email to a***@example.com"
    assert result.link is not None and result.link.startswith(LINK_BASE)
    assert "EXECUTED" in result.detail
    assert standin.state.created_for(request.idempotency_key) == 1
    order = standin.state.find(request.idempotency_key)
    assert order is not None
    reward = order["rewards"][0]
    assert order["external_id"] == request.idempotency_key
    assert order["payment"]["funding_source_id"] == "balance"
    assert reward["products"] == ["AMZN-US"]
    assert reward["value"] == {"denomination": 25.0, "currency_code": "USD"}
    assert reward["recipient"] == {"name": "Alice Example", "email": "alice@example.com"}
    assert reward["delivery"]["method"] == "EMAIL"
    assert standin.state.balance_cents == 1_000_000 - 2500


def test_repeat_create_returns_the_first_order_and_creates_nothing(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    request = order_request("r-repeat")
    first = vendor.place_order(request)
    second = vendor.place_order(request)

    assert second.vendor_order_id == first.vendor_order_id
    assert second.link == first.link
    assert standin.state.counts()[request.idempotency_key] == {"received": 2, "created": 1}
    assert [r["status"] for r in standin.state.received] == [200, 201]
    assert len(standin.state.orders) == 1
    assert standin.state.balance_cents == 1_000_000 - 2500


def test_lookup_finds_the_order_by_key(
    vendor: TremendousVendor, order_request: MakeRequest,
) -> None:
    request = order_request("r-lookup")
    placed = vendor.place_order(request)
    found = vendor.lookup(request.idempotency_key)

    assert found is not None
    assert found.vendor_order_id == placed.vendor_order_id
    assert found.status is OrderStatus.COMPLETE
    assert found.delivery == "sent by email to a***@example.com"
    assert found.link == placed.link


def test_lookup_of_unknown_key_is_none(vendor: TremendousVendor) -> None:
    assert vendor.lookup("rp-never-placed") is None


def test_link_delivery(make_vendor: MakeVendor, order_request: MakeRequest) -> None:
    vendor = make_vendor(delivery_method="LINK")
    result = vendor.place_order(order_request("r-link"))
    assert result.delivery == "delivered by link"
    assert result.link is not None


def test_pending_then_approved_then_complete(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    request = order_request("r-pending", product="PENDING")
    placed = vendor.place_order(request)
    assert placed.status is OrderStatus.PENDING
    assert "PENDING APPROVAL" in placed.detail

    still = vendor.lookup(request.idempotency_key)
    assert still is not None and still.status is OrderStatus.PENDING

    standin.state.approve(request.idempotency_key)
    done = vendor.lookup(request.idempotency_key)
    assert done is not None
    assert done.status is OrderStatus.COMPLETE
    assert done.vendor_order_id == placed.vendor_order_id


def test_canceled_order_is_failed(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    request = order_request("r-cancel", product="PENDING")
    vendor.place_order(request)
    standin.state.set_status(request.idempotency_key, "CANCELED")
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.FAILED


# --- error classes -------------------------------------------------------------------------


def test_wrong_api_key_is_operator_facing(
    make_vendor: MakeVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    vendor = make_vendor(api_key="tk_wrong_key_0000")
    with pytest.raises(OperatorFacingError) as caught:
        vendor.place_order(order_request("r-401"))
    assert caught.value.status == 401
    assert "rejected the API key" in str(caught.value)
    assert "tk_wrong_key_0000" not in str(caught.value)
    assert standin.state.orders == {}
    with pytest.raises(OperatorFacingError):
        vendor.lookup("anything")


def test_not_enough_funds_is_operator_facing_and_a_top_up_lets_it_through(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.set_balance(1000)
    request = order_request("r-402")
    with pytest.raises(OperatorFacingError) as caught:
        vendor.place_order(request)
    assert caught.value.status == 402
    assert "not enough funds on funding source 'balance'" in str(caught.value)
    assert standin.state.orders == {}

    standin.state.set_balance(100_000)
    result = vendor.place_order(request)
    assert result.status is OrderStatus.COMPLETE
    assert standin.state.created_for(request.idempotency_key) == 1


def test_a_listed_product_tremendous_will_not_sell_is_unavailable(
    vendor: TremendousVendor, order_request: MakeRequest, standin: Standin,
) -> None:
    # "Product UNAVAILABLE is not available": no word about stock. The catalog lists it at
    # this currency and value, so the reward is unavailable, not the config wrong.
    with pytest.raises(ProductUnavailable) as caught:
        vendor.place_order(order_request("r-product", product="UNAVAILABLE"))
    assert caught.value.status == 422
    assert caught.value.advocate_message == PRODUCT_UNAVAILABLE
    assert "catalog lists it at 25 USD" in str(caught.value)
    assert "is not available" in str(caught.value)
    assert standin.state.orders == {}


def test_an_unreadable_catalog_decides_nothing(
    vendor: TremendousVendor, order_request: MakeRequest, standin: Standin,
) -> None:
    standin.state.fail(503, None, method="GET", path="/products")
    with pytest.raises(TransientVendorError, match="nothing is decided") as caught:
        vendor.place_order(order_request("r-product-503", product="UNAVAILABLE"))
    assert not isinstance(caught.value, ConfigFixable | AdvocateFacingError)


@pytest.mark.parametrize(("over", "said"), [
    ({"product": "UNKNOWN-PRODUCT"}, "validation failure"),  # the documented answer
    ({"amount": "5000"}, "Denomination is not available"),
    ({"currency": "JPY"}, "Currency is not available"),
])
def test_a_product_value_or_currency_not_taken_is_the_operators_config(
    vendor: TremendousVendor, order_request: MakeRequest, over: dict[str, str], said: str,
) -> None:
    with pytest.raises(ConfigFixable, match=said) as caught:
        vendor.place_order(order_request("r-value", **over))
    assert caught.value.status == 422


def test_invalid_recipient_is_advocate_facing(
    vendor: TremendousVendor, order_request: MakeRequest,
) -> None:
    with pytest.raises(AdvocateFacingError) as caught:
        vendor.place_order(order_request("r-recipient", email="bob@invalid.example"))
    assert caught.value.status == 422
    assert "recipient is invalid" in str(caught.value)


def test_an_unknown_funding_source_is_the_operators_config(
    make_vendor: MakeVendor, order_request: MakeRequest,
) -> None:
    vendor = make_vendor(funding_source_id="no-such-source")
    with pytest.raises(ConfigFixable) as caught:
        vendor.place_order(order_request("r-config"))
    assert caught.value.status == 422
    assert "[vendors.tremendous]" in str(caught.value)
    assert "Funding source not found" in str(caught.value)


def test_404_on_create_means_a_wrong_base_url(
    make_vendor: MakeVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    vendor = make_vendor(base_url=standin.url + "/api/v1")
    with pytest.raises(OperatorFacingError) as caught:
        vendor.place_order(order_request("r-404"))
    assert caught.value.status == 404
    assert "base_url" in str(caught.value)


def test_a_404_that_is_not_tremendous_is_no_answer_to_a_lookup(
    make_vendor: MakeVendor, standin: Standin,
) -> None:
    """A wrong base_url must not read as "no such order": that would let the worker give up
    on a key whose order exists."""
    vendor = make_vendor(base_url=standin.url + "/api/v1")
    with pytest.raises(OperatorFacingError, match="base_url"):
        vendor.lookup("rp-anything")


def test_missing_product_is_operator_facing_and_sends_nothing(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    with pytest.raises(OperatorFacingError, match="product"):
        vendor.place_order(order_request("r-noproduct", product=None))
    assert standin.state.received == []


@pytest.mark.parametrize("retry_after", ["2", None])
def test_429_is_transient_with_retry_after_when_given(
    vendor: TremendousVendor, standin: Standin, sleeps: list[float], order_request: MakeRequest,
    retry_after: str | None,
) -> None:
    standin.state.fail(429, None, retry_after=retry_after)
    with pytest.raises(TransientVendorError) as caught:
        vendor.place_order(order_request("r-429"))
    assert caught.value.status == 429
    assert caught.value.retry_after == (2.0 if retry_after else None)
    assert len(standin.state.received) == FAST.attempts
    assert len(sleeps) == FAST.attempts - 1
    if retry_after:
        assert sleeps == [2.0] * (FAST.attempts - 1)
    assert standin.state.orders == {}


def test_429_with_a_long_retry_after_ends_the_call_at_once(
    vendor: TremendousVendor, standin: Standin, sleeps: list[float], order_request: MakeRequest,
) -> None:
    standin.state.fail(429, None, retry_after=600)
    with pytest.raises(TransientVendorError) as caught:
        vendor.place_order(order_request("r-429-long"))
    assert caught.value.retry_after == 600.0
    assert len(standin.state.received) == 1
    assert sleeps == []


def test_429_once_then_success(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.fail(429, 1, retry_after="0")
    result = vendor.place_order(order_request("r-429-once"))
    assert result.status is OrderStatus.COMPLETE


def test_rate_limit_is_visible_as_transient(
    vendor: TremendousVendor, standin: Standin,
) -> None:
    standin.state.set_rate_limit(1)
    assert vendor.lookup("rp-1") is None
    with pytest.raises(TransientVendorError) as caught:
        vendor.lookup("rp-2")
    assert caught.value.status == 429


def test_5xx_then_success(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.fail(503, 2)
    request = order_request("r-503")
    result = vendor.place_order(request)
    assert result.status is OrderStatus.COMPLETE
    assert standin.state.counts()[request.idempotency_key] == {"received": 3, "created": 1}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_forever_is_transient(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest, status: int,
) -> None:
    standin.state.fail(status, None)
    with pytest.raises(TransientVendorError) as caught:
        vendor.place_order(order_request("r-5xx"))
    assert caught.value.status == status
    assert standin.state.orders == {}


def test_lost_answer_is_unknown_outcome_then_lookup_finds_the_order(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.lose_answers(FAST.attempts, mode="drop")
    request = order_request("r-lost")
    with pytest.raises(UnknownOutcome):
        vendor.place_order(request)
    assert standin.state.counts()[request.idempotency_key] == {
        "received": FAST.attempts, "created": 1,
    }

    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.COMPLETE
    again = vendor.place_order(request)
    assert again.vendor_order_id == found.vendor_order_id
    assert standin.state.created_for(request.idempotency_key) == 1


def test_one_lost_answer_is_recovered_by_replaying_the_same_request(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.lose_answers(1, mode="drop")
    request = order_request("r-lost-once")
    result = vendor.place_order(request)
    assert result.status is OrderStatus.COMPLETE
    assert [r["outcome"] for r in standin.state.received] == ["created", "repeat"]


def test_an_answer_that_never_comes_is_unknown_outcome(
    make_vendor: MakeVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    vendor = make_vendor(policy=RetryPolicy(attempts=2, initial_wait=0.001, timeout=0.3))
    standin.state.lose_answers(2, mode="hang", hang_seconds=5)
    request = order_request("r-hang")
    with pytest.raises(UnknownOutcome, match="ReadTimeout"):
        vendor.place_order(request)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None
    assert standin.state.created_for(request.idempotency_key) == 1


def test_a_slow_lookup_is_transient(
    make_vendor: MakeVendor, standin: Standin,
) -> None:
    vendor = make_vendor(policy=RetryPolicy(attempts=1, timeout=0.2))
    standin.state.set_delay(1.0)
    with pytest.raises(TransientVendorError, match="ReadTimeout"):
        vendor.lookup("rp-slow")


def test_garbage_2xx_is_unknown_outcome_then_lookup_finds_the_order(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.garbage(1)
    request = order_request("r-garbage")
    with pytest.raises(UnknownOutcome) as caught:
        vendor.place_order(request)
    assert caught.value.status == 200
    found = vendor.lookup(request.idempotency_key)
    assert found is not None


def test_garbage_2xx_on_lookup_is_transient(vendor: TremendousVendor, standin: Standin) -> None:
    standin.state.garbage(1)
    with pytest.raises(TransientVendorError):
        vendor.lookup("rp-garbage")


def test_connection_refused_is_transient(
    make_vendor: MakeVendor, order_request: MakeRequest, sleeps: list[float],
) -> None:
    vendor = make_vendor(base_url=f"http://127.0.0.1:{free_port()}/api/v2")
    with pytest.raises(TransientVendorError, match="ConnectError"):
        vendor.place_order(order_request("r-refused"))
    assert len(sleeps) == FAST.attempts - 1


# --- shapes only a mock can produce ---------------------------------------------------------


def _mock_vendor(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> TremendousVendor:
    return TremendousVendor(
        "https://tremendous.mock/api/v2", "tk_mock_key_12345",
        policy=FAST, transport=httpx.MockTransport(handler), sleep=lambda _s: None, **kw,
    )


def _order(status: str, *, external_id: str | None = None, method: str = "EMAIL") -> dict[str, Any]:
    return {"order": {
        "id": "ORDMOCK", "external_id": external_id, "status": status,
        "rewards": [{"id": "R1", "recipient": {"email": "carol@example.org"},
                     "delivery": {"method": method, "status": "SUCCEEDED",
                                  "link": "https://mock.invalid/l/x"}}],
    }}


@pytest.mark.parametrize(("status", "expected"), [
    ("EXECUTED", OrderStatus.COMPLETE),
    ("OPEN", OrderStatus.PENDING),
    ("CART", OrderStatus.PENDING),
    ("PENDING APPROVAL", OrderStatus.PENDING),
    ("PENDING INTERNAL PAYMENT APPROVAL", OrderStatus.PENDING),
    ("PENDING SETTLEMENT", OrderStatus.PENDING),
    ("FAILED", OrderStatus.FAILED),
    ("CANCELED", OrderStatus.FAILED),
    ("SOMETHING NEW", OrderStatus.PENDING),
    (None, OrderStatus.PENDING),
])
def test_order_status_mapping(status: str | None, expected: OrderStatus) -> None:
    vendor = _mock_vendor(lambda r: httpx.Response(200, json=_order(status)))  # type: ignore[arg-type]
    found = vendor.lookup("rp-x")
    assert found is not None
    assert found.status is expected
    assert found.delivery == "sent by email to c***@example.org"


def test_an_earlier_attempt_that_may_have_sent_makes_a_later_refusal_unknown(
    order_request: MakeRequest,
) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(UnknownOutcome):
        _mock_vendor(handler).place_order(order_request("r-mixed"))
    assert len(calls) == FAST.attempts


def test_a_timeout_then_5xx_is_unknown(order_request: MakeRequest) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(503, json={"errors": {"message": "down", "payload": {}}})

    with pytest.raises(UnknownOutcome):
        _mock_vendor(handler).place_order(order_request("r-timeout-5xx"))


def test_a_lookup_that_cannot_connect_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(TransientVendorError):
        _mock_vendor(handler).lookup("rp-x")


def test_an_order_for_another_external_id_is_unknown(order_request: MakeRequest) -> None:
    vendor = _mock_vendor(
        lambda r: httpx.Response(201, json=_order("EXECUTED", external_id="someone-else"))
    )
    with pytest.raises(UnknownOutcome):
        vendor.place_order(order_request("r-other"))


def test_403_is_operator_facing(order_request: MakeRequest) -> None:
    vendor = _mock_vendor(lambda r: httpx.Response(403, json={"errors": {"message": "Forbidden"}}))
    with pytest.raises(OperatorFacingError, match=r"rejected the API key \(HTTP 403"):
        vendor.place_order(order_request("r-403"))


@pytest.mark.parametrize("status", [301, 405, 409, 418])
def test_unexpected_statuses_are_operator_facing(
    order_request: MakeRequest, status: int,
) -> None:
    vendor = _mock_vendor(lambda r: httpx.Response(status, text="nope"))
    with pytest.raises(OperatorFacingError, match=f"HTTP {status}"):
        vendor.place_order(order_request("r-unexpected"))


def test_both_200_and_201_are_success(order_request: MakeRequest) -> None:
    request = order_request("r-200")
    body = _order("EXECUTED", external_id=request.idempotency_key)
    for code in (200, 201):
        vendor = _mock_vendor(lambda r, c=code: httpx.Response(c, json=body))  # type: ignore[misc]
        assert vendor.place_order(request).vendor_order_id == "ORDMOCK"


def test_the_request_body_is_the_documented_one(order_request: MakeRequest) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=_order("EXECUTED"))

    request = order_request("r-body", amount="12.50", currency="EUR")
    _mock_vendor(handler, funding_source_id="FS1", delivery_method="LINK").place_order(request)
    sent = seen[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://tremendous.mock/api/v2/orders"
    assert sent.headers["Authorization"] == "Bearer tk_mock_key_12345"
    assert json.loads(sent.content) == {
        "external_id": request.idempotency_key,
        "payment": {"funding_source_id": "FS1"},
        "reward": {
            "products": ["AMZN-US"],
            "value": {"denomination": 12.5, "currency_code": "EUR"},
            "recipient": {"name": "Alice Example", "email": "alice@example.com"},
            "delivery": {"method": "LINK"},
        },
    }


@pytest.mark.parametrize(("errors", "kind"), [
    ({"message": "x", "payload": {"reward": {"recipient": {"email": ["is invalid"]}}}},
     "recipient"),
    ({"message": "x", "payload": {"reward": {"products": ["is not available"]}}}, "product"),
    ({"message": "x", "payload": {"reward": {"value": {"denomination": ["too big"]}}}},
     "product"),
    ({"message": "x", "payload": {"reward": {"recipient": {"email": ["bad"]},
                                              "products": ["gone"]}}}, "both"),
    ({"message": "x", "payload": {"reward": {"recipient": {"email": ["bad"]}},
                                  "payment": {"funding_source_id": ["bad"]}}}, "other"),
    ({"message": "x", "payload": {"payment": {"funding_source_id": ["bad"]}}}, "config"),
    ({"message": "x", "payload": {"reward": {"delivery": {"method": ["bad"]}}}}, "config"),
    ({"message": "x", "payload": {"reward": {"oops": ["bad"]}}}, "other"),
    ({"message": "Recipient email is invalid", "payload": {}}, "recipient"),
    ({"message": "Product is not available in this country"}, "product"),
    ({"message": "Invalid denomination"}, "product"),
    ({"message": "Product not available for this recipient"}, "other"),
    ({"message": "Validation failed", "payload": None}, "other"),
    ({}, "other"),
    (None, "other"),
])
def test_classify_invalid(errors: dict[str, Any] | None, kind: str) -> None:
    assert _classify_invalid(errors) == kind


def test_errors_as_a_list_are_read(order_request: MakeRequest) -> None:
    vendor = _mock_vendor(lambda r: httpx.Response(
        422, json={"errors": [{"message": "Recipient email is invalid"}]},
    ))
    with pytest.raises(AdvocateFacingError, match="recipient is invalid"):
        vendor.place_order(order_request("r-list"))


# --- helpers for a configuration check ----------------------------------------------------


def test_funding_balance(vendor: TremendousVendor, standin: Standin) -> None:
    standin.state.set_balance(12_345)
    assert vendor.funding_balance() == {
        "id": "BALANCE", "method": "balance", "available_cents": 12_345,
    }


def test_funding_balance_of_an_unknown_source(make_vendor: MakeVendor) -> None:
    with pytest.raises(OperatorFacingError, match="no funding source 'FS-NOPE'"):
        make_vendor(funding_source_id="FS-NOPE").funding_balance()


def test_product(vendor: TremendousVendor) -> None:
    product = vendor.product("AMZN-US")
    assert product is not None and product["id"] == "AMZN-US"
    assert vendor.product("UNKNOWN-GIFT") is None


# --- settings and registry -----------------------------------------------------------------


def test_settings_defaults_and_extra_keys() -> None:
    settings = Settings.model_validate({"api_key": "tk_secret_value_77"})
    assert settings.base_url == "https://testflight.tremendous.com/api/v2"
    assert settings.funding_source_id == "balance"
    assert settings.delivery_method == "EMAIL"
    assert "tk_secret_value_77" not in repr(settings)
    with pytest.raises(ValidationError):
        Settings.model_validate({"api_key": "k", "apikey": "typo"})
    with pytest.raises(ValidationError):
        Settings.model_validate({"api_key": "k", "delivery_method": "SMS"})
    with pytest.raises(ValidationError):
        Settings.model_validate({"api_key": "k", "base_url": "ftp://x"})
    assert Settings.model_validate(
        {"api_key": "k", "base_url": "https://api.tremendous.com/api/v2/"}
    ).base_url == "https://api.tremendous.com/api/v2"


def test_registry_finds_tremendous_and_not_the_fake(
    standin: Standin, order_request: MakeRequest,
) -> None:
    assert "tremendous" in vendors.available()
    assert "fake" not in vendors.available()
    settings = vendors.validate_settings(
        "tremendous", {"api_key": standin.api_key, "base_url": standin.base_url},
    )
    vendor = vendors.build_vendor("tremendous", settings, vendors.BuildContext(policy=FAST))
    try:
        assert vendor.name == "tremendous"
        assert vendor.place_order(order_request("r-registry")).status is OrderStatus.COMPLETE
    finally:
        vendor.close()


def test_build(standin: Standin) -> None:
    settings = Settings(api_key=standin.api_key, base_url=standin.base_url,
                        delivery_method="LINK")
    vendor = build(settings, vendors.BuildContext(policy=FAST))
    try:
        assert isinstance(vendor, TremendousVendor)
        assert vendor.delivery_method == "LINK"
        assert vendor.lookup("rp-none") is None
    finally:
        vendor.close()


def test_mask_email() -> None:
    assert mask_email("alice@example.com") == "a***@example.com"
    assert mask_email("not-an-email") == "***"


def test_every_error_is_a_vendor_error(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.fail(500, None)
    with pytest.raises(VendorError) as caught:
        vendor.place_order(order_request("r-any"))
    assert caught.value.vendor == "tremendous"


# --- the documented create answers and delivery states ------------------------------------


def test_a_new_order_is_200_and_a_repeat_201_returns_the_first(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    request = order_request("r-200-201")
    first = vendor.place_order(request)
    repeat = vendor.place_order(request)
    assert first.status is OrderStatus.COMPLETE
    assert repeat.vendor_order_id == first.vendor_order_id
    assert [r["status"] for r in standin.state.received] == [200, 201]


def test_202_is_created_in_the_background_and_looked_up_later(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.background(1)
    request = order_request("r-202")
    placed = vendor.place_order(request)
    assert placed.status is OrderStatus.PENDING
    assert "background" in placed.detail
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.COMPLETE
    assert standin.state.created_for(request.idempotency_key) == 1


def test_409_on_create_looks_the_order_up(order_request: MakeRequest) -> None:
    request = order_request("r-409")
    asked: list[str] = []

    def handler(sent: httpx.Request) -> httpx.Response:
        asked.append(f"{sent.method} {sent.url.path}")
        if sent.method == "POST":
            return httpx.Response(409, json={"errors": {"message": "Conflict", "payload": {}}})
        return httpx.Response(200, json=_order("EXECUTED", external_id=request.idempotency_key))

    found = _mock_vendor(handler).place_order(request)
    assert found.vendor_order_id == "ORDMOCK" and found.status is OrderStatus.COMPLETE
    assert asked == ["POST /api/v2/orders", f"GET /api/v2/orders/{request.idempotency_key}"]


def test_409_without_an_order_is_retried_later(order_request: MakeRequest) -> None:
    def handler(sent: httpx.Request) -> httpx.Response:
        if sent.method == "POST":
            return httpx.Response(409, json={"errors": {"message": "Conflict", "payload": {}}})
        return httpx.Response(404, json={"errors": {"message": "Not found", "payload": {}}})

    with pytest.raises(TransientVendorError, match="409"):
        _mock_vendor(handler).place_order(order_request("r-409-none"))


def test_a_bounced_delivery_needs_a_person_and_is_never_fulfilled(
    vendor: TremendousVendor, order_request: MakeRequest,
) -> None:
    request = order_request("r-bounce", email="bob@bounce.example")
    placed = vendor.place_order(request)
    assert placed.status is OrderStatus.NEEDS_PERSON
    assert "bounced" in placed.detail and "b***@bounce.example" in placed.detail
    assert "bob@bounce.example" not in placed.detail + placed.delivery
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.NEEDS_PERSON


@pytest.mark.parametrize("delivery", ["PENDING", "SCHEDULED"])
def test_a_delivery_on_its_way_is_pending_then_complete(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest, delivery: str,
) -> None:
    request = order_request(f"r-deliv-{delivery}")
    vendor.place_order(request)
    standin.state.set_delivery(request.idempotency_key, delivery)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.PENDING
    assert f"reward delivery {delivery}" in found.detail
    standin.state.set_delivery(request.idempotency_key, "SUCCEEDED")
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.COMPLETE


def test_the_429_body_with_a_singular_error_is_quoted(
    vendor: TremendousVendor, standin: Standin, order_request: MakeRequest,
) -> None:
    standin.state.set_rate_limit(0)
    with pytest.raises(TransientVendorError, match="Too many requests") as caught:
        vendor.place_order(order_request("r-429-body"))
    assert caught.value.status == 429
