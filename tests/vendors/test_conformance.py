"""The contract every ``Vendor`` keeps, checked against each one.

To add a vendor: write a factory that returns a ``Harness`` (the vendor, a way to count the
orders its backend holds for a key, a request it accepts, and a way to provoke each error
class) and add it to ``FACTORIES``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from poller.core.errors import (
    AdvocateFacingError,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
)
from poller.core.model import OrderRequest, OrderResult, OrderStatus
from poller.core.ports import Vendor
from poller.vendors.fake import FakeVendor
from poller.vendors.tremendous import TremendousVendor

from .support import Standin, make_request

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

    return Harness(vendor=vendor, created=state.created_for, request=make_request,
                   provoke=provoke)


def fake(pytest_request: pytest.FixtureRequest) -> Harness:
    vendor = FakeVendor()

    def provoke(kind: str, request: OrderRequest) -> OrderRequest:
        key = request.idempotency_key
        if kind == "unknown":
            vendor.lose_answer(key=key)
        else:
            vendor.fail(KINDS[kind](f"scripted {kind}", vendor=vendor.name), key=key)
        return request

    return Harness(vendor=vendor, created=lambda key: vendor.created[key],
                   request=make_request, provoke=provoke)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest], Harness]] = {
    "tremendous": tremendous,
    "fake": fake,
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
