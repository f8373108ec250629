"""Balancing the books: pure matching of one vendor's own order list against the ledger
rows that may own its orders (docs/audit.md: how an order is matched, the discrepancies and
what to do about each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from poller.domain.keys import is_our_key
from poller.domain.model import LedgerEntry
from poller.domain.money import CurrencyProblem, minor_units
from poller.domain.orders import OrderStatus, VendorOrder
from poller.domain.states import State

# Both sides are read this much wider than the period, to match across its edges.
MARGIN = timedelta(days=1)
# Orders that spent (or may have spent) money, and those whose amount counts as spend.
LIVE = frozenset({OrderStatus.COMPLETE, OrderStatus.PENDING, OrderStatus.UNKNOWN})
SPENT = frozenset({OrderStatus.COMPLETE, OrderStatus.PENDING})
# Rows the vendor confirmed an order for; rows finished without our fulfilment.
CONFIRMED = frozenset({State.PENDING, State.ORDERED, State.FULFILLED, State.PERHAPS_FULFILLED})
NOT_FULFILLED = frozenset({State.REFUSING, State.REFUSED, State.PERHAPS_REFUSED,
                           State.CLOSED_UPSTREAM})


class Kind(StrEnum):
    ORPHAN = "orphan"
    DUPLICATE = "duplicate"
    MISSING = "missing"
    MISMATCH = "mismatch"
    CANCELLED = "cancelled"


KINDS: tuple[Kind, ...] = tuple(Kind)

ACTIONS: Mapping[Kind, str] = {
    Kind.ORPHAN: "no fulfilled redemption owns this order: find who placed it and cancel it "
                 "at the vendor if it is not owed",
    Kind.DUPLICATE: "the advocate may be paid twice: cancel the extra order at the vendor "
                    "(keep the one the ledger names)",
    Kind.MISSING: "the ledger says the vendor confirmed an order it does not list: ask the "
                  "vendor; if there is none, send the reward again",
    Kind.MISMATCH: "compare the order with the redemption; a wrong recipient or amount needs "
                   "the order cancelled and placed again",
    Kind.CANCELLED: "the advocate got nothing: send the reward again (a new order) or tell "
                    "the advocate",
}


@dataclass(frozen=True, kw_only=True)
class Discrepancy:
    """``redemption_id`` None: no row owns the order; ``order_id`` None: the order is
    missing. ``detail`` never holds a secret: ids, amounts, states, field names."""

    vendor: str
    kind: Kind
    redemption_id: str | None
    source: str | None
    order_id: str | None
    detail: str

    @property
    def action(self) -> str:
        return ACTIONS[self.kind]


@dataclass(frozen=True, kw_only=True)
class VendorAudit:
    """One vendor's side of the books for the period: ``orders`` created in it, of which
    ``matched`` without discrepancy; ``spend`` in minor units per currency. ``unreadable``:
    why its list could not be read (not balanced); ``not_auditable``: why it has none."""

    vendor: str
    orders: int = 0
    matched: int = 0
    not_ours: int = 0
    by_status: Mapping[str, int] = field(default_factory=dict)
    spend: Mapping[str, int] = field(default_factory=dict)
    discrepancies: tuple[Discrepancy, ...] = ()
    unreadable: str | None = None
    not_auditable: str | None = None

    @property
    def balanced(self) -> bool:
        return not self.discrepancies and self.unreadable is None

    def count(self, kind: Kind) -> int:
        return sum(1 for d in self.discrepancies if d.kind is kind)


@dataclass(frozen=True, kw_only=True)
class AuditResult:
    since: datetime
    until: datetime
    vendors: tuple[VendorAudit, ...]

    @property
    def balanced(self) -> bool:
        return all(v.balanced for v in self.vendors)

    @property
    def discrepancies(self) -> tuple[Discrepancy, ...]:
        return tuple(d for v in self.vendors for d in v.discrepancies)

    @property
    def orders(self) -> int:
        return sum(v.orders for v in self.vendors)

    @property
    def matched(self) -> int:
        return sum(v.matched for v in self.vendors)

    @property
    def by_status(self) -> dict[str, int]:
        return _added(v.by_status for v in self.vendors)

    @property
    def spend(self) -> dict[str, int]:
        return _added(v.spend for v in self.vendors)

    def count(self, kind: Kind) -> int:
        return sum(v.count(kind) for v in self.vendors)


def _added(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    return dict(sorted(sum((Counter(each) for each in counts), Counter[str]()).items()))


def _minor(amount: Decimal, currency: str) -> int | None:
    try:
        scaled = amount.scaleb(minor_units(currency))
    except CurrencyProblem:
        return None
    return int(scaled) if scaled == scaled.to_integral_value() else None


def _same_text(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def differences(order: VendorOrder, entry: LedgerEntry) -> list[str]:
    """How ``order`` and its row differ; a field either side does not give is not compared."""
    found: list[str] = []
    if order.currency is not None and entry.currency is not None \
            and not _same_text(order.currency, entry.currency):
        found.append(f"currency {order.currency} at the vendor, {entry.currency} in the ledger")
    elif order.amount_minor is not None and entry.amount is not None and entry.currency:
        ledger_minor = _minor(entry.amount, entry.currency.strip().upper())
        if ledger_minor != order.amount_minor:
            found.append(f"amount {order.amount_minor} (minor units) at the vendor, "
                         f"{entry.amount} {entry.currency} in the ledger")
    if order.product is not None and entry.product is not None \
            and not _same_text(order.product, entry.product):
        found.append(f"product {order.product} at the vendor, {entry.product} in the ledger")
    if order.recipient is not None and entry.email is not None \
            and not _same_text(order.recipient, entry.email):
        found.append("recipient differs from the redemption's email")
    if entry.vendor_order_id is not None and not _names(entry.vendor_order_id, order):
        found.append(f"the ledger names order {entry.vendor_order_id}")
    return found


def _names(vendor_order_id: str, order: VendorOrder) -> bool:
    """Its own id, or the id we gave it (Giftbit: the ledger keeps the campaign id, each
    gift of the campaign has its own ``uuid``)."""
    return vendor_order_id in (order.order_id, order.external_id)


def audit_vendor(
    vendor: str, orders: Iterable[VendorOrder], entries: Iterable[LedgerEntry], *,
    since: datetime, until: datetime, vendor_key: Callable[[str], str] = lambda key: key,
    is_ours: Callable[[str | None], bool] = is_our_key,
) -> VendorAudit:
    """One vendor's books for ``[since, until)``, both sides read ``MARGIN`` wider:
    ``entries`` are every row whose key or order id an order names, and this vendor's rows
    ordered in that time. ``vendor_key`` and ``is_ours`` are the ``OrderBook``'s."""
    rows = list(entries)
    by_key = {vendor_key(e.idempotency_key): e for e in rows if e.idempotency_key}
    by_order = {e.vendor_order_id: e for e in rows if e.vendor_order_id and e.vendor == vendor}

    def in_period(when: datetime | None) -> bool:
        return when is not None and since <= when < until

    owned: dict[int, list[VendorOrder]] = {}
    found: list[Discrepancy] = []
    by_status: Counter[str] = Counter()
    spend: Counter[str] = Counter()
    counted = not_ours = 0
    for order in orders:
        # Matched by our key first, else by the order id the ledger saved.
        owner = by_key.get(order.external_id or "") or by_order.get(order.order_id)
        elsewhere = owner is not None and owner.vendor not in (None, vendor)
        if owner is not None and not elsewhere:
            owned.setdefault(owner.pk, []).append(order)
        if not in_period(order.created_at):
            continue
        counted += 1
        by_status[order.status.value] += 1
        if order.status in SPENT and order.amount_minor is not None and order.currency:
            spend[order.currency.strip().upper()] += order.amount_minor
        live = order.status in LIVE
        if owner is None:
            if live and is_ours(order.external_id):
                found.append(_found(vendor, Kind.ORPHAN, None, order.order_id, (
                    f"{order.raw_status} at the vendor under key {order.external_id}, "
                    "which no redemption in the ledger has")))
            elif not is_ours(order.external_id):
                not_ours += 1
            continue
        if elsewhere and live:
            found.append(_found(vendor, Kind.ORPHAN, owner, order.order_id, (
                f"{order.raw_status} at {vendor} under the redemption's key, but the "
                f"ledger has it ordered from {owner.vendor}")))
        elif owner.state in NOT_FULFILLED and live:
            found.append(_found(vendor, Kind.ORPHAN, owner, order.order_id, (
                f"{order.raw_status} at the vendor, but the redemption is "
                f"{owner.state.value} in the ledger")))
    for entry in rows:
        if entry.state not in CONFIRMED or entry.vendor != vendor:
            continue
        theirs = owned.get(entry.pk, [])
        if not theirs:
            if in_period(entry.ordered_at):
                found.append(_found(vendor, Kind.MISSING, entry, entry.vendor_order_id, (
                    f"{entry.state.value} in the ledger with order "
                    f"{entry.vendor_order_id or '(no id)'}; the vendor lists none")))
            continue
        if not any(in_period(o.created_at) for o in theirs):
            continue  # the neighbouring period's audit reports on it
        found.extend(_judge(vendor, entry, theirs))
    flagged = {d.order_id for d in found if d.order_id is not None}
    matched = sum(1 for theirs in owned.values() for order in theirs
                  if in_period(order.created_at) and order.order_id not in flagged)
    return VendorAudit(
        vendor=vendor, orders=counted, matched=matched, not_ours=not_ours,
        by_status=dict(sorted(by_status.items())), spend=dict(sorted(spend.items())),
        discrepancies=tuple(found))


def _found(vendor: str, kind: Kind, entry: LedgerEntry | None, order_id: str | None,
           detail: str) -> Discrepancy:
    return Discrepancy(vendor=vendor, kind=kind, order_id=order_id, detail=detail,
                       redemption_id=entry.redemption_id if entry else None,
                       source=entry.source if entry else None)


def _judge(vendor: str, entry: LedgerEntry, orders: Sequence[VendorOrder]) -> list[Discrepancy]:
    def make(kind: Kind, order_id: str | None, detail: str) -> Discrepancy:
        return _found(vendor, kind, entry, order_id, detail)

    live = [o for o in orders if o.status in LIVE]
    if not live:
        last = orders[-1]
        return [make(Kind.CANCELLED, last.order_id,
                     f"{last.raw_status} at the vendor, {entry.state.value} in the ledger")]
    named = [o for o in live
             if entry.vendor_order_id is not None and _names(entry.vendor_order_id, o)]
    kept = named[0] if named else live[0]
    found = [make(Kind.DUPLICATE, o.order_id,
                  f"a second live order for the redemption ({o.raw_status}); the ledger's is "
                  f"{entry.vendor_order_id or kept.order_id}")
             for o in live if o is not kept]
    diff = differences(kept, entry)
    if diff:
        found.append(make(Kind.MISMATCH, kept.order_id, "; ".join(diff)))
    return found
