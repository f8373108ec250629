"""FakeVendor: the in-memory vendor the worker tests script."""

from __future__ import annotations

import pytest

from poller.domain.errors import (
    AdvocateFacingError,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
)
from poller.domain.model import OrderStatus
from poller.vendors.fake import FakeVendor

from .support import make_request


def test_idempotent_and_counted() -> None:
    vendor = FakeVendor()
    request = make_request("r-1")
    first = vendor.place_order(request)
    second = vendor.place_order(request)
    assert first == second
    assert first.status is OrderStatus.COMPLETE
    assert first.delivery == "sent by email to a***@example.com"
    assert first.link is not None and first.link not in repr(first)
    assert vendor.calls[request.idempotency_key] == 2
    assert vendor.created[request.idempotency_key] == 1
    assert vendor.order_count == 1
    assert vendor.lookup(request.idempotency_key) == first
    assert vendor.lookup("unknown") is None


def test_fail_once_by_key() -> None:
    vendor = FakeVendor()
    request = make_request("r-1")
    vendor.fail(TransientVendorError("503", vendor="fake", status=503), key=request.idempotency_key)
    with pytest.raises(TransientVendorError):
        vendor.place_order(request)
    assert vendor.order(request.idempotency_key) is None
    assert vendor.place_order(request).status is OrderStatus.COMPLETE
    assert vendor.calls[request.idempotency_key] == 2
    other = make_request("r-2")
    assert vendor.place_order(other).status is OrderStatus.COMPLETE


def test_fail_always_by_product() -> None:
    vendor = FakeVendor()
    vendor.fail(AdvocateFacingError("gone"), product="GONE", times=None)
    for i in range(3):
        with pytest.raises(AdvocateFacingError):
            vendor.place_order(make_request(f"r-{i}", product="GONE"))
    assert vendor.place_order(make_request("r-ok")).status is OrderStatus.COMPLETE
    assert vendor.order_count == 1


def test_fail_n_times_then_succeed() -> None:
    vendor = FakeVendor()
    vendor.fail(OperatorFacingError("no funds", status=402), times=2)
    request = make_request("r-1")
    for _ in range(2):
        with pytest.raises(OperatorFacingError):
            vendor.place_order(request)
    assert vendor.place_order(request).status is OrderStatus.COMPLETE


def test_pending_then_complete() -> None:
    vendor = FakeVendor()
    request = make_request("r-1")
    vendor.pending(key=request.idempotency_key, polls=2)
    assert vendor.place_order(request).status is OrderStatus.PENDING
    first = vendor.lookup(request.idempotency_key)
    assert first is not None and first.status is OrderStatus.PENDING
    second = vendor.lookup(request.idempotency_key)
    assert second is not None and second.status is OrderStatus.COMPLETE
    assert vendor.place_order(request).status is OrderStatus.COMPLETE


def test_pending_then_failed_and_set_status() -> None:
    vendor = FakeVendor()
    request = make_request("r-1")
    vendor.pending(polls=1, final=OrderStatus.FAILED)
    assert vendor.place_order(request).status is OrderStatus.PENDING
    found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.FAILED
    vendor.set_status(request.idempotency_key, OrderStatus.COMPLETE)
    assert vendor.order(request.idempotency_key) is not None
    assert vendor.lookup(request.idempotency_key).status is OrderStatus.COMPLETE  # type: ignore[union-attr]


def test_lose_answer_creates_then_raises() -> None:
    vendor = FakeVendor()
    request = make_request("r-1")
    vendor.lose_answer(key=request.idempotency_key)
    with pytest.raises(UnknownOutcome):
        vendor.place_order(request)
    found = vendor.lookup(request.idempotency_key)
    assert found is not None
    assert vendor.place_order(request) == found
    assert vendor.created[request.idempotency_key] == 1


def test_lookup_errors_can_be_scripted() -> None:
    vendor = FakeVendor()
    vendor.fail(TransientVendorError("timeout"), on="lookup")
    with pytest.raises(TransientVendorError):
        vendor.lookup("k")
    assert vendor.lookup("k") is None
    assert vendor.lookups["k"] == 2


def test_name_and_close() -> None:
    vendor = FakeVendor("tango")
    assert vendor.name == "tango"
    result = vendor.place_order(make_request("r-1"))
    assert result.detail == "tango order"
    vendor.close()
    assert vendor.closed
    assert FakeVendor(link=False).place_order(make_request("r-1")).link is None
