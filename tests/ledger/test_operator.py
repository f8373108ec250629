"""The operator commands' logic (``poller.worker.operator``) on every ledger (memory, SQLite,
PostgreSQL) with the fake vendor: each asks the vendor by key before it refunds or orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from poller.domain.errors import TransientVendorError
from poller.domain.keys import idempotency_key
from poller.domain.model import LedgerEntry, OrderRequest, OrderStatus, Redemption
from poller.domain.states import State
from poller.ports import Changes, Ledger
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.fake import FakeVendor
from poller.worker import operator
from poller.worker.cycle import Worker, WorkerPolicy
from tests.unit.test_worker import RULES

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
NS = "org"


def key_of(rid: str, generation: int = 0) -> str:
    return idempotency_key(namespace=NS, source="influitive", redemption_id=rid,
                           generation=generation)


def with_key(ledger: Ledger, rid: str, to: State, **changes: object) -> LedgerEntry:
    """A recorded redemption whose key was saved (ORDERING), then moved to ``to``."""
    poll = ledger.start_poll(T0)
    ledger.record(poll, [Redemption(id=rid, reward_id="37", raw={"id": rid})], T0)
    entry = ledger.get("influitive", rid)
    assert entry is not None
    assert ledger.claim(entry.pk, "w1", T0, 60) is not None
    ledger.transition(entry.pk, "w1", State.ORDERING, "ordering", T0, Changes(
        idempotency_key=key_of(rid), vendor="fake", product="CARD25",
        amount=Decimal("25"), currency="USD", ordered_at=T0))
    if to is not State.ORDERING:
        ledger.transition(entry.pk, "w1", to, "moved", T0, Changes(**changes))  # type: ignore[arg-type]
    ledger.release(entry.pk, "w1")
    moved = ledger.get_pk(entry.pk)
    assert moved is not None
    return moved


def place(vendor: FakeVendor, rid: str, generation: int = 0) -> str:
    result = vendor.place_order(OrderRequest(
        idempotency_key=key_of(rid, generation), redemption_id=rid, source="influitive",
        vendor="fake", product="CARD25", amount=Decimal("25"), currency="USD",
        recipient_name="A", recipient_email="a@example.com"))
    return result.vendor_order_id


def vendors(vendor: FakeVendor):  # type: ignore[no-untyped-def]
    return lambda name: vendor


def test_refuse_is_blocked_by_an_order_the_ledger_did_not_know(ledger: Ledger) -> None:
    # A crash (or a lost answer) left a key but no order id, while the order exists.
    vendor = FakeVendor("fake")
    entry = with_key(ledger, "1", State.WAITING)
    order_id = place(vendor, "1")
    with pytest.raises(operator.OperatorError) as err:
        operator.refuse(ledger, vendors(vendor), source="influitive", redemption_id="1",
                        message="sorry", actor="ana", now=T0)
    assert order_id in str(err.value) and "refund" in str(err.value)
    after = ledger.get_pk(entry.pk)
    assert after is not None
    assert after.state is State.WAITING and after.vendor_order_id == order_id
    last = ledger.events(entry.pk)[-1]
    assert last.actor == "ana" and order_id in last.detail


def test_refuse_changes_nothing_when_the_vendor_cannot_be_asked(ledger: Ledger) -> None:
    vendor = FakeVendor("fake")
    entry = with_key(ledger, "1", State.HELD, hold_reason="x")
    vendor.fail(TransientVendorError("connect failed"), on="lookup")
    with pytest.raises(operator.OperatorError, match="could not ask"):
        operator.refuse(ledger, vendors(vendor), source="influitive", redemption_id="1",
                        message="sorry", actor="ana", now=T0)
    assert ledger.get_pk(entry.pk) == entry


def test_refuse_goes_ahead_when_the_vendor_confirms_no_order(ledger: Ledger) -> None:
    vendor = FakeVendor("fake")
    entry = with_key(ledger, "1", State.HELD, hold_reason="x")
    done = operator.refuse(ledger, vendors(vendor), source="influitive", redemption_id="1",
                           message="sorry", actor="ana", now=T0)
    assert done.entry.state is State.REFUSING and done.entry.message == "sorry"
    assert "confirms no order" in done.said
    assert ledger.events(entry.pk)[-1].actor == "ana"


def test_a_failed_order_can_be_refused_with_the_reason(ledger: Ledger) -> None:
    vendor = FakeVendor("fake")
    order_id = place(vendor, "1")
    vendor.set_status(key_of("1"), OrderStatus.FAILED)
    with_key(ledger, "1", State.HELD, vendor_order_id=order_id, hold_reason="failed")
    done = operator.refuse(ledger, vendors(vendor), source="influitive", redemption_id="1",
                           message="sorry", actor="ana", now=T0)
    assert done.entry.state is State.REFUSING
    assert "failed" in done.said and "never sent" in done.said


def test_retry_never_moves_a_failed_order_to_ordered(ledger: Ledger) -> None:
    vendor = FakeVendor("fake")
    order_id = place(vendor, "1")
    vendor.set_status(key_of("1"), OrderStatus.FAILED)
    entry = with_key(ledger, "1", State.HELD, vendor_order_id=order_id, hold_reason="failed")
    with pytest.raises(operator.OperatorError, match="reorder"):
        operator.retry(ledger, vendors(vendor), source="influitive", redemption_id="1",
                       actor="ana", now=T0)
    assert ledger.get_pk(entry.pk) == entry


def test_retry_moves_to_ordered_only_on_a_complete_order(ledger: Ledger) -> None:
    vendor = FakeVendor("fake")
    order_id = place(vendor, "1")
    with_key(ledger, "1", State.HELD, hold_reason="unknown outcome")
    done = operator.retry(ledger, vendors(vendor), source="influitive", redemption_id="1",
                          actor="ana", now=T0)
    assert done.entry.state is State.ORDERED and done.entry.vendor_order_id == order_id
    assert ledger.events(done.entry.pk)[-1].actor == "ana"
    # No order under the key: back to the worker with the same key, never ORDERED.
    with_key(ledger, "2", State.HELD, hold_reason="x")
    done = operator.retry(ledger, vendors(vendor), source="influitive", redemption_id="2",
                          actor="ana", now=T0)
    assert done.entry.state is State.WAITING and done.entry.idempotency_key == key_of("2")


def test_reorder_gives_a_failed_order_a_new_derived_key_and_nothing_else(
    ledger: Ledger,
) -> None:
    vendor = FakeVendor("fake")
    order_id = place(vendor, "1")
    vendor.set_status(key_of("1"), OrderStatus.FAILED)
    entry = with_key(ledger, "1", State.HELD, vendor_order_id=order_id, hold_reason="failed")
    done = operator.reorder(ledger, vendors(vendor), namespace=NS, source="influitive",
                            redemption_id="1", actor="ana", now=T0)
    moved = done.entry
    assert moved.state is State.WAITING and moved.idempotency_key == key_of("1", 1)
    assert moved.vendor_order_id is None and moved.hold_reason is None
    assert (moved.amount, moved.product, moved.vendor) == (entry.amount, entry.product,
                                                           entry.vendor)
    last = ledger.events(entry.pk)[-1]
    assert last.actor == "ana" and key_of("1") in last.detail and key_of("1", 1) in last.detail

    # The worker orders it under the new key at its next cycle, while it is still listed.
    source = FakeInfluitive([{"id": 1, "reward_id": 37, "reward_name": "$25 gift card",
                              "contact": {"id": 1, "email": "a1@example.com"}}])
    worker = Worker(source=source, ledger=ledger, vendors=vendors(vendor),
                    vendor_names={"fake"}, rules=RULES, policy=WorkerPolicy(namespace=NS),
                    owner="w1", clock=lambda: T0 + timedelta(hours=1))
    worker.run_cycle()
    final = ledger.get_pk(entry.pk)
    assert final is not None and final.state is State.FULFILLED
    assert vendor.created[key_of("1")] == 1 and vendor.created[key_of("1", 1)] == 1
    assert final.vendor_order_id == vendor.order(key_of("1", 1)).vendor_order_id  # type: ignore[union-attr]


def test_reorder_refuses_an_order_that_did_not_fail(ledger: Ledger) -> None:
    vendor = FakeVendor("fake")
    place(vendor, "1")
    entry = with_key(ledger, "1", State.HELD, hold_reason="x")
    with pytest.raises(operator.OperatorError, match="second reward"):
        operator.reorder(ledger, vendors(vendor), namespace=NS, source="influitive",
                         redemption_id="1", actor="ana", now=T0)
    assert ledger.get_pk(entry.pk) == entry
    with pytest.raises(operator.OperatorError, match="no order"):
        with_key(ledger, "2", State.HELD, hold_reason="x")
        operator.reorder(ledger, vendors(vendor), namespace=NS, source="influitive",
                         redemption_id="2", actor="ana", now=T0)
