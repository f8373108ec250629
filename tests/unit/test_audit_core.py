"""Balancing the books (poller.core.audit): each kind of discrepancy on its own, a clean
period, and the totals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from poller.core.audit import AuditResult, Kind, VendorAudit, audit_vendor
from poller.domain.keys import idempotency_key, is_our_key
from poller.domain.model import LedgerEntry
from poller.domain.orders import OrderStatus, VendorOrder
from poller.domain.states import State

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 8, tzinfo=UTC)
DAY = timedelta(days=1)


def key(n: int) -> str:
    return idempotency_key(namespace="org", source="influitive", redemption_id=f"r{n}")


def entry(n: int, **over: Any) -> LedgerEntry:
    base = LedgerEntry(
        pk=n, source="influitive", redemption_id=f"r{n}", state=State.FULFILLED, payload={},
        email=f"a{n}@example.com", vendor="tremendous", product="AMZN", amount=Decimal("25.00"),
        currency="USD", idempotency_key=key(n), vendor_order_id=f"o{n}",
        created_at=SINCE + DAY, updated_at=SINCE + DAY, ordered_at=SINCE + DAY,
    )
    return replace(base, **over)


def order(n: int, **over: Any) -> VendorOrder:
    base = VendorOrder(
        vendor="tremendous", order_id=f"o{n}", external_id=key(n), created_at=SINCE + DAY,
        status=OrderStatus.COMPLETE, raw_status="EXECUTED", amount_minor=2500, currency="USD",
        product="AMZN", recipient=f"a{n}@example.com",
    )
    return replace(base, **over)


def run(orders: list[VendorOrder], entries: list[LedgerEntry]) -> VendorAudit:
    return audit_vendor("tremendous", orders, entries, since=SINCE, until=UNTIL)


def kinds(audit: VendorAudit) -> list[tuple[Kind, str | None, str | None]]:
    return [(d.kind, d.redemption_id, d.order_id) for d in audit.discrepancies]


CASES: list[tuple[str, list[VendorOrder], list[LedgerEntry],
                  list[tuple[Kind, str | None, str | None]]]] = [
    ("clean period", [order(1), order(2)], [entry(1), entry(2)], []),
    ("orphan: our key, no row", [order(1), order(9)], [entry(1)], [(Kind.ORPHAN, None, "o9")]),
    ("orphan: the row was refused", [order(1)], [entry(1, state=State.REFUSED)],
     [(Kind.ORPHAN, "r1", "o1")]),
    ("orphan: the row was closed upstream", [order(1)],
     [entry(1, state=State.CLOSED_UPSTREAM)], [(Kind.ORPHAN, "r1", "o1")]),
    ("orphan: the row was ordered from another vendor", [order(1)],
     [entry(1, vendor="tango", vendor_order_id="t1")], [(Kind.ORPHAN, "r1", "o1")]),
    ("duplicate: two live orders under one row's key",
     [order(1), order(1, order_id="o1b")], [entry(1)], [(Kind.DUPLICATE, "r1", "o1b")]),
    ("missing: fulfilled in the period, nothing at the vendor", [order(1)],
     [entry(1), entry(2)], [(Kind.MISSING, "r2", "o2")]),
    ("mismatch: amount", [order(1, amount_minor=2000)], [entry(1)],
     [(Kind.MISMATCH, "r1", "o1")]),
    ("mismatch: currency", [order(1, currency="EUR")], [entry(1)],
     [(Kind.MISMATCH, "r1", "o1")]),
    ("mismatch: product", [order(1, product="VISA")], [entry(1)],
     [(Kind.MISMATCH, "r1", "o1")]),
    ("mismatch: recipient", [order(1, recipient="someone@example.com")], [entry(1)],
     [(Kind.MISMATCH, "r1", "o1")]),
    ("cancelled at the vendor, fulfilled in the ledger",
     [order(1, status=OrderStatus.CANCELLED, raw_status="CANCELED")], [entry(1)],
     [(Kind.CANCELLED, "r1", "o1")]),
    ("failed at the vendor, ordered in the ledger",
     [order(1, status=OrderStatus.FAILED, raw_status="FAILED")],
     [entry(1, state=State.ORDERED)], [(Kind.CANCELLED, "r1", "o1")]),
]


@pytest.mark.parametrize(("orders", "entries", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_kind_on_its_own(orders: list[VendorOrder], entries: list[LedgerEntry],
                              expected: list[tuple[Kind, str | None, str | None]]) -> None:
    audit = run(orders, entries)
    assert kinds(audit) == expected
    assert audit.balanced is (not expected)
    assert all(d.action for d in audit.discrepancies)


def test_a_clean_period_counts_every_order_as_matched_with_its_spend() -> None:
    audit = run([order(1), order(2, amount_minor=1000, status=OrderStatus.PENDING,
                                 raw_status="PENDING_APPROVAL"),
                 order(3, currency="EUR", amount_minor=500)],
                [entry(1), entry(2, amount=Decimal("10.00"), state=State.PENDING),
                 entry(3, currency="EUR", amount=Decimal("5"))])
    assert audit.balanced
    assert (audit.orders, audit.matched) == (3, 3)
    assert audit.by_status == {"complete": 2, "pending": 1}
    assert audit.spend == {"EUR": 500, "USD": 3500}


def test_a_field_the_vendor_does_not_give_is_not_compared() -> None:
    bare = order(1, amount_minor=None, currency=None, product=None, recipient=None)
    assert run([bare], [entry(1)]).balanced


def test_recipient_and_product_compare_without_case_and_spaces() -> None:
    assert run([order(1, recipient=" A1@Example.COM", product="amzn")], [entry(1)]).balanced


def test_an_order_owned_by_its_order_id_when_the_vendor_keeps_no_key() -> None:
    audit = run([order(1, external_id=None)], [entry(1)])
    assert audit.balanced and audit.matched == 1


def test_a_ledger_order_id_the_vendor_lists_as_the_orders_reference_is_that_order() -> None:
    # Giftbit: the ledger keeps the campaign id (the id we gave it, our key made to fit), the
    # list names each gift by its uuid and carries the campaign id as its reference.
    gift = order(1, order_id="gift-uuid-1", external_id="campaign-1")
    audit = run([gift], [entry(1, idempotency_key="campaign-1", vendor_order_id="campaign-1")])
    assert audit.balanced and audit.matched == 1
    other = run([gift], [entry(1, idempotency_key="campaign-1", vendor_order_id="campaign-2")])
    assert kinds(other) == [(Kind.MISMATCH, "r1", "gift-uuid-1")]


def test_a_row_still_being_worked_on_owns_its_order_without_discrepancy() -> None:
    for state in (State.NEW, State.WAITING, State.ORDERING, State.HELD):
        audit = run([order(1)], [entry(1, state=state, vendor_order_id=None)])
        assert audit.balanced, state


def test_orders_that_are_not_ours_or_spent_nothing_are_counted_not_judged() -> None:
    foreign = order(7, external_id="their-own-ref-7")
    cancelled_stray = order(8, status=OrderStatus.CANCELLED, raw_status="CANCELED")
    audit = run([foreign, cancelled_stray], [])
    assert audit.balanced
    assert audit.orders == 2 and audit.not_ours == 1 and audit.matched == 0


def test_orders_and_rows_in_the_margins_match_but_are_not_reported() -> None:
    # The row was ordered just before the period ends; its order is created just after.
    late = order(1, created_at=UNTIL + timedelta(minutes=5))
    audit = run([late, order(9, created_at=SINCE - timedelta(hours=1))],
                [entry(1, ordered_at=UNTIL - timedelta(minutes=1))])
    assert audit.balanced and audit.orders == 0


def test_a_retried_order_after_a_cancelled_one_is_not_a_discrepancy() -> None:
    first = order(1, order_id="o1-first", status=OrderStatus.CANCELLED, raw_status="CANCELED",
                  external_id=key(100))  # an earlier generation's key
    audit = run([first, order(1)], [entry(1)])
    assert audit.balanced


def test_the_totals_add_up_over_vendors() -> None:
    a = run([order(1), order(9)], [entry(1)])
    b = audit_vendor("tango", [], [], since=SINCE, until=UNTIL)
    result = AuditResult(since=SINCE, until=UNTIL, vendors=(a, b))
    assert not result.balanced
    assert result.orders == 2 and result.matched == 1
    assert result.count(Kind.ORPHAN) == 1 and result.count(Kind.MISSING) == 0
    assert result.spend == {"USD": 5000}


def test_our_keys_are_recognised_by_their_shape() -> None:
    assert is_our_key(key(1))
    assert not is_our_key("rp-not-hex") and not is_our_key(None)
    assert not is_our_key(key(1).upper())
