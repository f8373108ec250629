"""The SQL ledger (SQLite or PostgreSQL 15), on SQLAlchemy Core.

Concurrency, in one place:

* Every write is one short transaction, or one statement on its own. On SQLite writes start
  with ``BEGIN IMMEDIATE``: the write lock is taken before reading, so two processes never
  deadlock upgrading a read lock. In WAL mode reads never block or wait for the writer.
* ``claim`` and every move are one compare-and-swap UPDATE: whoever's UPDATE matches the
  free lease (and the expected state) gets the row; on PostgreSQL the loser's UPDATE
  re-reads the row after the winner commits and no longer matches.
* ``record`` inserts with ``ON CONFLICT DO NOTHING`` on (source, redemption_id), after
  taking an advisory lock on PostgreSQL: two workers recording overlapping batches in
  different orders would otherwise each wait for a row the other inserted.
* A guarded move (to ORDERING, under the daily spend limit) adds up what was spent in the
  move's transaction, after an advisory lock on PostgreSQL (SQLite admits one writer), so
  two workers cannot both read "60 of 75 spent" and both order 10. Only guarded moves take
  it, before the row lock, so it cannot form a cycle.

Time, on PostgreSQL, is the database server's (docs/configuration.md, "One clock"): taken
inside the statement (``statement_timestamp()``) or read once per decision (``SqlLedger.now``).
The ``now`` a caller passes only anchors the times it gives relative to it (``next_attempt_at
= now + 60 s`` is stored as the server's time plus 60 s); a spend guard's ``since`` (midnight
UTC) is compared as it is. On SQLite the ``now`` passed is the time, as with
``open_ledger(process_clock=True)``.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, insert, or_, select, update

from poller.domain.model import Event, LedgerEntry, Redemption
from poller.domain.states import ACTIVE, TERMINAL, State
from poller.ledger import (
    AdminTransition,
    check_aware,
    check_filters,
    check_limit,
    clean_text,
    record_rows,
)
from poller.ledger.sql.engine import (
    PG_MIGRATION_LOCK,
    RECORD_LOCK,
    LedgerTimeouts,
    ledger_schema,
    make_engine,
    one_statement,
    parse_url,
    read_transaction,
    safe_url,
    stored_revision,
    write_transaction,
)
from poller.ledger.sql.moves import SERVER_NOW, Moves, lease_free, row_entry, spent
from poller.ledger.tables import cache as cache_t
from poller.ledger.tables import events as events_t
from poller.ledger.tables import polls as polls_t
from poller.ledger.tables import redemptions as red_t
from poller.ports import PollRecord

if TYPE_CHECKING:
    from poller.ports import Ledger

__all__ = [
    "PG_MIGRATION_LOCK", "RECORD_LOCK", "SERVER_NOW", "LedgerTimeouts", "SqlLedger", "chunks",
    "ledger_schema", "make_engine", "parse_url", "read_transaction", "row_entry", "safe_url",
    "stored_revision", "write_transaction",
]


def chunks(items: Sequence[str]) -> list[Sequence[str]]:
    """``items`` in slices of 500 for an IN (...) list: far below every driver's limit on
    bound parameters, whatever the batch."""
    return [items[i:i + 500] for i in range(0, len(items), 500)]


class SqlLedger(Moves, AdminTransition):
    """The ``Ledger`` on a SQLAlchemy engine; ``poller.ledger.open_ledger`` builds it."""

    def __repr__(self) -> str:
        return f"SqlLedger({safe_url(self._engine.url)})"

    def ping(self) -> None:
        with read_transaction(self._engine) as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()

    def close(self) -> None:
        self._engine.dispose()

    # --- polls and recording -----------------------------------------------------------

    def start_poll(self, now: datetime) -> int:
        with one_statement(self._engine) as conn:
            poll_id: int = conn.execute(
                insert(polls_t).values(started_at=self._now_sql(), ok=False, complete=False,
                                       seen=0)
                .returning(polls_t.c.id), {"w_now": check_aware(now)}
            ).scalar_one()
        return poll_id

    def finish_poll(
        self, poll_id: int, now: datetime, *, ok: bool, complete: bool, seen: int,
        error: str | None = None,
    ) -> None:
        with one_statement(self._engine) as conn:
            result = conn.execute(
                update(polls_t).where(polls_t.c.id == poll_id).values(
                    finished_at=self._now_sql(), ok=ok, complete=complete, seen=seen,
                    error=error
                ), {"w_now": check_aware(now)}
            )
        if result.rowcount == 0:
            raise LookupError(f"no poll with id {poll_id}")

    def last_successful_poll(self) -> PollRecord | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(
                select(polls_t).where(polls_t.c.ok).order_by(polls_t.c.id.desc()).limit(1)
            ).first()
        return None if row is None else PollRecord(**row._mapping)

    def record(self, poll_id: int, redemptions: Sequence[Redemption], now: datetime) -> int:
        rows = record_rows(poll_id, redemptions, check_aware(now))
        if not rows:
            return 0
        stmt = (
            self._insert(red_t)
            .on_conflict_do_nothing(index_elements=[red_t.c.source, red_t.c.redemption_id])
            .returning(red_t.c.pk, red_t.c.created_at)
        )
        if self._db_clock:
            # The server's time, taken by the INSERT itself (after the lock below).
            stmt = stmt.values(created_at=SERVER_NOW, updated_at=SERVER_NOW)
            for row in rows:
                del row["created_at"], row["updated_at"]
        with write_transaction(self._engine) as conn:
            if self._pg:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({RECORD_LOCK})")
            # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs; rows
            # skipped by ON CONFLICT (recorded earlier, or by another worker) return nothing.
            new = sorted(conn.execute(stmt, rows).all())
            if new:
                conn.execute(insert(events_t), [
                    {"redemption_pk": pk, "at": at, "from_state": None, "to_state": State.NEW,
                     "detail": "recorded"}
                    for pk, at in new
                ])
            if len(new) == len(rows):
                return len(new)  # all inserted here, each already seen by this poll
            by_source: dict[str, builtins.list[str]] = {}
            for row in rows:
                by_source.setdefault(row["source"], []).append(row["redemption_id"])
            for source, rids in by_source.items():
                for part in chunks(rids):
                    conn.execute(
                        update(red_t)
                        .where(
                            red_t.c.source == source,
                            red_t.c.redemption_id.in_(part),
                            # Never lowered: an older poll finishing late must not make a
                            # row look unseen by the newer one.
                            or_(red_t.c.last_seen_poll.is_(None),
                                red_t.c.last_seen_poll < poll_id),
                        )
                        .values(last_seen_poll=poll_id)
                    )
        return len(new)

    # --- reads -------------------------------------------------------------------------

    def _select_entries(self, stmt: Select[Any]) -> builtins.list[LedgerEntry]:
        with read_transaction(self._engine) as conn:
            return [row_entry(row) for row in conn.execute(stmt)]

    def _first(self, stmt: Select[Any]) -> LedgerEntry | None:
        found = self._select_entries(stmt.limit(1))
        return found[0] if found else None

    def get_pk(self, pk: int) -> LedgerEntry | None:
        return self._first(select(red_t).where(red_t.c.pk == pk))

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None:
        return self._first(select(red_t).where(
            red_t.c.source == source, red_t.c.redemption_id == redemption_id))

    def oldest_waiting(self) -> LedgerEntry | None:
        return self._first(select(red_t).where(red_t.c.state.not_in(sorted(TERMINAL)))
                           .order_by(red_t.c.created_at, red_t.c.pk))

    def due(self, now: datetime, limit: int) -> builtins.list[LedgerEntry]:
        at = self._now_sql()
        stmt = (
            select(red_t)
            .where(
                red_t.c.state.in_(sorted(ACTIVE)),
                or_(red_t.c.next_attempt_at.is_(None), red_t.c.next_attempt_at <= at),
                lease_free(at),
            )
            .order_by(red_t.c.pk)
            .limit(check_limit(limit))
        )
        # Once a cycle, one statement: no transaction around it on PostgreSQL.
        with one_statement(self._engine, write=False) as conn:
            return [row_entry(row) for row in conn.execute(stmt, {"w_now": check_aware(now)})]

    def unseen_since(
        self, poll_id: int, states: frozenset[State], *, polls: int = 1
    ) -> builtins.list[LedgerEntry]:
        if not states:
            return []
        before = poll_id
        if polls > 1:
            # A row missed ``polls`` complete polls exactly when the polls-th newest complete
            # poll up to poll_id is newer than the last poll that saw it.
            with read_transaction(self._engine) as conn:
                nth = conn.execute(
                    select(polls_t.c.id)
                    .where(polls_t.c.complete, polls_t.c.id <= poll_id)
                    .order_by(polls_t.c.id.desc())
                    .offset(polls - 1)
                    .limit(1)
                ).scalar_one_or_none()
            if nth is None:
                return []
            before = nth
        return self._select_entries(
            select(red_t)
            .where(
                red_t.c.state.in_(sorted(states)),
                or_(red_t.c.last_seen_poll.is_(None), red_t.c.last_seen_poll < before),
            )
            .order_by(red_t.c.pk)
        )

    def seen_since(self, poll_id: int, states: frozenset[State]) -> builtins.list[LedgerEntry]:
        if not states:
            return []
        return self._select_entries(
            select(red_t)
            .where(red_t.c.state.in_(sorted(states)), red_t.c.last_seen_poll >= poll_id)
            .order_by(red_t.c.pk)
        )

    def events(self, pk: int) -> builtins.list[Event]:
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(events_t).where(events_t.c.redemption_pk == pk).order_by(events_t.c.id)
            )
            return [Event(at=r.at, from_state=r.from_state, to_state=r.to_state,
                          detail=r.detail, actor=r.actor) for r in rows]

    def counts(self) -> dict[State, int]:
        with read_transaction(self._engine) as conn:
            rows = conn.execute(select(red_t.c.state, func.count()).group_by(red_t.c.state))
            return {state: int(n) for state, n in rows}

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        with read_transaction(self._engine) as conn:
            return spent(conn, clean_text(currency), check_aware(since, "since"))

    # --- cache -------------------------------------------------------------------------

    def cache_get(self, key: str, now: datetime) -> str | None:
        now = check_aware(now)
        with read_transaction(self._engine) as conn:
            value: str | None = conn.execute(
                select(cache_t.c.value).where(
                    cache_t.c.key == clean_text(key),
                    or_(cache_t.c.expires_at.is_(None), cache_t.c.expires_at > now),
                )
            ).scalar_one_or_none()
        return value

    def cache_put(self, key: str, value: str, expires_at: datetime | None) -> None:
        if expires_at is not None:
            expires_at = check_aware(expires_at, "expires_at")
        stmt = self._insert(cache_t).values(
            key=clean_text(key), value=clean_text(value), expires_at=expires_at,
            # Wall clock: only for people reading the table, nothing decides on it.
            updated_at=datetime.now(UTC),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[cache_t.c.key],
            set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at,
                  "updated_at": stmt.excluded.updated_at},
        )
        with one_statement(self._engine) as conn:
            conn.execute(stmt)

    # Last, because inside the class body its name hides the builtin ``list``.
    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
        filters: Mapping[str, Any] | None = None,
    ) -> builtins.list[LedgerEntry]:
        wanted = check_filters(filters)
        where: builtins.list[Any] = []
        if states is not None:
            if not states:
                return []
            where.append(red_t.c.state.in_(sorted(states)))
        for key in ("vendor", "source"):
            if key in wanted:
                where.append(red_t.c[key] == wanted[key])
        if "reward" in wanted:
            where.append(
                or_(red_t.c.reward_id == wanted["reward"], red_t.c.reward_name == wanted["reward"])
            )
        if "email" in wanted:
            where.append(func.lower(red_t.c.email) == func.lower(wanted["email"]))
        if "since" in wanted:
            where.append(red_t.c.created_at >= wanted["since"])
        if "until" in wanted:
            where.append(red_t.c.created_at < wanted["until"])
        return self._select_entries(
            select(red_t)
            .where(*where)
            .order_by(red_t.c.created_at.desc(), red_t.c.pk.desc())
            .limit(check_limit(limit))
        )


if TYPE_CHECKING:

    def _conforms(ledger: SqlLedger) -> Ledger:
        return ledger
