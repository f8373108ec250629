"""Guarded moves run on the driver's cursor (``poller.ledger.prepared``): committed at once,
the same rows as through ``Connection.execute``, SQLAlchemy's errors with parameters hidden,
a dropped connection replaced, observers told. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, exc, select

from poller.core.ports import Changes
from poller.core.states import State
from poller.ledger import LedgerUnavailable, open_ledger
from poller.ledger import prepared as prepared_mod
from poller.ledger.prepared import Prepared
from poller.ledger.sql import SqlLedger
from poller.ledger.tables import redemptions as red_t
from tests.ledger.conftest import _empty_pg
from tests.ledger.test_ledger_contract import T0, recorded


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sql_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlLedger]:
    if request.param == "sqlite":
        ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        url: str = request.getfixturevalue("pg_url")
        _empty_pg(url)
        ledger = open_ledger(url)
    assert isinstance(ledger, SqlLedger)
    try:
        yield ledger
    finally:
        ledger.close()


def _other_sees(ledger: SqlLedger, pk: int) -> str:
    """The row's state as a second connection reads it (what is committed)."""
    with ledger.engine.connect() as conn:
        return str(conn.execute(select(red_t.c.state).where(red_t.c.pk == pk)).scalar_one())


def _idle(driver: Any) -> bool:
    status = getattr(getattr(driver, "info", None), "transaction_status", None)
    if status is not None:  # psycopg: IDLE is 0
        return int(status) == 0
    return not driver.in_transaction  # sqlite3


def test_a_move_on_a_pinned_connection_is_committed_as_it_returns(sql_ledger: SqlLedger) -> None:
    (entry,) = recorded(sql_ledger, "1")
    with sql_ledger.pinned():
        moved = sql_ledger.claim_transition(
            entry.pk, "w1", State.ORDERING, "ordering", T0, 60,
            Changes(idempotency_key="rpk1", amount=Decimal("25.00")), expect=State.NEW)
        assert moved is not None
        assert _other_sees(sql_ledger, entry.pk) == "ordering"
        assert moved == sql_ledger.get_pk(entry.pk)  # what a plain read gives
        writing = sql_ledger._shared or sql_ledger._thread.conn  # SQLite's one writer, or pinned
        driver = writing.connection.driver_connection
        assert _idle(driver), "a move must not leave a transaction open"
        sql_ledger.transition(entry.pk, "w1", State.ORDERED, "placed", T0,
                              expect=State.ORDERING)
        assert _other_sees(sql_ledger, entry.pk) == "ordered"


def test_a_prepared_row_equals_what_execute_returns(sql_ledger: SqlLedger) -> None:
    (entry,) = recorded(sql_ledger, "1")
    stmt = select(red_t).where(red_t.c.pk == bindparam("w_pk"))
    prepared = Prepared(stmt, sql_ledger.engine.dialect, list(red_t.c))
    with sql_ledger.engine.connect() as conn:
        through_execute = prepared.first_in(conn, {"w_pk": entry.pk})
        on_the_cursor = prepared.first(conn, {"w_pk": entry.pk})
        assert prepared.first(conn, {"w_pk": entry.pk + 1000}) is None
    assert on_the_cursor == through_execute
    assert on_the_cursor is not None and on_the_cursor["state"] is State.NEW
    assert on_the_cursor["created_at"].tzinfo is not None  # result processors applied


def test_a_driver_error_is_sqlalchemys_with_the_parameters_hidden(sql_ledger: SqlLedger) -> None:
    table = Table("redemptions", MetaData(), Column("pk", Integer), Column("email", Text))
    stmt = table.insert().values(pk=bindparam("pk"), email=bindparam("email"))
    prepared = Prepared(stmt, sql_ledger.engine.dialect, [])
    (entry,) = recorded(sql_ledger, "1")
    with sql_ledger.engine.connect() as conn, pytest.raises(exc.IntegrityError) as raised:
        prepared.first(conn, {"pk": entry.pk, "email": "secret-advocate@example.com"})
    # The parameters are not appended (the server's own message may still quote a row).
    assert raised.value.hide_parameters and "[parameters:" not in str(raised.value)
    assert not raised.value.connection_invalidated


def test_the_ledgers_engine_never_quotes_parameters_in_its_errors(sql_ledger: SqlLedger) -> None:
    table = Table("redemptions", MetaData(), Column("pk", Integer), Column("email", Text))
    (entry,) = recorded(sql_ledger, "1")
    with sql_ledger.engine.connect() as conn, pytest.raises(exc.IntegrityError) as raised:
        conn.execute(table.insert().values(pk=entry.pk, email="advocate@example.com"))
    assert raised.value.hide_parameters and "[parameters:" not in str(raised.value)


@pytest.mark.postgres
def test_a_dropped_connection_is_invalidated_and_the_next_move_gets_a_new_one(
    pg_url: str,
) -> None:
    _empty_pg(pg_url)
    ledger = open_ledger(pg_url)
    assert isinstance(ledger, SqlLedger)
    try:
        a, b = recorded(ledger, "1", "2")
        with ledger.pinned():
            conn = ledger._thread.conn
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            conn.rollback()
            with ledger.engine.connect() as admin:
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(backend)})")
                admin.commit()
            with pytest.raises(LedgerUnavailable):
                ledger.claim_transition(a.pk, "w1", State.ORDERING, "x", T0, 60,
                                        expect=State.NEW)
        # The broken connection went back invalidated; the pool opens a new one.
        with ledger.pinned():
            assert ledger.claim_transition(b.pk, "w1", State.ORDERING, "x", T0, 60,
                                           expect=State.NEW) is not None
        assert _other_sees(ledger, a.pk) == "new"
    finally:
        ledger.close()


def test_observers_see_each_prepared_statement(sql_ledger: SqlLedger) -> None:
    (entry,) = recorded(sql_ledger, "1")
    seen: list[str] = []

    def observe(conn: Any, cursor: Any, statement: str, parameters: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    prepared_mod.STATEMENT_OBSERVERS.append(observe)
    try:
        with sql_ledger.pinned():
            sql_ledger.claim_transition(entry.pk, "w1", State.ORDERING, "x", T0, 60,
                                        expect=State.NEW)
    finally:
        prepared_mod.STATEMENT_OBSERVERS.remove(observe)
    assert seen == (["WITH"] if sql_ledger.engine.dialect.name == "postgresql" else ["UPDATE"])


def test_a_statement_with_an_expanding_list_is_refused(sql_ledger: SqlLedger) -> None:
    stmt = select(red_t).where(red_t.c.pk.in_(bindparam("pks", expanding=True)))
    with pytest.raises(ValueError, match="cannot be prepared"):
        Prepared(stmt, sql_ledger.engine.dialect, list(red_t.c))
