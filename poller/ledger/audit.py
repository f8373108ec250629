"""The books audit in the ledger: the rows that may own a vendor's orders, and the runs
kept (one ``audit_runs`` row each, one ``audit_discrepancies`` row per discrepancy)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, insert, or_, select
from sqlalchemy.engine import Engine

from poller.core.audit import AuditResult, Discrepancy, Kind
from poller.domain.model import LedgerEntry
from poller.ledger.sql import chunks, read_transaction, row_entry, write_transaction
from poller.ledger.tables import audit_discrepancies, audit_runs
from poller.ledger.tables import redemptions as red_t

# The columns of ``audit_discrepancies`` that are a ``Discrepancy``'s fields as they are.
_DISCREPANCY = ("vendor", "source", "redemption_id", "order_id", "detail")

@dataclass(frozen=True, kw_only=True)
class StoredRun:
    id: int
    started_at: datetime
    finished_at: datetime
    since: datetime
    until: datetime
    actor: str
    balanced: bool
    orders: int
    matched: int
    discrepancies: tuple[Discrepancy, ...]
    vendors: dict[str, dict[str, object]]


def vendor_summary(result: AuditResult) -> dict[str, dict[str, object]]:
    return {
        v.vendor: {
            "orders": v.orders, "matched": v.matched, "not_ours": v.not_ours,
            "by_status": dict(v.by_status), "spend_minor_units": dict(v.spend),
            "discrepancies": len(v.discrepancies), "unreadable": v.unreadable,
            "not_auditable": v.not_auditable,
        }
        for v in result.vendors
    }


def save_run(engine: Engine, result: AuditResult, *, started_at: datetime,
             finished_at: datetime, actor: str) -> int:
    with write_transaction(engine) as conn:
        run_id = conn.execute(insert(audit_runs).values(
            started_at=started_at, finished_at=finished_at, since=result.since,
            until=result.until, actor=actor, balanced=result.balanced, orders=result.orders,
            matched=result.matched, discrepancies=len(result.discrepancies),
            vendors=json.dumps(vendor_summary(result), sort_keys=True),
        ).returning(audit_runs.c.id)).scalar_one()
        rows = [{"run_id": run_id, "kind": d.kind.value, "action": d.action,
                 **{name: getattr(d, name) for name in _DISCREPANCY}}
                for d in result.discrepancies]
        if rows:
            conn.execute(insert(audit_discrepancies), rows)
    return int(run_id)


def last_run(engine: Engine) -> StoredRun | None:
    """The newest run stored, with its discrepancies; None before the first."""
    with read_transaction(engine) as conn:
        run = conn.execute(
            select(audit_runs).order_by(audit_runs.c.id.desc()).limit(1)).first()
        if run is None:
            return None
        found = conn.execute(
            select(audit_discrepancies).where(audit_discrepancies.c.run_id == run.id)
            .order_by(audit_discrepancies.c.id)).all()
    return StoredRun(**{
        **run._mapping, "vendors": json.loads(run.vendors),
        "discrepancies": tuple(
            Discrepancy(kind=Kind(d.kind), **{name: d._mapping[name] for name in _DISCREPANCY})
            for d in found),
    })


def rows_for_audit(
    engine: Engine, vendor: str, *, since: datetime, until: datetime,
    keys: Collection[str] = (), order_ids: Collection[str] = (),
) -> list[LedgerEntry]:
    """The ledger rows that may own ``vendor``'s orders: the vendor's rows ordered in
    ``[since, until)``, and every row whose idempotency key is in ``keys`` or whose order id
    (at this vendor) is in ``order_ids``; each once."""
    found: dict[int, LedgerEntry] = {}
    with read_transaction(engine) as conn:
        def add(where: ColumnElement[bool]) -> None:
            for row in conn.execute(select(red_t).where(where)):
                entry = row_entry(row)
                found[entry.pk] = entry

        add((red_t.c.vendor == vendor) & (red_t.c.ordered_at >= since)
            & (red_t.c.ordered_at < until))
        for chunk in chunks(sorted(keys)):
            add(red_t.c.idempotency_key.in_(chunk))
        for chunk in chunks(sorted(order_ids)):
            add(or_(red_t.c.vendor == vendor, red_t.c.vendor.is_(None))
                & red_t.c.vendor_order_id.in_(chunk))
    return [found[pk] for pk in sorted(found)]
