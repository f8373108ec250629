"""The request budget's ``RequestLog`` (``poller.core.budget``) in the ledger: one
``request_log`` row per request sent, shared by every worker on the database.

Taking a unit reads the window and inserts a row in one write transaction, serialised
between processes or two could both take the last unit: by SQLite's ``BEGIN IMMEDIATE``, or
by an advisory lock per scope on PostgreSQL (READ COMMITTED alone would let both count 179
and both insert). Rows older than the window are pruned in the same transaction. On
PostgreSQL the window is counted and units stamped by the server's clock, read once the
lock is ours (``poller.ledger.sql`` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Interval, delete, func, insert, literal, select, text
from sqlalchemy.engine import Engine

from poller.core.budget import BudgetLimit, Grant
from poller.ledger.sql import SERVER_NOW, read_transaction, write_transaction
from poller.ledger.tables import request_log

# First key of the two-key advisory lock; the second is a hash of the scope. PostgreSQL keeps
# two-key and one-key locks apart, so this never meets the ledger's own single-key locks.
_PG_BUDGET_CLASS = 0x7270


class SqlRequestLog:
    """``process_clock``: as ``open_ledger``'s."""

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
        with read_transaction(self._engine) as conn:
            if self._db_clock:
                now = conn.execute(select(SERVER_NOW)).scalar_one()
            start = now - timedelta(seconds=limit.window_seconds)
            count = conn.execute(
                select(func.count()).select_from(request_log)
                .where(request_log.c.scope == limit.scope, request_log.c.at > start)
            ).scalar_one()
        return int(count)
