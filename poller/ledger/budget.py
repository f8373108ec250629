"""The request budget's ``RequestLog`` in the ledger: one ``request_log`` row per request
sent, shared by every worker process on the same database (poller.core.budget).

Taking a unit is one write transaction that reads the window and inserts a row, so it must
be serialised between processes or two could both take the last unit: SQLite's
``BEGIN IMMEDIATE`` (``write_transaction``) admits one writer at a time; on PostgreSQL a
transaction-scoped advisory lock per scope does the same (READ COMMITTED alone would let
both count 179 and both insert). Rows older than the window are pruned in the same
transaction, so the table stays the size of one window.

On PostgreSQL the workers sharing the budget usually run on several hosts, whose clocks
differ: the window is counted and the units stamped by the database server's clock, read
once the lock is ours, never by the caller's (a host 10 minutes slow would otherwise stamp
its units outside everyone else's window, and prune theirs from its own). SQLite is one
file on one host: the caller's clock is the time there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Interval, delete, func, insert, literal, select, text
from sqlalchemy.engine import Engine

from poller.core.budget import BudgetLimit, Grant
from poller.ledger.sql import SERVER_NOW, read_transaction, write_transaction
from poller.ledger.tables import request_log

_PG_BUDGET_CLASS = 0x7270
"""First key of the two-key advisory lock (``pg_advisory_xact_lock(int, int)``); the second
is a hash of the scope. PostgreSQL keeps two-key and one-key locks apart, so this never
meets the ledger's own single-key locks."""


class SqlRequestLog:
    """``RequestLog`` over the ledger's ``request_log`` table. ``process_clock``
    (PostgreSQL): go by the ``clock`` each call is given, as on SQLite, instead of the
    server's (a single process that moves time by hand, such as a test)."""

    def __init__(self, engine: Engine, *, process_clock: bool = False) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._db_clock = self._pg and not process_clock

    def try_take(self, limit: BudgetLimit, clock: Callable[[], datetime]) -> Grant:
        window = timedelta(seconds=limit.window_seconds)
        in_scope = request_log.c.scope == limit.scope
        with write_transaction(self._engine) as conn:
            if self._pg:
                conn.execute(text("SELECT pg_advisory_xact_lock(:cls, hashtext(:scope))"),
                             {"cls": _PG_BUDGET_CLASS, "scope": limit.scope})
            # The clock is read only once the lock is ours (see RequestLog.try_take): the
            # server's in the statement that counts the window, or the caller's.
            if self._db_clock:
                count, oldest, now = conn.execute(
                    select(func.count(), func.min(request_log.c.at), SERVER_NOW)
                    .where(in_scope,
                           request_log.c.at > SERVER_NOW - literal(window, Interval()))
                ).one()
            else:
                now = clock()
                count, oldest = conn.execute(
                    select(func.count(), func.min(request_log.c.at))
                    .where(in_scope, request_log.c.at > now - window)
                ).one()
            start = now - window
            conn.execute(delete(request_log).where(in_scope, request_log.c.at <= start))
            if count < limit.max_requests:
                conn.execute(insert(request_log).values(scope=limit.scope, at=now))
                return Grant(True, at=now)
        # The stored time comes back through UTCDateTime (aware, UTC).
        assert isinstance(oldest, datetime)
        free_in: float = (oldest - start).total_seconds()
        return Grant(False, max(0.0, free_in))

    def taken(self, limit: BudgetLimit, now: datetime) -> int:
        """Units in the window ending at ``now`` (on PostgreSQL: now by the server's clock,
        whatever ``now`` says)."""
        with read_transaction(self._engine) as conn:
            if self._db_clock:
                now = conn.execute(select(SERVER_NOW)).scalar_one()
            start = now - timedelta(seconds=limit.window_seconds)
            count = conn.execute(
                select(func.count()).select_from(request_log)
                .where(request_log.c.scope == limit.scope, request_log.c.at > start)
            ).scalar_one()
        return int(count)
