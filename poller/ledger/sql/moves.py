"""Leases and moves: claiming a row, renewing and releasing the lease, and moving it from
one state to the next with its event row (guarded moves are one statement)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    bindparam,
    cast,
    exc,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Update

from poller.domain.model import LedgerEntry
from poller.domain.states import State, check_transition
from poller.ledger import (
    ADMIN_OWNER,
    TIME_COLUMNS,
    IdempotencyKeyInUse,
    change_columns,
    check_aware,
    check_claim,
    check_guard,
    check_spend,
    clean_stored,
)
from poller.ledger.sql.base import SqlLedgerBase, lease_free, on_ledger_clock, row_entry
from poller.ledger.sql.locks import SPEND_LOCK
from poller.ledger.sql.spend import spent, spent_where
from poller.ledger.sql.transactions import one_statement_write, write_transaction
from poller.ledger.tables import CleanText, StateType
from poller.ledger.tables import events as events_t
from poller.ledger.tables import redemptions as red_t
from poller.ports import Changes, LeaseLost, SpendGuard


def _key_in_use(pk: int, columns: Mapping[str, Any], error: exc.IntegrityError) -> Exception:
    if "idempotency_key" in str(error.orig):
        return IdempotencyKeyInUse(
            f"redemption {pk}: idempotency key {columns.get('idempotency_key')!r} "
            "already belongs to another redemption"
        )
    return error


class Moves(SqlLedgerBase):
    """Leases and state moves."""

    def claim(
        self, pk: int, owner: str, now: datetime, lease_seconds: float
    ) -> LedgerEntry | None:
        now = check_aware(now)
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        with one_statement_write(self._engine) as conn:
            row = conn.execute(self._claim_stmt, {
                "w_pk": pk, "w_owner": owner, "w_now": now,
                "v_until": now + timedelta(seconds=lease_seconds),
            }).first()
        return None if row is None else row_entry(row)

    def renew(self, pk: int, owner: str, now: datetime, lease_seconds: float) -> bool:
        now = check_aware(now)
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        with one_statement_write(self._engine) as conn:
            result = conn.execute(self._renew_stmt, {
                "w_pk": pk, "w_owner": owner, "w_now": now,
                "v_until": now + timedelta(seconds=lease_seconds),
            })
        return bool(result.rowcount)

    def release(self, pk: int, owner: str) -> None:
        with one_statement_write(self._engine) as conn:
            conn.execute(self._release_stmt, {"w_pk": pk, "w_owner": owner})

    def claim_transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        lease_seconds: float, changes: Changes | None = None, *, expect: State,
        guard: SpendGuard | None = None,
    ) -> LedgerEntry | None:
        now = check_claim(now, lease_seconds, expect, to_state)
        return self._guarded_move(
            pk, owner, to_state, detail, now, change_columns(changes), expect=expect,
            guard=None if guard is None else check_guard(guard), actor=None,
            claim_until=now + timedelta(seconds=lease_seconds), release=False)

    def transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, expect: State | None = None,
        guard: SpendGuard | None = None, actor: str | None = None, release: bool = False,
    ) -> LedgerEntry:
        now = check_aware(now)
        columns = change_columns(changes)
        guard = None if guard is None else check_guard(guard)
        if expect is not None:
            # The state is known beforehand: one guarded UPDATE, no row read first.
            check_transition(expect, to_state)
            moved = self._guarded_move(pk, owner, to_state, detail, now, columns,
                                       expect=expect, guard=guard, actor=actor,
                                       claim_until=None, release=release)
            assert moved is not None  # without a claim, no match raises LeaseLost
            return moved
        try:
            with write_transaction(self._engine) as conn:
                if guard is not None and conn.dialect.name == "postgresql":
                    # Held to the commit: the next guarded transition reads our amount.
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SPEND_LOCK})")
                row = conn.execute(
                    select(red_t, self._now_sql().label("ledger_now"))
                    .where(red_t.c.pk == pk).with_for_update(),
                    {"w_now": now},
                ).first()
                if row is None:
                    raise LeaseLost(f"redemption {pk} is not in the ledger")
                # From here on, the ledger's time (the server's, or ``now`` itself).
                ledger_now: datetime = row.ledger_now
                if (row.lease_owner != owner or row.lease_until is None
                        or row.lease_until < ledger_now):
                    raise LeaseLost(f"redemption {pk}: the lease of {owner!r} is gone")
                check_transition(row.state, to_state)
                if guard is not None:
                    where = spent_where(guard.currency, guard.since)
                    check_spend(guard, spent(conn, [*where, red_t.c.pk != pk]))
                columns = {
                    name: on_ledger_clock(value, now, ledger_now)
                    if name in TIME_COLUMNS and value is not None else value
                    for name, value in columns.items()
                }
                now = ledger_now
                values: dict[str, Any] = {**columns, "state": to_state, "updated_at": now}
                if release:
                    values.update(lease_owner=None, lease_until=None, unfinished_steps=0)
                new = conn.execute(
                    update(red_t)
                    .where(red_t.c.pk == pk)
                    .values(**values)
                    .returning(*red_t.c)
                ).one()
                conn.execute(
                    insert(events_t).values(
                        redemption_pk=pk, at=now, from_state=row.state, to_state=to_state,
                        detail=clean_stored(detail), actor=actor or owner,
                    )
                )
        except exc.IntegrityError as e:
            raise _key_in_use(pk, columns, e) from None
        return row_entry(new)

    def _guarded_move(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        columns: dict[str, Any], *, expect: State, guard: SpendGuard | None,
        actor: str | None, claim_until: datetime | None, release: bool,
    ) -> LedgerEntry | None:
        """One guarded UPDATE ... RETURNING and its event row, in one transaction (one
        statement on PostgreSQL). With ``claim_until`` the lease is taken by the same
        UPDATE (free, expired or already ours) and no match returns None; without it the
        lease must be ours and live, and no match reads the row once to say why
        (LeaseLost)."""
        claim = claim_until is not None
        stmt = self._move_stmt(frozenset(columns), claim=claim, release=release)
        params: dict[str, Any] = {f"v_{name}": value for name, value in columns.items()}
        params.update(w_pk=pk, w_owner=owner, w_now=now, w_expect=expect, v_state=to_state,
                      v_until=claim_until, v_move_detail=clean_stored(detail),
                      v_move_actor=actor or owner)
        try:
            # The move is one statement: its event row is written by the same statement (a
            # CTE on PostgreSQL, a trigger on SQLite).
            # Without a spend guard that is all it does (autocommit on PostgreSQL); with
            # one, the guard's lock and check share its transaction.
            write = write_transaction if guard is not None else one_statement_write
            with write(self._engine) as conn:
                if guard is not None and self._pg:
                    # Held to the commit: the next guarded move reads our amount.
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SPEND_LOCK})")
                row = conn.execute(stmt, params).first()
                if row is None:
                    if claim:
                        return None  # another worker holds it, or it has moved on
                    raise self._why_not_moved(conn, pk, owner, now, expect)
                if guard is not None:
                    # After the move, in its transaction: the lease and the state are
                    # checked first, and going over the limit rolls the move back.
                    where = spent_where(guard.currency, guard.since)
                    check_spend(guard, spent(conn, [*where, red_t.c.pk != pk]))
        except exc.IntegrityError as e:
            raise _key_in_use(pk, columns, e) from None
        return row_entry(row)

    def _why_not_moved(
        self, conn: Connection, pk: int, owner: str, now: datetime, expect: State
    ) -> LeaseLost:
        row = conn.execute(self._lease_stmt, {"w_pk": pk, "w_now": now}).first()
        if row is None:
            return LeaseLost(f"redemption {pk} is not in the ledger")
        if (row.lease_owner != owner or row.lease_until is None
                or row.lease_until < row.ledger_now):
            return LeaseLost(f"redemption {pk}: the lease of {owner!r} is gone")
        return LeaseLost(f"redemption {pk} is {row.state.value!r}, expected {expect.value!r}")

    def _move_stmt(self, columns: frozenset[str], *, claim: bool, release: bool) -> Any:
        """The guarded move for one set of changed columns, built once and kept (SQLAlchemy
        caches its compiled form)."""
        key = (columns, claim, release)
        stmt = self._moves.get(key)
        if stmt is None:
            stmt = self._moves[key] = self._build_move(columns, claim=claim, release=release)
        return stmt

    def _build_move(self, columns: frozenset[str], *, claim: bool, release: bool) -> Any:
        now = self._now_sql()
        owner = bindparam("w_owner", type_=CleanText())
        where: builtins.list[Any] = [
            red_t.c.pk == bindparam("w_pk"),
            red_t.c.state == bindparam("w_expect", type_=StateType()),
        ]
        if claim:
            where.append(or_(lease_free(now), red_t.c.lease_owner == owner))
        else:
            where += [red_t.c.lease_owner == owner, red_t.c.lease_until >= now]
        values: dict[str, Any] = {
            name: self._given(f"v_{name}") if name in TIME_COLUMNS
            else bindparam(f"v_{name}", type_=red_t.c[name].type)
            for name in sorted(columns)
        }
        values.update(state=bindparam("v_state", type_=StateType()), updated_at=now,
                      move_detail=bindparam("v_move_detail", type_=CleanText()),
                      move_actor=bindparam("v_move_actor", type_=CleanText()))
        if claim:
            values.update(lease_owner=owner, lease_until=self._given("v_until"),
                          unfinished_steps=red_t.c.unfinished_steps + 1)
        if release:
            values.update(lease_owner=None, lease_until=None, unfinished_steps=0)
        moved: Update = update(red_t).where(*where).values(**values)
        if not self._pg:
            # SQLite: the trigger trg_redemptions_move_event (migration 0005) writes the
            # event row from move_detail and move_actor.
            return moved.returning(*red_t.c)
        # PostgreSQL: the event row is written by the same statement, from what the UPDATE
        # returned.
        cte = moved.returning(*red_t.c).cte("moved")
        event_cte = insert(events_t).from_select(
            ["redemption_pk", "at", "from_state", "to_state", "detail", "actor"],
            select(cte.c.pk, cte.c.updated_at,
                   cast(bindparam("w_expect", type_=StateType()), red_t.c.state.type),
                   cte.c.state, cte.c.move_detail, cte.c.move_actor),
        ).cte("event")
        return select(cte).add_cte(event_cte)

    def admin_transition(
        self, pk: int, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, actor: str | None = None,
    ) -> LedgerEntry:
        """A person's decision (``ledger retry``, ``ledger refuse``): take the lease as
        ``admin``, move the row, give the lease back. LookupError if there is no such row,
        LeaseLost if a worker holds a live lease on it (try again when it is done)."""
        if self.get_pk(pk) is None:
            raise LookupError(f"no redemption with pk {pk}")
        if self.claim(pk, ADMIN_OWNER, now, 60) is None:
            raise LeaseLost(f"redemption {pk} is being worked on; try again in a minute")
        try:
            return self.transition(pk, ADMIN_OWNER, to_state, detail, now, changes,
                                   actor=actor)
        finally:
            self.release(pk, ADMIN_OWNER)

