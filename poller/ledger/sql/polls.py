"""Polls, and what a poll writes: the redemptions it read (``record``) and which of them
it saw."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from poller.domain.model import Redemption
from poller.domain.states import State
from poller.ledger import (
    check_aware,
    clean_optional,
    clean_text,
    encode_payload,
)
from poller.ledger.sql.base import SqlLedgerBase
from poller.ledger.sql.locks import RECORD_LOCK
from poller.ledger.sql.transactions import read_transaction, write_transaction
from poller.ledger.stored_redemption import encode_redemption
from poller.ledger.tables import events as events_t
from poller.ledger.tables import polls as polls_t
from poller.ledger.tables import redemptions as red_t
from poller.ports import PollRecord

_CHUNK = 500
"""Keys per IN (...) list: far below SQLite's bound-parameter limit, whatever the batch."""


def _poll(row: Row[Any]) -> PollRecord:
    return PollRecord(
        id=row.id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        complete=bool(row.complete),
        ok=bool(row.ok),
        seen=row.seen,
        error=row.error,
    )


class Polls(SqlLedgerBase):
    """Polls and recording."""

    def start_poll(self, now: datetime) -> int:
        now = check_aware(now)
        with write_transaction(self._engine) as conn:
            poll_id: int = conn.execute(
                insert(polls_t).values(started_at=self._now_sql(), ok=False, complete=False,
                                       seen=0)
                .returning(polls_t.c.id), {"w_now": now}
            ).scalar_one()
        return poll_id

    def finish_poll(
        self, poll_id: int, now: datetime, *, ok: bool, complete: bool, seen: int,
        error: str | None = None,
    ) -> None:
        now = check_aware(now)
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                update(polls_t).where(polls_t.c.id == poll_id).values(
                    finished_at=self._now_sql(), ok=ok, complete=complete, seen=seen,
                    error=error
                ), {"w_now": now}
            )
            if result.rowcount == 0:
                raise LookupError(f"no poll with id {poll_id}")

    def last_successful_poll(self) -> PollRecord | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(
                select(polls_t).where(polls_t.c.ok).order_by(polls_t.c.id.desc()).limit(1)
            ).first()
        return None if row is None else _poll(row)

    # --- recording ---------------------------------------------------------------------

    def record(self, poll_id: int, redemptions: Sequence[Redemption], now: datetime) -> int:
        now = check_aware(now)
        batch: dict[tuple[str, str], Redemption] = {}
        for r in redemptions:
            # Keys as stored (cleaned), so two spellings that store alike count once.
            batch.setdefault((clean_text(r.source), clean_text(r.id)), r)
        if not batch:
            return 0
        # In the order the source listed them, so primary keys (and due()) follow it.
        keys = builtins.list(batch)
        rows = [
            {
                "source": source,
                "redemption_id": rid,
                "state": State.NEW,
                # Encoded here, before the transaction: a payload that cannot be stored
                # fails the call with TypeError, not deep inside the driver.
                "payload": encode_payload(batch[source, rid].raw),
                "redemption": encode_redemption(batch[source, rid]),
                "reward_id": clean_optional(batch[source, rid].reward_id),
                "reward_name": clean_optional(batch[source, rid].reward_name),
                "email": clean_optional(batch[source, rid].contact.email),
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
                "last_seen_poll": poll_id,
            }
            for source, rid in keys
        ]
        stmt = (
            self._insert(red_t)
            .on_conflict_do_nothing(index_elements=[red_t.c.source, red_t.c.redemption_id])
            .returning(red_t.c.pk)
        )
        with write_transaction(self._engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({RECORD_LOCK})")
            if self._db_clock:
                now = self._ledger_now(conn, now)
                for row in rows:
                    row["created_at"] = row["updated_at"] = now
            # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs; rows
            # skipped by ON CONFLICT (recorded earlier, or by another worker) return nothing.
            new_pks = sorted(conn.execute(stmt, rows).scalars().all())
            if new_pks:
                conn.execute(
                    insert(events_t),
                    [
                        {
                            "redemption_pk": pk,
                            "at": now,
                            "from_state": None,
                            "to_state": State.NEW,
                            "detail": "recorded",
                        }
                        for pk in new_pks
                    ],
                )
            self._mark_seen(conn, poll_id, keys)
        return len(new_pks)

    def _mark_seen(self, conn: Connection, poll_id: int, keys: Sequence[tuple[str, str]]) -> None:
        by_source: dict[str, builtins.list[str]] = {}
        for source, rid in keys:
            by_source.setdefault(source, []).append(rid)
        for source, rids in by_source.items():
            for start in range(0, len(rids), _CHUNK):
                conn.execute(
                    update(red_t)
                    .where(
                        red_t.c.source == source,
                        red_t.c.redemption_id.in_(rids[start : start + _CHUNK]),
                        # Never lowers it: an older poll finishing late must not make a row
                        # look unseen by the newer one.
                        or_(red_t.c.last_seen_poll.is_(None), red_t.c.last_seen_poll < poll_id),
                    )
                    .values(last_seen_poll=poll_id)
                )

