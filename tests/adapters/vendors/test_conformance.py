"""The contract every ``Vendor`` keeps, checked against each one.

To add a vendor: write a factory that returns a ``Harness`` (the vendor, a way to count the
orders its backend holds for a key, a request it accepts, a way to provoke each error class
and a way to break its look-ups) and add it to ``FACTORIES``.

The look-up contract: ``lookup(key)`` returns the order when the vendor has it, None only
when the vendor itself said there is no such order, and raises a ``VendorError`` whenever it
could not ask (connect error, timeout, 5xx): a look-up that could not ask must never read as
"no order", or the worker would order again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from poller.domain.errors import (
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.ports import Vendor
from poller.sandbox import http_receiver
from poller.sandbox.server import free_port
from poller.transport import RetryPolicy
from poller.vendors.fake import FakeVendor
from poller.vendors.giftbit import GiftbitVendor, campaign_id
from poller.vendors.http import HttpVendor
from poller.vendors.tango import TangoVendor
from poller.vendors.tremendous import TremendousVendor

from .support import (
    FAST,
    DictCache,
    Standin,
    giftbit_standin,
    make_request,
    receiver_standin,
    tango_standin,
)

SLOW = RetryPolicy(attempts=1, initial_wait=0.001, max_wait=0.002, timeout=0.2)
"""A client that gives up before a stand-in slowed down by ``STANDIN_DELAY`` answers."""
STANDIN_DELAY = 0.6
LOOKUP_FAILURES = ("connect", "slow", "5xx")


def _dead_origin() -> str:
    return f"http://127.0.0.1:{free_port()}"

CORE_ERRORS: tuple[type[VendorError], ...] = (
    TransientVendorError, AdvocateFacingError, OperatorFacingError, UnknownOutcome,
)

# Each kind of failure, and the core class the vendor must raise for it.
KINDS: dict[str, type[VendorError]] = {
    "transient": TransientVendorError,
    "advocate": AdvocateFacingError,
    "operator": OperatorFacingError,
    "unknown": UnknownOutcome,
}


@dataclass
class Harness:
    vendor: Vendor
    created: Callable[[str], int]
    """How many orders the vendor's side holds for an idempotency key."""
    request: Callable[[str], OrderRequest]
    """A request this vendor accepts, for a redemption id."""
    provoke: Callable[[str, OrderRequest], OrderRequest]
    """Arrange that the next ``place_order`` of the returned request fails with ``kind``."""
    break_lookup: Callable[[str], Vendor]
    """A vendor (same backend, same memory) whose look-ups now fail with ``connect``,
    ``slow`` or ``5xx``."""
    config: Callable[[OrderRequest], OrderRequest] | None = None
    """A request the operator's config got wrong (unknown product, amount not allowed);
    None for a vendor without a catalog."""


def tremendous(pytest_request: pytest.FixtureRequest) -> Harness:
    standin: Standin = pytest_request.getfixturevalue("standin")
    make_vendor: Callable[..., TremendousVendor] = pytest_request.getfixturevalue("make_vendor")
    vendor = make_vendor()
    state = standin.state

    def provoke(kind: str, request: OrderRequest) -> OrderRequest:
        if kind == "transient":
            state.fail(503, None)
        elif kind == "advocate":
            return dataclasses.replace(request, product="UNAVAILABLE")
        elif kind == "operator":
            state.set_balance(0)
        elif kind == "unknown":
            state.lose_answers(10)
        return request

    def break_lookup(failure: str) -> Vendor:
        if failure == "connect":
            return make_vendor(base_url=_dead_origin() + "/api/v2")
        if failure == "slow":
            state.set_delay(STANDIN_DELAY)
            return make_vendor(policy=SLOW)
        state.fail(503, None)
        return vendor

    return Harness(vendor=vendor, created=state.created_for, request=make_request,
                   provoke=provoke, break_lookup=break_lookup,
                   config=lambda r: dataclasses.replace(r, product="UNKNOWN-PRODUCT"))


def fake(pytest_request: pytest.FixtureRequest) -> Harness:
    vendor = FakeVendor()

    def provoke(kind: str, request: OrderRequest) -> OrderRequest:
        key = request.idempotency_key
        if kind == "unknown":
            vendor.lose_answer(key=key)
        else:
            vendor.fail(KINDS[kind](f"scripted {kind}", vendor=vendor.name), key=key)
        return request

    def break_lookup(failure: str) -> Vendor:
        vendor.fail(TransientVendorError(f"scripted {failure}", vendor=vendor.name),
                    on="lookup", times=None)
        return vendor

    def config(request: OrderRequest) -> OrderRequest:
        vendor.fail(ConfigFixable("scripted config", vendor=vendor.name),
                    key=request.idempotency_key)
        return request

    return Harness(vendor=vendor, created=lambda key: vendor.created[key],
                   request=make_request, provoke=provoke, break_lookup=break_lookup,
                   config=config)


def tango(pytest_request: pytest.FixtureRequest) -> Harness:
    standin = tango_standin()

    def make(base_url: str = standin.base_url, policy: RetryPolicy = FAST) -> TangoVendor:
        made = TangoVendor(base_url, standin.platform_name, standin.platform_key,
                           standin.customer, standin.account, policy=policy,
                           sleep=lambda _s: None, min_order_interval=0.0)
        pytest_request.addfinalizer(made.close)
        return made

    vendor = make()
    state = standin.state

    def provoke(kind: str, request: OrderRequest) -> OrderRequest:
        if kind == "transient":
            state.fail(503, None)
        elif kind == "advocate":
            return dataclasses.replace(request, recipient_email="bob@invalid.example")
        elif kind == "operator":
            state.set_balance(0)
        elif kind == "unknown":
            state.lose_answers(10)
        return request

    def break_lookup(failure: str) -> Vendor:
        if failure == "connect":
            return make(base_url=_dead_origin() + "/raas/v2")
        if failure == "slow":
            state.set_delay(STANDIN_DELAY)
            return make(policy=SLOW)
        state.fail(503, None)
        return vendor

    return Harness(vendor=vendor, created=state.created_for,
                   request=lambda rid: make_request(rid, vendor="tango", product="U561593"),
                   provoke=provoke, break_lookup=break_lookup,
                   config=lambda r: dataclasses.replace(r, product="U000000"))


def giftbit(pytest_request: pytest.FixtureRequest) -> Harness:
    standin = giftbit_standin()

    def make(base_url: str = standin.base_url, policy: RetryPolicy = FAST) -> GiftbitVendor:
        made = GiftbitVendor(base_url, standin.api_key, policy=policy, sleep=lambda _s: None)
        pytest_request.addfinalizer(made.close)
        return made

    vendor = make()
    state = standin.state

    def provoke(kind: str, request: OrderRequest) -> OrderRequest:
        if kind == "transient":
            state.fail(503, None)
        elif kind == "advocate":
            return dataclasses.replace(request, recipient_email="bob@invalid.example")
        elif kind == "operator":
            state.fail(401, None)
        elif kind == "unknown":
            state.lose_answers(10)
        return request

    def break_lookup(failure: str) -> Vendor:
        if failure == "connect":
            return make(base_url=_dead_origin() + "/papi/v1")
        if failure == "slow":
            state.set_delay(STANDIN_DELAY)
            return make(policy=SLOW)
        state.fail(503, None)
        return vendor

    return Harness(vendor=vendor, created=lambda key: state.created_for(campaign_id(key)),
                   request=lambda rid: make_request(rid, vendor="giftbit", product="amazonus"),
                   provoke=provoke, break_lookup=break_lookup,
                   config=lambda r: dataclasses.replace(r, product="UNAVAILABLE"))


def http(pytest_request: pytest.FixtureRequest) -> Harness:
    """The receiver with its optional look-up route configured (``lookup_url``); without
    one the look-up cannot answer found or not found once a send's outcome is unknown
    (``test_lookup_never_orders.py`` holds that variant to the same promise)."""
    receiver = receiver_standin()
    cache = DictCache()  # what the vendor sent survives a new instance, as in the ledger

    def make(url: str = receiver.hook_url, policy: RetryPolicy = FAST) -> HttpVendor:
        origin = url.removesuffix(http_receiver.HOOK_PATH)
        made = HttpVendor(url, receiver.secret, policy=policy, sleep=lambda _s: None,
                          cache=cache, lookup_url=origin + http_receiver.LOOKUP_PATH)
        pytest_request.addfinalizer(made.close)
        return made

    vendor = make()
    state = receiver.state

    def provoke(kind: str, request: OrderRequest) -> OrderRequest:
        if kind == "transient":
            state.fail(503, None)
        elif kind == "advocate":
            return dataclasses.replace(request, product="UNAVAILABLE")
        elif kind == "operator":
            state.set_secret("a-secret-the-vendor-does-not-have")
        elif kind == "unknown":
            state.lose_answers(FAST.attempts)
        return request

    def created(key: str) -> int:
        order = state.order(key)  # a refused order is the receiver saying no: nothing taken
        return 0 if order is not None and order["status"] == "refused" else state.created_for(key)

    def break_lookup(failure: str) -> Vendor:
        if failure == "connect":
            return make(url=_dead_origin() + "/hooks/orders")
        if failure == "slow":
            state.set_delay(STANDIN_DELAY)
            return make(policy=SLOW)
        state.fail(503, None)
        return vendor

    return Harness(vendor=vendor, created=created,
                   request=lambda rid: make_request(rid, vendor="http"), provoke=provoke,
                   break_lookup=break_lookup)


# The manual vendor is not here: it cannot fail (no I/O) and answers PENDING to any key by
# design; tests/adapters/vendors/test_manual.py covers it.
FACTORIES: dict[str, Callable[[pytest.FixtureRequest], Harness]] = {
    "tremendous": tremendous,
    "fake": fake,
    "tango": tango,
    "giftbit": giftbit,
    "http": http,
}


@pytest.fixture(params=sorted(FACTORIES))
def harness(request: pytest.FixtureRequest) -> Harness:
    made = FACTORIES[request.param](request)
    request.addfinalizer(made.vendor.close)
    return made


def test_shape(harness: Harness) -> None:
    vendor = harness.vendor
    assert isinstance(vendor.name, str) and vendor.name
    for method in ("place_order", "lookup", "close"):
        assert callable(getattr(vendor, method))


def test_create_is_idempotent(harness: Harness) -> None:
    request = harness.request("conf-idem")
    first = harness.vendor.place_order(request)
    second = harness.vendor.place_order(request)
    assert isinstance(first, OrderResult)
    assert isinstance(first.status, OrderStatus)
    assert first.vendor_order_id
    assert second.vendor_order_id == first.vendor_order_id
    assert harness.created(request.idempotency_key) == 1


def test_lookup_after_create(harness: Harness) -> None:
    request = harness.request("conf-lookup")
    placed = harness.vendor.place_order(request)
    found = harness.vendor.lookup(request.idempotency_key)
    assert found is not None
    assert found.vendor_order_id == placed.vendor_order_id


def test_lookup_of_unknown_is_none(harness: Harness) -> None:
    assert harness.vendor.lookup(harness.request("conf-never").idempotency_key) is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_errors_are_the_core_classes(harness: Harness, kind: str) -> None:
    request = harness.provoke(kind, harness.request(f"conf-{kind}"))
    with pytest.raises(VendorError) as caught:
        harness.vendor.place_order(request)
    error = caught.value
    assert isinstance(error, KINDS[kind])
    assert sum(isinstance(error, cls) for cls in CORE_ERRORS) == 1
    assert error.vendor == harness.vendor.name
    if kind != "unknown":
        assert harness.created(request.idempotency_key) == 0


def test_unknown_outcome_is_reconciled_by_lookup(harness: Harness) -> None:
    request = harness.provoke("unknown", harness.request("conf-lost"))
    with pytest.raises(UnknownOutcome):
        harness.vendor.place_order(request)
    found = harness.vendor.lookup(request.idempotency_key)
    assert found is not None
    assert harness.created(request.idempotency_key) == 1


@pytest.mark.parametrize("failure", LOOKUP_FAILURES)
def test_a_lookup_that_could_not_ask_raises(harness: Harness, failure: str) -> None:
    request = harness.request(f"conf-lookup-{failure}")
    placed = harness.vendor.place_order(request)
    broken = harness.break_lookup(failure)
    with pytest.raises(VendorError) as caught:
        broken.lookup(request.idempotency_key)
    assert sum(isinstance(caught.value, cls) for cls in CORE_ERRORS) == 1
    assert not isinstance(caught.value, AdvocateFacingError)
    assert harness.created(request.idempotency_key) == 1  # asking created nothing
    assert placed.vendor_order_id


def test_config_errors_are_config_fixable(harness: Harness) -> None:
    if harness.config is None:
        assert harness.vendor.name == "http"  # no catalog: the receiver decides
        return
    request = harness.config(harness.request("conf-config"))
    with pytest.raises(ConfigFixable) as caught:
        harness.vendor.place_order(request)
    assert caught.value.vendor == harness.vendor.name
    assert harness.created(request.idempotency_key) == 0
