"""The query plans of the worker's per-cycle reads, as the ledger really sends them.

Each ledger call is made once while the engine records the SQL it executes; that exact
statement, with its parameters, is then explained (``EXPLAIN QUERY PLAN`` on SQLite,
``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL). A plan that scans the table or the primary
key instead of a state index reads every closed redemption on every cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from poller.domain.states import State


def _capture(ledger: Any, call: Callable[[], object]) -> list[tuple[str, Any]]:
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any,
                 context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "redemptions" in statement:
            seen.append((statement, parameters))

    event.listen(ledger.engine, "before_cursor_execute", listener)
    try:
        call()
    finally:
        event.remove(ledger.engine, "before_cursor_execute", listener)
    return seen


def plans(ledger: Any) -> dict[str, str]:
    """``{query name: plan text}`` for due(), unseen_since() and (if the ledger has it)
    spent_since(), run against whatever the ledger holds now."""
    now = datetime.now(UTC)
    last = ledger.last_successful_poll()
    poll_id = (last.id if last else 0) + 1
    calls: dict[str, Callable[[], object]] = {
        "due": lambda: ledger.due(now, 500),
        "unseen_since": lambda: ledger.unseen_since(
            poll_id, frozenset({State.NEW, State.WAITING, State.HELD, State.ORDERING})),
    }
    if hasattr(ledger, "spent_since"):
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        calls["spent_since"] = lambda: ledger.spent_since("USD", midnight)
    out: dict[str, str] = {}
    sqlite = ledger.engine.dialect.name == "sqlite"
    for name, call in calls.items():
        captured = _capture(ledger, call)
        if not captured:
            continue
        statement, parameters = captured[0]
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
        with ledger.engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + statement, parameters).fetchall()
            conn.rollback()
        out[name] = "\n".join(str(r[-1] if sqlite else r[0]) for r in rows)
    return out
