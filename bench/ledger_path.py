"""The ledger's path per redemption, new -> fulfilled, through the real ``Ledger`` API as the
worker calls it, and a job queue's path on the same PostgreSQL for comparison.

Ledger, per page of redemptions: ``record`` (the poll's intake, one call per page) and
``due`` (the cycle's query), then per redemption ``claim_transition`` to ORDERING (the
lease taken and the idempotency key saved), ``transition`` to ORDERED (with the vendor's
order id and the message) and to FULFILLED (the lease given back) -- the calls and
arguments of ``poller.worker.cycle.Worker`` on the happy path, without the HTTP in between.

Peer: pgqueuer's ``enqueue`` (per job, or a page at a time in its batch form), then per job
``dequeue`` (batch of one) and ``log_jobs`` (complete), on its own schema of the same
database.

Every server statement is counted where it leaves the client: each cursor execute by its
first keyword, each transaction's BEGIN (psycopg sends it before the first statement of a
transaction; the SQLite ledger sends it itself, so it is a cursor execute there), each
COMMIT, each ROLLBACK of an open transaction, each pool pre-ping.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

PAGE = 25
"""Redemptions per ``record`` call and jobs per ``enqueue`` call: the stand-in's (and the
real list's observed) page size."""


def bare_commit_seconds(ledger: Any, commits: int) -> float:
    """Seconds per bare durable commit: a one-row UPDATE in its own transaction, on a raw
    driver connection of the ledger's own engine (same file or server, same settings)."""
    raw = ledger.engine.raw_connection()
    sqlite = ledger.engine.dialect.name == "sqlite"
    try:
        cur = raw.cursor()
        if sqlite:
            cur.execute("CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY, n INT)")
            cur.execute("INSERT OR IGNORE INTO bench_floor VALUES (1, 0)")
        else:
            cur.execute("CREATE TABLE IF NOT EXISTS bench_floor (id INT PRIMARY KEY, n INT)")
            cur.execute("INSERT INTO bench_floor VALUES (1, 0) ON CONFLICT DO NOTHING")
            raw.commit()
        began = time.perf_counter()
        for _ in range(commits):
            if sqlite:
                cur.execute("BEGIN IMMEDIATE")
                cur.execute("UPDATE bench_floor SET n = n + 1 WHERE id = 1")
                cur.execute("COMMIT")
            else:
                cur.execute("UPDATE bench_floor SET n = n + 1 WHERE id = 1")
                raw.commit()
        return (time.perf_counter() - began) / commits
    finally:
        raw.close()


class StatementProbe:
    """Counts the server statements and commits an SQLAlchemy engine sends, by kind, and
    (when ``capture``) keeps their text in order."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.kinds: Counter[str] = Counter()
        self.texts: list[str] = []
        self.implicit_commits = 0
        self.capture = False
        self._event = event
        self._pg = engine.dialect.name == "postgresql"
        dialect = engine.dialect
        self._originals = (dialect.do_commit, dialect.do_rollback, dialect.do_ping)
        do_commit, do_rollback, do_ping = self._originals

        def commit(dbapi_connection: Any) -> None:
            # In autocommit mode the drivers send nothing: the statements committed alone.
            if _in_transaction(dbapi_connection):
                self._count("COMMIT")
            do_commit(dbapi_connection)

        def rollback(dbapi_connection: Any) -> None:
            # A rollback with no transaction open sends nothing (both drivers skip it).
            if _in_transaction(dbapi_connection):
                self._count("ROLLBACK")
            do_rollback(dbapi_connection)

        def ping(dbapi_connection: Any) -> bool:
            self._count("PING (SELECT 1)")
            return bool(do_ping(dbapi_connection))

        dialect.do_commit, dialect.do_rollback, dialect.do_ping = commit, rollback, ping
        self._unwatch = watch_statements(engine, self._statement)
        if self._pg:
            event.listen(engine, "begin", self._begin)

    def _count(self, kind: str, text: str | None = None) -> None:
        self.kinds[kind] += 1
        if self.capture:
            self.texts.append(text or kind)

    def _statement(self, cursor: Any, statement: str) -> None:
        words = statement.split(None, 1)
        kind = words[0].upper() if words else "?"
        if is_implicit_commit(cursor, statement):
            # A write outside any transaction is its own durable transaction: the server
            # commits it with no COMMIT sent.
            self.implicit_commits += 1
        if kind == "SELECT" and "FOR UPDATE" in statement.upper():
            kind = "SELECT ... FOR UPDATE"
        elif kind == "SELECT" and "pg_advisory_xact_lock" in statement:
            kind = "SELECT pg_advisory_xact_lock"
        self._count(kind, _short(statement))

    def _begin(self, conn: Any) -> None:
        if not getattr(conn.connection.dbapi_connection, "autocommit", False):
            self._count("BEGIN")

    @property
    def statements(self) -> int:
        return sum(self.kinds.values())

    @property
    def commits(self) -> int:
        """Durable commits: each COMMIT sent, and each write sent outside a transaction."""
        return self.kinds["COMMIT"] + self.implicit_commits

    def reset(self) -> None:
        self.kinds.clear()
        self.texts.clear()
        self.implicit_commits = 0

    def close(self) -> None:
        self._unwatch()
        if self._pg:
            self._event.remove(self.engine, "begin", self._begin)
        dialect = self.engine.dialect
        dialect.do_commit, dialect.do_rollback, dialect.do_ping = self._originals


def watch_statements(engine: Any, seen: Callable[[Any, str], None]) -> Callable[[], None]:
    """Call ``seen(cursor, statement)`` for each statement ``engine`` sends (SQLAlchemy's
    ``before_cursor_execute`` event: every statement the ledger sends goes through it).
    Returns what stops watching."""
    from sqlalchemy import event

    def through_sqlalchemy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen(cursor, statement)

    event.listen(engine, "before_cursor_execute", through_sqlalchemy)

    def stop() -> None:
        event.remove(engine, "before_cursor_execute", through_sqlalchemy)

    return stop


_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "WITH"})


def is_implicit_commit(cursor: Any, statement: str) -> bool:
    """Whether ``statement`` is a write sent outside any transaction: the server commits it
    on its own, with no COMMIT sent."""
    words = statement.split(None, 1)
    return bool(words) and words[0].upper() in _WRITES and _autocommits(cursor)


def _autocommits(cursor: Any) -> bool:
    """Whether a statement on this DBAPI cursor runs outside any transaction."""
    raw = cursor.connection
    if not hasattr(raw, "in_transaction"):  # psycopg
        return bool(raw.autocommit)
    # sqlite3: outside a transaction, and the module will not BEGIN one by itself (as it
    # does before a write when ``isolation_level`` is not None, in its legacy mode).
    mode = getattr(raw, "autocommit", -1)  # Python 3.12+; -1: legacy transaction control
    if isinstance(mode, bool):
        return mode and not raw.in_transaction
    return raw.isolation_level is None and not raw.in_transaction


def _in_transaction(dbapi_connection: Any) -> bool:
    # The pool hands its proxy (whose ``info`` is its own dict) when it resets a connection.
    raw = getattr(dbapi_connection, "dbapi_connection", None) or dbapi_connection
    info = getattr(raw, "info", None)
    status = getattr(info, "transaction_status", None)
    if status is not None:  # psycopg 3: IDLE is 0
        return int(status) != 0
    return bool(getattr(raw, "in_transaction", True))


def _short(statement: str, width: int = 110) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _redemption(rid: int) -> Any:
    from poller.sources.influitive.wire import parse_redemption

    raw = {"id": rid, "reward_id": 37, "reward_name": "$25 Amazon gift card", "points": 2500,
           "quantity": 1, "stage": "requested",
           "contact": {"id": 100_000 + rid, "email": f"advocate{rid}@example.com",
                       "first_name": "Advocate", "last_name": str(rid)}}
    return parse_redemption(raw)


def ledger_path(ledger: Any, n: int, first_id: int, *,
                per_call: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Take ``n`` redemptions from new to fulfilled through ``ledger`` as the worker does.
    Returns seconds, statements and commits per redemption (the once-a-page calls' share
    included), the statements by kind per redemption, and apart: the statements and commits
    of the per-redemption calls alone (``own_*``) and the page calls' share. With
    ``per_call``, the statements of the first redemption's calls are written into it, call
    by call."""
    from poller.domain.keys import idempotency_key
    from poller.domain.states import State
    from poller.ports import Changes

    probe = StatementProbe(ledger.engine)
    owner = f"bench:{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    poll_id = ledger.start_poll(now)
    probe.reset()
    seconds = 0.0
    paged: Counter[str] = Counter()  # statements of the once-a-page calls (record, due)
    paged_commits = 0

    @contextmanager
    def call(name: str, first: bool) -> Iterator[None]:
        nonlocal seconds
        watch = first and per_call is not None
        if watch:
            probe.capture = True
            before = len(probe.texts)
        began = time.perf_counter()
        try:
            yield
        finally:
            seconds += time.perf_counter() - began
            if watch:
                assert per_call is not None
                per_call.setdefault(name, []).extend(probe.texts[before:])
                probe.capture = False

    try:
        ids = list(range(first_id, first_id + n))
        for start in range(0, n, PAGE):
            page = [_redemption(rid) for rid in ids[start:start + PAGE]]
            before, commits_before = Counter(probe.kinds), probe.commits
            with call("record (one call per page of 25)", start == 0):
                ledger.record(poll_id, page, now)
            with call("due (one call per page of 25)", start == 0):
                due = ledger.due(datetime.now(UTC), PAGE)
            paged.update(probe.kinds - before)
            paged_commits += probe.commits - commits_before
            assert [e.redemption_id for e in due] == [r.id for r in page]
            for k, (r, listed) in enumerate(zip(page, due, strict=True)):
                first = start == 0 and k == 0
                pk = listed.pk
                with call("claim_transition NEW -> ORDERING (lease taken, key saved)", first):
                    entry = ledger.claim_transition(
                        pk, owner, State.ORDERING, "ordering 25.00 USD", datetime.now(UTC),
                        300,
                        Changes(idempotency_key=idempotency_key(
                                    namespace="bench", source=r.source, redemption_id=r.id),
                                vendor="tremendous", product="AMZN-US",
                                amount=Decimal("25.00"), currency="USD",
                                ordered_at=datetime.now(UTC)),
                        expect=State.NEW)
                assert entry is not None
                with call("transition ORDERING -> ORDERED (the answer saved)", first):
                    entry = ledger.transition(
                        pk, owner, State.ORDERED, "vendor order placed", datetime.now(UTC),
                        Changes(vendor_order_id=f"ORD{r.id}",
                                message="Your $25 Amazon gift card is on its way.",
                                clear=frozenset({"next_attempt_at", "last_error"})),
                        expect=State.ORDERING)
                with call("transition ORDERED -> FULFILLED (decision saved, lease given back)",
                          first):
                    entry = ledger.transition(
                        pk, owner, State.FULFILLED, "fulfilled at Influitive",
                        datetime.now(UTC),
                        Changes(clear=frozenset({"next_attempt_at", "last_error"})),
                        expect=State.ORDERED, release=True)
                assert entry.state is State.FULFILLED
        kinds = {k: v / n for k, v in probe.kinds.items()}
        own = probe.kinds - paged
        return {"seconds": seconds / n, "statements": probe.statements / n,
                "commits": probe.commits / n, "kinds": kinds,
                "own_statements": sum(own.values()) / n,
                "own_commits": (probe.commits - paged_commits) / n,
                "paged_statements": sum(paged.values()) / n}
    finally:
        probe.close()
        ledger.finish_poll(poll_id, datetime.now(UTC), ok=True, complete=False, seen=n)


# --- pgqueuer ---------------------------------------------------------------------------------


class _CountingDriver:
    """Wraps a pgqueuer driver and counts the statements sent through it (each its own
    transaction: pgqueuer runs on an autocommit connection)."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)

    async def fetch(self, query: str, *args: object) -> Any:
        self.statements += 1
        return await self._driver.fetch(query, *args)

    async def execute(self, query: str, *args: object) -> Any:
        self.statements += 1
        return await self._driver.execute(query, *args)


def pgqueuer_available() -> bool:
    try:
        import pgqueuer  # noqa: F401
    except ImportError:
        return False
    return True


def pgqueuer_version() -> str:
    from importlib.metadata import version

    return version("pgqueuer")


class PgQueuerPeer:
    """pgqueuer installed in ``schema`` (created here; the caller drops it), driven from
    this thread on an event loop of its own, so its rounds can alternate with the ledger's."""

    def __init__(self, dsn: str, schema: str) -> None:
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._conn: Any = None
        self._driver: _CountingDriver | None = None
        self._queries: Any = None
        self._manager = uuid.uuid4()
        self._loop.run_until_complete(self._open(dsn, schema))

    async def _open(self, dsn: str, schema: str) -> None:
        import psycopg
        from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
        from pgqueuer.adapters.persistence.queries import Queries

        self._conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await self._conn.execute(f'SET search_path TO "{schema}"')
        self._driver = _CountingDriver(PsycopgDriver(self._conn))
        self._queries = Queries(self._driver)  # type: ignore[arg-type]
        await self._queries.install(create_schema=False)

    def round(self, n: int, page: int = 1) -> dict[str, float]:
        """Enqueue -> dequeue -> complete ``n`` jobs (enqueued ``page`` at a time, then each
        dequeued alone and completed): seconds, statements and commits per job."""
        return self._loop.run_until_complete(self._round(n, page))

    async def _round(self, n: int, page: int) -> dict[str, float]:
        from pgqueuer.ports.repository import EntrypointExecutionParameter

        assert self._driver is not None
        entrypoints = {"fulfil": EntrypointExecutionParameter(concurrency_limit=0)}
        payload = b"x" * 450  # about a stored redemption's size
        self._driver.statements = 0
        began = time.perf_counter()
        for start in range(0, n, page):
            size = min(page, n - start)
            if size == 1:
                await self._queries.enqueue("fulfil", payload)
            else:
                await self._queries.enqueue(["fulfil"] * size, [payload] * size, [0] * size)
            for _ in range(size):
                (job,) = await self._queries.dequeue(1, entrypoints, self._manager, None,
                                                     timedelta(seconds=300))
                await self._queries.log_jobs([(job, "successful", None)])
        took = time.perf_counter() - began
        # Autocommit: every statement is its own transaction.
        per = self._driver.statements / n
        return {"seconds": took / n, "statements": per, "commits": per}

    def close(self) -> None:
        try:
            if self._conn is not None:
                self._loop.run_until_complete(self._conn.close())
        finally:
            self._loop.close()


def psycopg_dsn(sqlalchemy_url: str) -> str:
    """A libpq DSN from the bench's SQLAlchemy URL (``postgresql+psycopg://...``)."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)

