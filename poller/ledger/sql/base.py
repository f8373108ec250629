"""What every part of the SQL ledger shares: the engine, the clock it goes by (the
database server's or the caller's), the statements built once, and reading rows into
entries."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from poller.domain.model import LedgerEntry
from poller.ledger import check_aware, entry_from_columns
from poller.ledger.sql.engine import safe_url
from poller.ledger.sql.transactions import read_transaction
from poller.ledger.tables import CleanText, UTCDateTime
from poller.ledger.tables import redemptions as red_t

SERVER_NOW: ColumnElement[datetime] = func.statement_timestamp(type_=UTCDateTime())
"""PostgreSQL's time for one statement: when the server started it (one value however many
rows the statement reads or writes; after any lock an earlier statement of its transaction
waited for)."""


def row_entry(row: Row[Any]) -> LedgerEntry:
    return entry_from_columns(row._mapping)


def on_ledger_clock(value: Any, now: Any, ledger_now: Any) -> Any:  # datetimes or SQL
    """``value``, a time the caller gave relative to its ``now``, on the ledger's clock
    (``ledger_now``): the same distance from it."""
    return value + (ledger_now - now)


def lease_free(now: Any) -> Any:
    return or_(
        red_t.c.lease_owner.is_(None), red_t.c.lease_until.is_(None), red_t.c.lease_until < now
    )


class SqlLedgerBase:
    """The state every room of ``SqlLedger`` works with: the engine, the clock, the
    statements built once."""

    def __init__(self, engine: Engine, *, process_clock: bool = False) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        # The database server's clock, shared by every worker (see ``poller.ledger.sql``).
        self._db_clock = self._pg and not process_clock
        # The dialect's own insert (ON CONFLICT), imported here: a SQLite worker never
        # loads the PostgreSQL dialect, a tenth of its start.
        self._insert: Any
        if engine.dialect.name == "postgresql":
            # On demand: only a PostgreSQL ledger loads its dialect.
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            self._insert = pg_insert
        else:
            # On demand: only a SQLite ledger loads its dialect.
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            self._insert = sqlite_insert
        # The statements of every step, built once: the guarded moves per set of changed
        # columns (a handful), the rest here.
        self._moves: dict[tuple[frozenset[str], bool, bool], Any] = {}
        now = self._now_sql()
        owner = bindparam("w_owner", type_=CleanText())
        until = self._given("v_until")
        this = red_t.c.pk == bindparam("w_pk")
        self._claim_stmt = (
            update(red_t)
            .where(this, or_(lease_free(now), red_t.c.lease_owner == owner))
            .values(lease_owner=owner, lease_until=until,
                    unfinished_steps=red_t.c.unfinished_steps + 1)
            .returning(*red_t.c)
        )
        self._renew_stmt = (
            update(red_t)
            .where(this, red_t.c.lease_owner == owner, red_t.c.lease_until >= now)
            .values(lease_until=until)
        )
        self._release_stmt = (
            update(red_t)
            .where(this, red_t.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None, unfinished_steps=0)
        )
        self._lease_stmt = select(red_t.c.state, red_t.c.lease_owner, red_t.c.lease_until,
                                  now.label("ledger_now")).where(this)

    def _now_sql(self) -> ColumnElement[datetime]:
        """"Now" in a statement: the server's time, or the caller's ``now`` (``w_now``)."""
        return SERVER_NOW if self._db_clock else bindparam("w_now", type_=UTCDateTime())

    def _given(self, name: str) -> ColumnElement[datetime]:
        """The time the caller gave as the parameter ``name``, on the ledger's clock (the
        same distance from the statement's "now" as from the caller's ``w_now``)."""
        value: ColumnElement[datetime] = bindparam(name, type_=UTCDateTime())
        if not self._db_clock:
            return value
        moved: ColumnElement[datetime] = on_ledger_clock(
            value, bindparam("w_now", type_=UTCDateTime()), SERVER_NOW)
        return moved

    def _ledger_now(self, conn: Connection, now: datetime) -> datetime:
        """The time one decision made on ``conn`` goes by: read from the server once, or
        the caller's ``now``."""
        if not self._db_clock:
            return now
        found = conn.execute(select(SERVER_NOW)).scalar_one()
        assert isinstance(found, datetime)
        return found

    def now(self, local: datetime) -> datetime:
        """The ledger's time: the database server's on PostgreSQL (``local``, the caller's
        clock, on SQLite). The times the ledger stores are on this clock, so a worker
        compares them with this (``Ledger.now``)."""
        local = check_aware(local)
        if not self._db_clock:
            return local
        with read_transaction(self._engine) as conn:
            return self._ledger_now(conn, local)

    @property
    def engine(self) -> Engine:
        return self._engine

    def __repr__(self) -> str:
        return f"SqlLedger({safe_url(self._engine.url)})"

    def _select_entries(
        self, stmt: Select[Any], params: Mapping[str, Any] | None = None
    ) -> builtins.list[LedgerEntry]:
        with read_transaction(self._engine) as conn:
            return [row_entry(row) for row in conn.execute(stmt, params)]

    def get_pk(self, pk: int) -> LedgerEntry | None:
        found = self._select_entries(select(red_t).where(red_t.c.pk == pk))
        return found[0] if found else None

    def ping(self) -> None:
        """SELECT 1; LedgerUnavailable if the database cannot answer."""
        with read_transaction(self._engine) as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()

    def close(self) -> None:
        self._engine.dispose()

