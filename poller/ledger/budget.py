"""The request budget's ``RequestLog`` in the ledger: one ``request_log`` row per request
sent, shared by every worker process on the same database (poller.core.budget).

Taking units (one, or a batch: ``RequestBudget``) is one write transaction that reads the
window and inserts a row per unit, so it must be serialised between processes or two could
both take the last unit: SQLite's
``BEGIN IMMEDIATE`` (``write_transaction``) admits one writer at a time; on PostgreSQL a
transaction-scoped advisory lock per scope does the same (READ COMMITTED alone would let
both count 179 and both insert). Rows older than the window are pruned in the same
transaction, so the table stays the size of one window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.engine import Engine

from poller.core.budget import BudgetLimit, Grant
from poller.ledger.sql import read_transaction, write_transaction
from poller.ledger.tables import request_log

_PG_BUDGET_CLASS = 0x7270
"""First key of the two-key advisory lock (``pg_advisory_xact_lock(int, int)``); the second
is a hash of the scope. PostgreSQL keeps two-key and one-key locks apart, so this never
meets the ledger's own single-key locks."""


class SqlRequestLog:
    """``RequestLog`` over the ledger's ``request_log`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"

    def try_take(
        self, limit: BudgetLimit, clock: Callable[[], datetime], units: int = 1
    ) -> Grant:
        with write_transaction(self._engine) as conn:
            if self._pg:
                conn.execute(text("SELECT pg_advisory_xact_lock(:cls, hashtext(:scope))"),
                             {"cls": _PG_BUDGET_CLASS, "scope": limit.scope})
            # Read the clock only once the lock is ours (see RequestLog.try_take).
            now = clock()
            start = now - timedelta(seconds=limit.window_seconds)
            conn.execute(delete(request_log).where(request_log.c.scope == limit.scope,
                                                   request_log.c.at <= start))
            count, oldest = conn.execute(
                select(func.count(), func.min(request_log.c.at))
                .where(request_log.c.scope == limit.scope, request_log.c.at > start)
            ).one()
            free = min(units, limit.max_requests - count)
            if free > 0:
                conn.execute(insert(request_log),
                             [{"scope": limit.scope, "at": now}] * free)
                return Grant(free)
        # The stored time comes back through UTCDateTime (aware, UTC).
        assert isinstance(oldest, datetime)
        free_in: float = (oldest - start).total_seconds()
        return Grant(0, max(0.0, free_in))

    def taken(self, limit: BudgetLimit, now: datetime) -> int:
        start = now - timedelta(seconds=limit.window_seconds)
        with read_transaction(self._engine) as conn:
            count = conn.execute(
                select(func.count()).select_from(request_log)
                .where(request_log.c.scope == limit.scope, request_log.c.at > start)
            ).scalar_one()
        return int(count)
