"""The SQL ledger's clock, leases and moves: claiming a row, renewing and releasing the
lease, and moving it from one state to the next with its event row, each one statement
(with the spend check in its transaction for a guarded move)."""

from __future__ import annotations

import builtins
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    and_,
    bindparam,
    cast,
    exc,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from poller.domain.model import LedgerEntry
from poller.domain.states import State, check_transition
from poller.ledger import (
    TIME_COLUMNS,
    change_columns,
    check_aware,
    check_guard,
    check_lease,
    check_move,
    check_spend,
    clean_stored,
    entry_from_columns,
    key_in_use,
    lease_lost,
    lease_until,
    sum_amounts,
)
from poller.ledger.sql.engine import SPEND_LOCK, one_statement, read_transaction, write_transaction
from poller.ledger.tables import CleanText, StateType, UTCDateTime
from poller.ledger.tables import events as events_t
from poller.ledger.tables import redemptions as red_t
from poller.ports import Changes, LeaseLost, SpendGuard

SERVER_NOW: ColumnElement[datetime] = func.statement_timestamp(type_=UTCDateTime())
"""PostgreSQL's time for one statement: one value however many rows it touches, taken after
any lock an earlier statement of its transaction waited for."""


def row_entry(row: Row[Any]) -> LedgerEntry:
    return entry_from_columns(row._mapping)


def lease_free(now: Any) -> Any:
    return or_(
        red_t.c.lease_owner.is_(None), red_t.c.lease_until.is_(None), red_t.c.lease_until < now
    )


def spent(conn: Connection, currency: str, since: datetime, but: int | None = None) -> Decimal:
    """``poller.ledger.counts_as_spent`` in SQL, served by ix_redemptions_currency_ordered_at;
    summed here, as amounts are stored as exact Decimal text."""
    where = [
        red_t.c.currency == currency,
        red_t.c.ordered_at >= since,
        red_t.c.state.not_in([State.REFUSED, State.PERHAPS_REFUSED]),
        not_(and_(red_t.c.state == State.CLOSED_UPSTREAM, red_t.c.vendor_order_id.is_(None))),
    ]
    if but is not None:
        where.append(red_t.c.pk != but)
    return sum_amounts(conn.execute(select(red_t.c.amount).where(*where)).scalars())


class Moves:
    """The engine, the clock it goes by (see ``poller.ledger.sql``), and the moves."""

    def __init__(self, engine: Engine, *, process_clock: bool = False) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._db_clock = self._pg and not process_clock
        self._insert: Any
        # Dialects on demand: a SQLite worker never loads PostgreSQL's (a tenth of its
        # start), and the other way round.
        if self._pg:
            from sqlalchemy.dialects.postgresql import insert as pg_insert  # as above

            self._insert = pg_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert  # as above

            self._insert = sqlite_insert
        # Built once (SQLAlchemy caches their compiled form): the guarded moves per set of
        # changed columns (a handful), the lease statements here.
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
        """The time the caller gave as ``name``, on the ledger's clock: as far from the
        statement's "now" as from the caller's ``w_now``."""
        value: ColumnElement[datetime] = bindparam(name, type_=UTCDateTime())
        if not self._db_clock:
            return value
        moved: ColumnElement[datetime] = value + (
            SERVER_NOW - bindparam("w_now", type_=UTCDateTime()))
        return moved

    def now(self, local: datetime) -> datetime:
        local = check_aware(local)
        if not self._db_clock:
            return local
        with read_transaction(self._engine) as conn:
            found = conn.execute(select(SERVER_NOW)).scalar_one()
        assert isinstance(found, datetime)
        return found

    @property
    def engine(self) -> Engine:
        return self._engine

    def claim(
        self, pk: int, owner: str, now: datetime, lease_seconds: float
    ) -> LedgerEntry | None:
        now = check_lease(now, lease_seconds)
        with one_statement(self._engine) as conn:
            row = conn.execute(self._claim_stmt, {
                "w_pk": pk, "w_owner": owner, "w_now": now,
                "v_until": lease_until(now, lease_seconds),
            }).first()
        return None if row is None else row_entry(row)

    def renew(self, pk: int, owner: str, now: datetime, lease_seconds: float) -> bool:
        now = check_lease(now, lease_seconds)
        with one_statement(self._engine) as conn:
            result = conn.execute(self._renew_stmt, {
                "w_pk": pk, "w_owner": owner, "w_now": now,
                "v_until": lease_until(now, lease_seconds),
            })
        return bool(result.rowcount)

    def release(self, pk: int, owner: str) -> None:
        with one_statement(self._engine) as conn:
            conn.execute(self._release_stmt, {"w_pk": pk, "w_owner": owner})

    def claim_transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        lease_seconds: float, changes: Changes | None = None, *, expect: State,
        guard: SpendGuard | None = None,
    ) -> LedgerEntry | None:
        now = check_lease(now, lease_seconds)
        check_transition(expect, to_state)
        return self._move(
            pk, owner, to_state, detail, now, change_columns(changes), expect=expect,
            guard=check_guard(guard), actor=None,
            claim_until=lease_until(now, lease_seconds), release=False)

    def transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, expect: State | None = None,
        guard: SpendGuard | None = None, actor: str | None = None, release: bool = False,
    ) -> LedgerEntry:
        now = check_aware(now)
        columns = change_columns(changes)
        guard = check_guard(guard)
        check_move(expect, to_state)
        if expect is None:
            # A person's move (``admin_transition``): the state is read first, under our
            # lease, so no worker moves it before the guarded UPDATE below.
            with read_transaction(self._engine) as conn:
                row, lost = self._lease_lost(conn, pk, owner, now, None)
            if lost is not None:
                raise lost
            assert row is not None
            expect = State(row.state)
            check_transition(expect, to_state)
        moved = self._move(pk, owner, to_state, detail, now, columns, expect=expect,
                           guard=guard, actor=actor, claim_until=None, release=release)
        assert moved is not None  # without a claim, no match raises LeaseLost
        return moved

    def _lease_lost(
        self, conn: Connection, pk: int, owner: str, now: datetime, expect: State | None
    ) -> tuple[Row[Any] | None, LeaseLost | None]:
        """The row's state and lease, and why ``owner`` may not move it, judged by the
        ledger's clock (read in the same statement)."""
        row = conn.execute(self._lease_stmt, {"w_pk": pk, "w_now": now}).first()
        if row is None:
            return None, lease_lost(pk, owner, None, now, expect)
        return row, lease_lost(pk, owner, row._mapping, row.ledger_now, expect)

    def _move(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        columns: dict[str, Any], *, expect: State, guard: SpendGuard | None,
        actor: str | None, claim_until: datetime | None, release: bool,
    ) -> LedgerEntry | None:
        """One guarded UPDATE ... RETURNING that also writes its event row (a CTE on
        PostgreSQL, a trigger on SQLite). With ``claim_until`` it takes the lease (free,
        expired or already ours) and no match returns None; without, the lease must be ours
        and live, and no match reads the row once to say why (LeaseLost)."""
        claim = claim_until is not None
        stmt = self._move_stmt(frozenset(columns), claim=claim, release=release)
        params: dict[str, Any] = {f"v_{name}": value for name, value in columns.items()}
        params.update(w_pk=pk, w_owner=owner, w_now=now, w_expect=expect, v_state=to_state,
                      v_until=claim_until, v_move_detail=clean_stored(detail),
                      v_move_actor=actor or owner)
        try:
            # Without a spend guard the move is all the call does (autocommit on
            # PostgreSQL); with one, the guard's lock and check share its transaction.
            write = write_transaction if guard is not None else one_statement
            with write(self._engine) as conn:
                if guard is not None and self._pg:
                    # Held to the commit: the next guarded move reads our amount.
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SPEND_LOCK})")
                row = conn.execute(stmt, params).first()
                if row is None:
                    if claim:
                        return None  # another worker holds it, or it has moved on
                    found, lost = self._lease_lost(conn, pk, owner, now, expect)
                    if lost is None:
                        assert found is not None
                        lost = LeaseLost(f"redemption {pk} is {found.state.value!r}, "
                                         f"expected {expect.value!r}")
                    raise lost
                if guard is not None:
                    # After the move, in its transaction: the lease and the state are
                    # checked first, and going over the limit rolls the move back.
                    check_spend(guard, spent(conn, guard.currency, guard.since, but=pk))
        except exc.IntegrityError as e:
            if "idempotency_key" in str(e.orig):
                raise key_in_use(pk, columns.get("idempotency_key")) from None
            raise
        return row_entry(row)

    def _move_stmt(self, columns: frozenset[str], *, claim: bool, release: bool) -> Any:
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
        moved = update(red_t).where(*where).values(**values).returning(*red_t.c)
        if not self._pg:
            # SQLite: the trigger trg_redemptions_move_event (migration 0005) writes the
            # event row from move_detail and move_actor.
            return moved
        cte = moved.cte("moved")
        event_cte = insert(events_t).from_select(
            ["redemption_pk", "at", "from_state", "to_state", "detail", "actor"],
            select(cte.c.pk, cte.c.updated_at,
                   cast(bindparam("w_expect", type_=StateType()), red_t.c.state.type),
                   cte.c.state, cte.c.move_detail, cte.c.move_actor),
        ).cte("event")
        return select(cte).add_cte(event_cte)
