"""The Tango Card adapter against its stand-in (and ``httpx.MockTransport`` for shapes the
stand-in cannot produce); the catalog cache; ``check``."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from poller import vendors
from poller.domain.errors import (
    PRODUCT_UNAVAILABLE,
    RECIPIENT_INVALID,
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
)
from poller.domain.model import OrderStatus
from poller.sandbox.server import free_port
from poller.sandbox.tango import LINK_BASE
from poller.transport import RetryPolicy
from poller.vendors.tango import CATALOG_TTL, Settings, TangoVendor, classify_errors

from .support import FAST, DictCache, TangoStandin, make_request, tango_standin

MakeVendor = Callable[..., TangoVendor]
AMAZON = "U561593"
STARBUCKS = "U426141"
ZALANDO = "U579023"


@pytest.fixture
def standin() -> TangoStandin:
    return tango_standin()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_vendor(standin: TangoStandin, sleeps: list[float]) -> Iterator[MakeVendor]:
    made: list[TangoVendor] = []

    def make(**overrides: Any) -> TangoVendor:
        kwargs: dict[str, Any] = {
            "base_url": standin.base_url, "platform_name": standin.platform_name,
            "platform_key": standin.platform_key, "customer_identifier": standin.customer,
            "account_identifier": standin.account, "policy": FAST, "sleep": sleeps.append,
            "min_order_interval": 0.0,
        }
        kwargs.update(overrides)
        vendor = TangoVendor(**kwargs)
        made.append(vendor)
        return vendor

    yield make
    for vendor in made:
        vendor.close()


@pytest.fixture
def vendor(make_vendor: MakeVendor) -> TangoVendor:
    return make_vendor()


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", AMAZON)
    return make_request(rid, vendor="tango", **kw)


# --- the happy path ------------------------------------------------------------------------


def test_create_places_one_order(vendor: TangoVendor, standin: TangoStandin) -> None:
    request = req("t-create")
    result = vendor.place_order(request)
    assert result.status is OrderStatus.COMPLETE
    assert result.vendor_order_id.startswith("RA")
    assert result.delivery == "sent by email to a***@example.com"
    assert result.link is not None and result.link.startswith(LINK_BASE)
    assert result.link not in repr(result)
    order = standin.state.find(request.idempotency_key)
    assert order is not None
    assert order["externalRefID"] == request.idempotency_key
    assert order["recipient"] == {"firstName": "Alice", "lastName": "Example",
                                  "email": "alice@example.com"}
    assert standin.state.created_for(request.idempotency_key) == 1
    assert standin.state.balance == Decimal("10000.00") - 25


def test_repeat_create_returns_the_first_order(vendor: TangoVendor,
                                               standin: TangoStandin) -> None:
    request = req("t-repeat")
    first = vendor.place_order(request)
    second = vendor.place_order(request)
    assert second.vendor_order_id == first.vendor_order_id
    assert [r["status"] for r in standin.state.received] == [201, 200]
    assert standin.state.counts()[request.idempotency_key] == {"received": 2, "created": 1}
    assert standin.state.balance == Decimal("10000.00") - 25


def test_lookup_by_external_ref(vendor: TangoVendor) -> None:
    request = req("t-lookup")
    placed = vendor.place_order(request)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.vendor_order_id == placed.vendor_order_id
    assert found.status is OrderStatus.COMPLETE
    assert placed.link is not None
    assert found.link is None  # GET /orders lists no reward credentials (swagger)
    assert vendor.lookup("rpneverplaced") is None


def test_pending_then_approved(vendor: TangoVendor, standin: TangoStandin) -> None:
    request = req("t-pending", product="PENDING")
    placed = vendor.place_order(request)
    assert placed.status is OrderStatus.PENDING
    assert placed.delivery == "under review at Tango Card"
    assert placed.link is None
    still = vendor.lookup(request.idempotency_key)
    assert still is not None and still.status is OrderStatus.PENDING
    standin.state.approve(request.idempotency_key)
    done = vendor.lookup(request.idempotency_key)
    assert done is not None and done.status is OrderStatus.COMPLETE
    assert done.vendor_order_id == placed.vendor_order_id
    assert done.link is None  # found through GET /orders, which lists no credentials


def test_failed_order(vendor: TangoVendor, standin: TangoStandin) -> None:
    request = req("t-failed", product="PENDING")
    vendor.place_order(request)
    standin.state.set_status(request.idempotency_key, "FAILED")
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.FAILED


def test_every_request_is_spaced_a_second_apart(make_vendor: MakeVendor) -> None:
    clock = [100.0]
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock[0] += seconds

    vendor = make_vendor(min_order_interval=1.0, sleep=sleep, monotonic=lambda: clock[0])
    vendor.place_order(req("t-rate-1"))
    clock[0] += 0.25
    vendor.place_order(req("t-rate-2"))
    vendor.lookup(req("t-rate-2").idempotency_key)  # the limit covers look-ups too
    vendor.place_order(req("t-rate-3"))
    vendor.catalog()  # and the catalog
    assert waited == [pytest.approx(0.75), pytest.approx(1.0), pytest.approx(1.0),
                      pytest.approx(1.0)]


# --- error classes -------------------------------------------------------------------------


def test_wrong_key_is_operator_facing(make_vendor: MakeVendor, standin: TangoStandin) -> None:
    with pytest.raises(OperatorFacingError, match="rejected the platform name/key") as caught:
        make_vendor(platform_key="wrong_key_0000").place_order(req("t-401"))
    assert caught.value.status == 401
    assert standin.state.orders == {}


def test_not_enough_funds_is_operator_facing_then_a_top_up_lets_it_through(
    vendor: TangoVendor, standin: TangoStandin,
) -> None:
    standin.state.set_balance("10.00")
    request = req("t-funds")
    with pytest.raises(OperatorFacingError, match="not enough funds"):
        vendor.place_order(request)
    standin.state.set_balance("100.00")
    assert vendor.place_order(request).status is OrderStatus.COMPLETE


@pytest.mark.parametrize(("product", "amount"), [
    ("U000000", "25"), (STARBUCKS, "30"), (AMAZON, "5000"),
])
def test_an_item_or_amount_problem_is_the_operators_config(
    vendor: TangoVendor, standin: TangoStandin, product: str, amount: str,
) -> None:
    with pytest.raises(ConfigFixable) as caught:
        vendor.place_order(req(f"t-item-{product}-{amount}", product=product, amount=amount))
    assert caught.value.status == 400  # field errors come as HTTP 400
    assert "routing config" in str(caught.value)
    assert standin.state.orders == {}


def test_a_listed_item_tango_will_not_sell_is_unavailable(
    vendor: TangoVendor, standin: TangoStandin,
) -> None:
    # The stand-in's UNAVAILABLE is in the catalog (inactive) at 1 to 2000 USD: 422.097.
    with pytest.raises(ProductUnavailable, match=r"422\.097") as caught:
        vendor.place_order(req("t-unavailable", product="UNAVAILABLE", amount="25"))
    assert caught.value.advocate_message == PRODUCT_UNAVAILABLE
    assert standin.state.orders == {}


def test_invalid_recipient_is_advocate_facing(vendor: TangoVendor) -> None:
    with pytest.raises(AdvocateFacingError) as caught:
        vendor.place_order(req("t-recipient", email="bob@invalid.example"))
    assert caught.value.advocate_message == RECIPIENT_INVALID


def test_wrong_account_is_operator_facing(make_vendor: MakeVendor) -> None:
    with pytest.raises(OperatorFacingError, match="check the configuration"):
        make_vendor(account_identifier="nope").place_order(req("t-account"))


def test_wrong_base_url_is_operator_facing(make_vendor: MakeVendor,
                                           standin: TangoStandin) -> None:
    vendor = make_vendor(base_url=standin.url + "/raas/v1")
    with pytest.raises(OperatorFacingError, match="base_url"):
        vendor.place_order(req("t-404"))
    with pytest.raises(OperatorFacingError, match="base_url"):
        vendor.lookup("rpanything")


def test_missing_product_or_unusable_key_sends_nothing(vendor: TangoVendor,
                                                       standin: TangoStandin) -> None:
    with pytest.raises(OperatorFacingError, match="needs a UTID"):
        vendor.place_order(req("t-none", product=None))
    with pytest.raises(OperatorFacingError, match="externalRefID"):
        vendor.place_order(req("t-key", key="not-alphanumeric!"))
    assert standin.state.received == []


def test_429_is_transient_with_retry_after(vendor: TangoVendor, standin: TangoStandin,
                                           sleeps: list[float]) -> None:
    standin.state.fail(429, None, retry_after="2")
    with pytest.raises(TransientVendorError) as caught:
        vendor.place_order(req("t-429"))
    assert caught.value.status == 429 and caught.value.retry_after == 2.0
    assert sleeps == [2.0] * (FAST.attempts - 1)


def test_5xx_is_transient(vendor: TangoVendor, standin: TangoStandin) -> None:
    standin.state.fail(503, None)
    with pytest.raises(TransientVendorError, match="reuses the externalRefID"):
        vendor.place_order(req("t-503"))
    standin.state.fail(500, None)
    with pytest.raises(TransientVendorError):
        vendor.lookup("rpanything")


def test_a_5xx_that_processed_the_order_is_replayed_with_the_same_ref(
    vendor: TangoVendor, standin: TangoStandin,
) -> None:
    """Tango: 5xx "may occasionally process". The shared retry loop replays the identical
    request; the repeat finds the order created by the first one."""
    standin.state.process_then_fail(503, 1)
    request = req("t-processed")
    result = vendor.place_order(request)
    assert result.status is OrderStatus.COMPLETE
    assert [r["outcome"] for r in standin.state.received] == ["created", "repeat"]
    assert standin.state.created_for(request.idempotency_key) == 1


def test_5xx_forever_after_processing_then_a_later_cycle_reconciles(
    vendor: TangoVendor, standin: TangoStandin,
) -> None:
    standin.state.process_then_fail(503, FAST.attempts)
    request = req("t-processed-forever")
    with pytest.raises(TransientVendorError):
        vendor.place_order(request)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None
    assert vendor.place_order(request).vendor_order_id == found.vendor_order_id
    assert standin.state.created_for(request.idempotency_key) == 1


def test_lost_answer_is_unknown_then_lookup_finds_it(vendor: TangoVendor,
                                                     standin: TangoStandin) -> None:
    standin.state.lose_answers(FAST.attempts)
    request = req("t-lost")
    with pytest.raises(UnknownOutcome):
        vendor.place_order(request)
    assert vendor.lookup(request.idempotency_key) is not None
    assert standin.state.created_for(request.idempotency_key) == 1


def test_hung_answer_is_unknown(make_vendor: MakeVendor, standin: TangoStandin) -> None:
    vendor = make_vendor(policy=RetryPolicy(attempts=1, timeout=0.3))
    standin.state.lose_answers(1, mode="hang", hang_seconds=5)
    with pytest.raises(UnknownOutcome, match="ReadTimeout"):
        vendor.place_order(req("t-hang"))


def test_garbage_2xx_is_unknown(vendor: TangoVendor, standin: TangoStandin) -> None:
    standin.state.garbage(1)
    request = req("t-garbage")
    with pytest.raises(UnknownOutcome):
        vendor.place_order(request)
    assert vendor.lookup(request.idempotency_key) is not None
    standin.state.garbage(1)
    with pytest.raises(TransientVendorError):
        vendor.lookup(request.idempotency_key)


def test_connection_refused_is_transient(make_vendor: MakeVendor) -> None:
    vendor = make_vendor(base_url=f"http://127.0.0.1:{free_port()}/raas/v2")
    with pytest.raises(TransientVendorError, match="ConnectError"):
        vendor.place_order(req("t-refused"))


# --- shapes only a mock can produce ---------------------------------------------------------


def _mock(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> TangoVendor:
    return TangoVendor("https://tango.mock/raas/v2", "mockplatform", "mock_key_123",
                       "cust", "acct", policy=FAST, transport=httpx.MockTransport(handler),
                       sleep=lambda _s: None, min_order_interval=0.0, **kw)


def _order(status: str | None, ref: str = "rpx") -> dict[str, Any]:
    return {"referenceOrderID": "RA1", "externalRefID": ref, "status": status,
            "recipient": {"email": "carol@example.org"}}


def test_the_request_is_the_documented_one() -> None:
    seen: list[httpx.Request] = []

    request = req("t-body", amount="12.50", name="Cher")

    def handler(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return httpx.Response(201, json=_order("COMPLETE", request.idempotency_key))

    _mock(handler).place_order(request)
    sent = seen[0]
    assert str(sent.url) == "https://tango.mock/raas/v2/orders"
    expected = base64.b64encode(b"mockplatform:mock_key_123").decode()
    assert sent.headers["Authorization"] == f"Basic {expected}"
    assert json.loads(sent.content) == {
        "customerIdentifier": "cust", "accountIdentifier": "acct", "utid": AMAZON,
        "amount": 12.5, "sendEmail": True,
        "recipient": {"firstName": "Cher", "email": "alice@example.com"},
        "externalRefID": request.idempotency_key,
    }


@pytest.mark.parametrize(("status", "expected"), [
    ("COMPLETE", OrderStatus.COMPLETE), ("PENDING", OrderStatus.PENDING),
    ("FAILED", OrderStatus.FAILED), ("CANCELLED", OrderStatus.FAILED),
    ("SOMETHING_NEW", OrderStatus.PENDING), (None, OrderStatus.PENDING),
])
def test_status_mapping(status: str | None, expected: OrderStatus) -> None:
    vendor = _mock(lambda r: httpx.Response(200, json={"orders": [_order(status)]}))
    found = vendor.lookup("rpx")
    assert found is not None and found.status is expected


def test_lookup_shapes() -> None:
    assert _mock(lambda r: httpx.Response(200, json=[_order("COMPLETE")])).lookup("RPX")
    with pytest.raises(OperatorFacingError, match="filter ignored"):
        _mock(lambda r: httpx.Response(200, json={"orders": [_order("COMPLETE", "other")]})
              ).lookup("rpx")
    with pytest.raises(TransientVendorError):
        _mock(lambda r: httpx.Response(200, json={"page": {}})).lookup("rpx")


def test_an_order_for_another_ref_is_unknown() -> None:
    with pytest.raises(UnknownOutcome):
        _mock(lambda r: httpx.Response(201, json=_order("COMPLETE", "someone"))
              ).place_order(req("t-other"))


def test_a_timeout_then_5xx_is_unknown() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(503, json={"errors": []})

    with pytest.raises(UnknownOutcome):
        _mock(handler).place_order(req("t-timeout-5xx"))


@pytest.mark.parametrize("status", [405, 409, 418])
def test_other_4xx_is_operator_facing(status: int) -> None:
    with pytest.raises(OperatorFacingError, match=f"HTTP {status}"):
        _mock(lambda r: httpx.Response(status, json={"errors": [{"message": "no"}]})
              ).place_order(req("t-4xx"))


@pytest.mark.parametrize(("errors", "kind"), [
    ([{"path": "recipient.email", "message": "bad"}], "recipient"),
    ([{"path": "utid", "message": "Item not found"}], "product"),
    ([{"path": "amount", "message": "out of range"}], "product"),
    ([{"path": "recipient.email"}, {"path": "utid"}], "both"),
    ([{"path": "recipient.email"}, {"path": "accountIdentifier"}], "other"),
    ([{"i18nKey": "account.insufficient.funds", "message": "x"}], "funds"),
    ([{"message": "Insufficient funds"}], "funds"),
    ([{"message": "The email address is invalid"}], "recipient"),
    ([{"message": "Validation failed"}], "other"),
    ([], "other"),
])
def test_classify_errors(errors: list[dict[str, Any]], kind: str) -> None:
    assert classify_errors(errors) == kind


# --- the catalog cache ----------------------------------------------------------------------


def test_a_second_vendor_with_the_same_cache_does_not_fetch_the_catalog(
    make_vendor: MakeVendor, standin: TangoStandin,
) -> None:
    cache = DictCache()
    first = make_vendor(cache=cache)
    assert AMAZON in first.catalog()
    assert first.catalog() is not None  # the same instance keeps it too
    assert standin.state.catalog_calls == 1
    key = first.catalog_cache_key
    assert key.startswith("tango:catalog:") and standin.account in key
    expires = cache.values[key][1]
    assert expires is not None
    assert timedelta(hours=11) < expires - datetime.now(UTC) <= CATALOG_TTL

    second = make_vendor(cache=cache)  # a new --run-once: a new process, the same ledger
    assert second.check([(AMAZON, Decimal("25"), "USD")]).ok
    assert standin.state.catalog_calls == 1


def test_the_catalog_is_fetched_again_when_the_cache_expires(
    make_vendor: MakeVendor, standin: TangoStandin,
) -> None:
    cache = DictCache()
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    make_vendor(cache=cache, clock=lambda: now[0]).catalog()
    now[0] += timedelta(hours=11)
    make_vendor(cache=cache, clock=lambda: now[0]).catalog()
    assert standin.state.catalog_calls == 1
    now[0] += timedelta(hours=2)
    make_vendor(cache=cache, clock=lambda: now[0]).catalog()
    assert standin.state.catalog_calls == 2


def test_the_catalog_cache_lives_in_the_sql_ledger(
    make_vendor: MakeVendor, standin: TangoStandin, tmp_path: Path,
) -> None:
    from poller.ledger import open_ledger

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for _ in range(2):  # two runs, each with its own ledger connection and vendor
        ledger = open_ledger(url)
        try:
            assert make_vendor(cache=ledger).check([(AMAZON, Decimal("25"), "USD")]).ok
        finally:
            ledger.close()
    assert standin.state.catalog_calls == 1


def test_a_cached_catalog_refuses_a_wrong_currency_before_sending(
    make_vendor: MakeVendor, standin: TangoStandin,
) -> None:
    vendor = make_vendor(cache=DictCache())
    vendor.catalog()
    with pytest.raises(OperatorFacingError, match="priced in EUR"):
        vendor.place_order(req("t-currency", product=ZALANDO, currency="USD"))
    assert standin.state.received == []
    assert vendor.place_order(req("t-currency-ok", product=ZALANDO, currency="EUR")).status \
        is OrderStatus.COMPLETE


def test_an_unreadable_cache_entry_is_fetched_again(make_vendor: MakeVendor,
                                                    standin: TangoStandin) -> None:
    cache = DictCache()
    vendor = make_vendor(cache=cache)
    cache.values[vendor.catalog_cache_key] = ("{not json", None)
    assert AMAZON in vendor.catalog()
    assert standin.state.catalog_calls == 1


# --- check ----------------------------------------------------------------------------------


def test_check_finds_a_mistyped_utid(vendor: TangoVendor) -> None:
    result = vendor.check([
        (AMAZON, Decimal("25"), "USD"),
        ("U561539", Decimal("25"), "USD"),
        (STARBUCKS, Decimal("30"), "USD"),
        (ZALANDO, Decimal("25"), "USD"),
        ("UNAVAILABLE", Decimal("5"), "USD"),
        (None, Decimal("5"), "USD"),
    ])
    assert result.credentials_ok and not result.ok
    assert result.balance == "10,000.00 USD"
    by = {p.product: p for p in result.products}
    assert by[AMAZON].ok and by[AMAZON].detail == "Amazon.com Gift Card"
    assert not by["U561539"].ok
    assert by["U561539"].detail == "no UTID 'U561539' in the Tango Card catalog " \
                                   "(did you mean U561593?)"
    assert "fixed value of 25.00" in by[STARBUCKS].detail
    assert "priced in EUR" in by[ZALANDO].detail
    assert "inactive" in by["UNAVAILABLE"].detail
    assert not by[None].ok


def test_check_with_wrong_credentials_or_account(make_vendor: MakeVendor) -> None:
    bad = make_vendor(platform_key="wrong_key_0000").check([(AMAZON, Decimal("25"), "USD")])
    assert not bad.credentials_ok and not bad.ok
    assert "rejected the platform name/key" in bad.problems[0]
    assert not bad.products[0].ok
    account = make_vendor(account_identifier="nope").check([(AMAZON, Decimal("25"), "USD")])
    assert account.credentials_ok and not account.ok
    assert "no account 'nope'" in account.problems[0]


# --- settings and registry -------------------------------------------------------------------


def test_settings() -> None:
    base = {"platform_name": "p", "platform_key": "k_secret_1", "customer_identifier": "c",
            "account_identifier": "a"}
    settings = Settings.model_validate(base)
    assert settings.base_url == "https://integration-api.tangocard.com/raas/v2"
    assert "k_secret_1" not in repr(settings)
    with pytest.raises(ValidationError):
        Settings.model_validate({**base, "platformkey": "typo"})
    with pytest.raises(ValidationError):
        Settings.model_validate({k: v for k, v in base.items() if k != "account_identifier"})


def test_registry_builds_it_with_the_cache(standin: TangoStandin) -> None:
    assert "tango" in vendors.available()
    settings = vendors.validate_settings("tango", {
        "base_url": standin.base_url, "platform_name": standin.platform_name,
        "platform_key": standin.platform_key, "customer_identifier": standin.customer,
        "account_identifier": standin.account,
    })
    cache = DictCache()
    vendor = vendors.build_vendor("tango", settings,
                                  vendors.BuildContext(policy=FAST, cache=cache))
    try:
        assert vendor.name == "tango"
        assert isinstance(vendor, TangoVendor)
        vendor.catalog()
        assert cache.puts == 1
        assert standin.platform_key not in repr(vendor)
        assert standin.platform_key not in str(vars(vendor))
    finally:
        vendor.close()


def test_every_error_names_the_vendor(vendor: TangoVendor, standin: TangoStandin) -> None:
    standin.state.fail(500, None)
    with pytest.raises(VendorError) as caught:
        vendor.place_order(req("t-any"))
    assert caught.value.vendor == "tango"


# --- the documented status codes and error keys ---------------------------------------------


def _tango_error(status: int, key: str, errors: list[dict[str, Any]] | None = None,
                 ) -> dict[str, Any]:
    return {"timestamp": "2026-01-01T00:00:00.000Z", "requestId": "req-1", "path": "/x",
            "httpCode": status, "httpPhrase": "x", "message": f"message for {key}",
            "i18nKey": key, "i18nTokenReplacements": [], "errors": errors or [],
            "code": int(key.replace(".", ""))}


def test_402_waits_for_funds_then_goes_through(vendor: TangoVendor,
                                               standin: TangoStandin) -> None:
    standin.state.set_balance("1.00")
    request = req("t-402")
    with pytest.raises(OperatorFacingError, match=r"402\.001") as caught:
        vendor.place_order(request)
    assert caught.value.status == 402
    assert not isinstance(caught.value, ConfigFixable)
    assert "top it up" in str(caught.value)
    standin.state.set_balance("1000")
    assert vendor.place_order(request).status is OrderStatus.COMPLETE
    assert standin.state.created_for(request.idempotency_key) == 1


def test_409_002_is_retried_with_the_same_ref_after_two_seconds(
    make_vendor: MakeVendor, standin: TangoStandin,
) -> None:
    waited: list[float] = []
    vendor = make_vendor(sleep=waited.append)
    standin.state.in_process(1)
    request = req("t-409-002")
    placed = vendor.place_order(request)
    assert placed.status is OrderStatus.COMPLETE
    assert 2.0 in waited
    refs = [r["external_id"] for r in standin.state.received]
    assert refs == [request.idempotency_key] * 2
    assert standin.state.created_for(request.idempotency_key) == 1


def test_409_002_that_persists_is_transient(make_vendor: MakeVendor,
                                            standin: TangoStandin) -> None:
    standin.state.in_process(10)
    with pytest.raises(TransientVendorError, match=r"409\.002") as caught:
        make_vendor().place_order(req("t-409-002-long"))
    assert caught.value.retry_after == 2.0


def test_409_024_looks_the_order_up(vendor: TangoVendor, standin: TangoStandin) -> None:
    request = req("t-409-024")
    first = vendor.place_order(request)
    standin.state.set_repeat_conflict()
    again = vendor.place_order(request)
    assert again.vendor_order_id == first.vendor_order_id
    assert [r["status"] for r in standin.state.received] == [201, 409]


def test_partial_needs_a_person(vendor: TangoVendor, standin: TangoStandin) -> None:
    request = req("t-partial")
    vendor.place_order(request)
    standin.state.set_status(request.idempotency_key, "PARTIAL")
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.NEEDS_PERSON
    assert "PARTIAL" in found.detail and "part of the order" in found.detail


def test_404_110_on_lookup_is_not_found_but_a_bare_404_is_a_wrong_url(
    vendor: TangoVendor, standin: TangoStandin,
) -> None:
    standin.state.set_empty_lookup_404()
    assert vendor.lookup("rpnosuchorder") is None
    with pytest.raises(OperatorFacingError, match="base_url") as caught:
        _mock(lambda r: httpx.Response(404, text="Not Found")).lookup("rpx")
    assert "not found" not in str(caught.value).lower().replace("404 to", "")


@pytest.mark.parametrize(("key", "said"), [
    ("403.016", "velocity"), ("403.007", "not authorised"),
])
def test_403_keys_are_the_operators_and_not_always_a_bad_key(key: str, said: str) -> None:
    vendor = _mock(lambda r: httpx.Response(403, json=_tango_error(403, key)))
    with pytest.raises(OperatorFacingError, match=said) as caught:
        vendor.place_order(req("t-403"))
    assert "rejected the platform name/key" not in str(caught.value)


def _refusing(body: dict[str, Any], catalog: httpx.Response) -> TangoVendor:
    """A Tango that refuses every order with ``body`` and answers ``catalog`` to
    ``GET /catalogs``."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/catalogs"):
            return catalog
        return httpx.Response(400, json=body)

    return _mock(handler)


NO_ITEMS = httpx.Response(200, json={"brands": []})


def _listing(utid: str, **item: Any) -> httpx.Response:
    return httpx.Response(200, json={"brands": [{"brandName": "B", "items": [
        {"utid": utid, "rewardName": "Card", "currencyCode": "USD", "status": "active",
         "valueType": "VARIABLE_VALUE", "minValue": 1, "maxValue": 100, **item}]}]})


@pytest.mark.parametrize("key", ["422.024", "422.025", "422.026", "422.027", "422.030",
                                 "422.097", "422.098", "422.099"])
def test_item_keys_are_decided_by_the_catalog(key: str) -> None:
    body = _tango_error(400, key, [{"path": "x", "i18nKey": key, "message": "m"}])
    request = req("t-key")
    # The catalog does not list the UTID: the routing config is wrong.
    with pytest.raises(ConfigFixable, match=key):
        _refusing(body, NO_ITEMS).place_order(request)
    # Listed, but not at this amount: the routing config again.
    with pytest.raises(ConfigFixable, match="above the item's maximum"):
        _refusing(body, _listing(str(request.product), maxValue=10)).place_order(request)
    # Listed at this amount and currency (inactive or not), yet refused: unavailable.
    for status in ("active", "inactive"):
        with pytest.raises(ProductUnavailable, match=key) as caught:
            _refusing(body, _listing(str(request.product), status=status)).place_order(request)
        assert caught.value.advocate_message == PRODUCT_UNAVAILABLE
    # The catalog cannot be read: nothing is decided.
    with pytest.raises(TransientVendorError, match="nothing is decided"):
        _refusing(body, httpx.Response(503)).place_order(request)


@pytest.mark.parametrize("key", ["422.009", "422.028", "422.029", "422.134"])
def test_recipient_keys_refuse(key: str) -> None:
    body = _tango_error(400, key, [{"path": "x", "i18nKey": key, "message": "m"}])
    with pytest.raises(AdvocateFacingError, match=key) as caught:
        _mock(lambda r: httpx.Response(400, json=body)).place_order(req("t-key"))
    assert caught.value.advocate_message == RECIPIENT_INVALID


def test_a_top_level_key_alone_is_read() -> None:
    with pytest.raises(ConfigFixable, match=r"422\.024"):
        _refusing(_tango_error(400, "422.024"), NO_ITEMS).place_order(req("t-top"))
