"""The books audit in the ledger (poller.ledger.audit), on SQLite and PostgreSQL: a run and
its discrepancies are stored and read back as they were, and the rows that may own a
vendor's orders are found by period, key and order id."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from poller.core.audit import AuditResult, Discrepancy, Kind, VendorAudit
from poller.domain.model import Contact, Redemption
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.audit import last_run, rows_for_audit, save_run
from poller.ledger.sql import SqlLedger
from poller.ports import Changes
from tests.ledger.conftest import _empty_pg

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlLedger]:
    if request.param == "sqlite":
        ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        url: str = request.getfixturevalue("pg_url")
        _empty_pg(url)
        ledger = open_ledger(url, process_clock=True)
    try:
        yield ledger
    finally:
        ledger.close()


def _result(*found: Discrepancy) -> AuditResult:
    return AuditResult(since=T0, until=T0 + timedelta(days=7), vendors=(
        VendorAudit(vendor="tremendous", orders=3, matched=2, by_status={"complete": 3},
                    spend={"USD": 7500}, discrepancies=found),
        VendorAudit(vendor="manual", not_auditable="nothing to read"),
    ))


def test_a_run_and_its_discrepancies_are_stored_and_read_back(sql: SqlLedger) -> None:
    assert last_run(sql.engine) is None
    orphan = Discrepancy(vendor="tremendous", kind=Kind.ORPHAN, redemption_id=None,
                         source=None, order_id="o9", detail="EXECUTED under key rp…")
    missing = Discrepancy(vendor="tremendous", kind=Kind.MISSING, redemption_id="r2",
                          source="influitive", order_id="o2", detail="fulfilled; none there")
    save_run(sql.engine, _result(), started_at=T0, finished_at=T0 + timedelta(seconds=3),
             actor="daemon")
    run_id = save_run(sql.engine, _result(orphan, missing), started_at=T0 + timedelta(days=1),
                      finished_at=T0 + timedelta(days=1, seconds=4), actor="ops")
    stored = last_run(sql.engine)
    assert stored is not None and stored.id == run_id
    assert (stored.actor, stored.balanced, stored.orders, stored.matched) == ("ops", False, 3, 2)
    assert stored.since == T0 and stored.until == T0 + timedelta(days=7)
    assert stored.finished_at == T0 + timedelta(days=1, seconds=4)
    assert stored.discrepancies == (orphan, missing)
    assert stored.discrepancies[0].action.startswith("no fulfilled redemption")
    assert stored.vendors["tremendous"]["spend_minor_units"] == {"USD": 7500}
    assert stored.vendors["manual"]["not_auditable"] == "nothing to read"


def _ordered(sql: SqlLedger, rid: str, *, vendor: str, key: str, order_id: str,
             at: datetime) -> None:
    sql.record(sql.start_poll(at), [Redemption(id=rid, contact=Contact(email=f"{rid}@x.org"))],
               at)
    entry = sql.get("influitive", rid)
    assert entry is not None
    sql.claim(entry.pk, "w", at, 60)
    sql.transition(entry.pk, "w", State.ORDERING, "order", at, Changes(
        idempotency_key=key, vendor=vendor, amount=Decimal("5.00"), currency="USD",
        ordered_at=at))
    sql.transition(entry.pk, "w", State.ORDERED, "placed", at,
                   Changes(vendor_order_id=order_id), release=True)


def test_rows_are_found_by_period_by_key_and_by_order_id(sql: SqlLedger) -> None:
    _ordered(sql, "in", vendor="tremendous", key="rp1", order_id="o1", at=T0 + timedelta(days=1))
    _ordered(sql, "before", vendor="tremendous", key="rp2", order_id="o2",
             at=T0 - timedelta(days=3))
    _ordered(sql, "other", vendor="tango", key="rp3", order_id="o3", at=T0 + timedelta(days=1))
    _ordered(sql, "by-id", vendor="tremendous", key="rp4", order_id="o4",
             at=T0 - timedelta(days=9))
    until = T0 + timedelta(days=7)
    ids = lambda rows: sorted(r.redemption_id for r in rows)  # noqa: E731
    assert ids(rows_for_audit(sql.engine, "tremendous", since=T0, until=until)) == ["in"]
    assert ids(rows_for_audit(sql.engine, "tremendous", since=T0, until=until,
                              keys={"rp2", "rp3"}, order_ids={"o4", "o3"})) == [
        "before", "by-id", "in", "other"]
