"""The SQL ledger (SQLite or PostgreSQL 15), on SQLAlchemy Core.

Concurrency, in one place:

* Every write is one short transaction. On SQLite it starts with ``BEGIN IMMEDIATE``, so a
  writer takes the write lock before reading and two processes can never deadlock upgrading
  a read lock; other writers wait (``busy_timeout``). Reads start a plain ``BEGIN`` and, in
  WAL mode, never block or get blocked by the writer.
* ``claim`` is a single compare-and-swap UPDATE: whoever's UPDATE matches the free lease
  gets the row; on PostgreSQL the loser's UPDATE re-reads the row after the winner commits
  and no longer matches.
* ``record`` inserts with ``ON CONFLICT DO NOTHING`` on (source, redemption_id), so a row
  another worker recorded first is skipped, never an error. On PostgreSQL it first takes a
  transaction advisory lock: two workers recording overlapping batches in different orders
  would otherwise each wait for a row the other inserted, a deadlock. (Recording happens
  once a poll and takes milliseconds; queueing them costs nothing.)
* A guarded ``transition`` (the move to ORDERING under the daily spend limit) adds up what
  was spent and moves the row in one transaction. SQLite's BEGIN IMMEDIATE already lets one
  writer at a time do that; on PostgreSQL guarded transitions queue on a transaction
  advisory lock first, so two workers cannot both read "60 of 75 spent" and both order 10.
  The lock is taken before the row lock and only by guarded transitions, so it cannot form
  a cycle with the others.

Time, on PostgreSQL, is the database server's: several workers on several hosts share the
ledger, and their clocks differ. Every time that one worker writes and another compares
(lease expiry and renewal, ``updated_at`` and the polls' times that the reconciliation
compares, ``next_attempt_at`` against ``due``, the request budget's entries:
``poller.ledger.budget``) is taken inside the statement (``statement_timestamp()``) or read
once per decision (``SqlLedger.now``). The ``now`` a caller passes then only anchors the
times it gives relative to it: ``next_attempt_at = now + 60 s`` is stored as the server's
time plus 60 s, ``ordered_at = now`` as the server's time. A spend guard's ``since`` is a
calendar instant (midnight UTC) and is compared as it is. SQLite is one file on one host, so
the process's clock (the ``now`` passed) is the time there; ``open_ledger(process_clock=True)``
asks for the same on PostgreSQL (a single process that moves time by hand, such as a test).
"""

from __future__ import annotations

import builtins
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    cast,
    create_engine,
    event,
    exc,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Update

from poller.domain.errors import ConfigError
from poller.domain.model import Event, LedgerEntry, Redemption
from poller.domain.states import ACTIVE, TERMINAL, State, check_transition
from poller.ledger import (
    ADMIN_OWNER,
    TIME_COLUMNS,
    IdempotencyKeyInUse,
    LedgerNotWritable,
    LedgerUnavailable,
    change_columns,
    check_aware,
    check_claim,
    check_filters,
    check_guard,
    check_limit,
    check_spend,
    clean_optional,
    clean_stored,
    clean_text,
    encode_payload,
    entry_from_columns,
    sum_amounts,
)
from poller.ledger.stored_redemption import encode_redemption
from poller.ledger.tables import CleanText, StateType, UTCDateTime
from poller.ledger.tables import cache as cache_t
from poller.ledger.tables import events as events_t
from poller.ledger.tables import polls as polls_t
from poller.ledger.tables import redemptions as red_t
from poller.ports import Changes, LeaseLost, PollRecord, SpendGuard

if TYPE_CHECKING:
    from poller.ports import Ledger

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write before giving up. Writes are
a few milliseconds long, so reaching this means something is wrong (a stuck process)."""

PG_CONNECT_TIMEOUT_S = 10

POOL_SPARE = 4
"""Pooled connections beyond the worker's threads: the lease keeper, the poll, the request
budget, the listener and metrics take one now and then."""

PG_POOL_RECYCLE_S = 600
"""Pooled PostgreSQL connections older than this are closed and replaced at checkout."""

_WRITE = "reward_poller_write"
"""Execution option marking a connection whose transactions will write (BEGIN IMMEDIATE)."""

PG_MIGRATION_LOCK = 0x72705F6D69677261
"""Advisory lock key of a migration (``db upgrade``, a SQLite-like start): PostgreSQL
processes that migrate at the same time queue on it, so the second one finds the schema
done instead of half-done."""

_PG_RECORD_LOCK = 0x72705F7265636F72
"""Advisory lock key serialising ``record`` between processes on PostgreSQL."""

_PG_SPEND_LOCK = 0x72705F7370656E64
"""Advisory lock key serialising guarded transitions (the spend check) on PostgreSQL."""

SERVER_NOW: ColumnElement[datetime] = func.statement_timestamp(type_=UTCDateTime())
"""PostgreSQL's time for one statement: when the server started it (one value however many
rows the statement reads or writes; after any lock an earlier statement of its transaction
waited for)."""

_CHUNK = 500
"""Keys per IN (...) list: far below SQLite's bound-parameter limit, whatever the batch."""

_DRIVERS = {"sqlite": {"pysqlite"}, "postgresql": {"psycopg", "psycopg2"}}


def safe_url(url: URL | str) -> str:
    """The URL as it may be shown or logged: the password replaced by ``***``."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except exc.ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def parse_url(url: str | URL) -> URL:
    """``url`` with the driver the ledger uses filled in; ConfigError naming the problem
    (never echoing a URL that could not be parsed, which may hold a password)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except exc.ArgumentError:
        # Not echoed back: an unparseable URL may still contain a password.
        raise ConfigError(
            "ledger.url is not a database URL; use sqlite:///path/to/reward-poller.db "
            "or postgresql://user@host:5432/dbname"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":  # the spelling Heroku and many tools use
        backend = "postgresql"
    if backend == "postgresql" and not driver:
        driver = "psycopg"  # SQLAlchemy's default is psycopg2, which we do not depend on
    if backend == "sqlite" and not driver:
        driver = "pysqlite"
    if backend not in _DRIVERS:
        raise ConfigError(
            f"ledger.url {safe_url(parsed)}: unsupported database {backend!r}; "
            "use sqlite:/// or postgresql://"
        )
    if driver not in _DRIVERS[backend]:
        raise ConfigError(
            f"ledger.url {safe_url(parsed)}: unsupported driver {driver!r} for {backend}; "
            f"use one of {sorted(_DRIVERS[backend])}"
        )
    return parsed.set(drivername=f"{backend}+{driver}")


def _is_memory(url: URL) -> bool:
    return (
        not url.database
        or url.database == ":memory:"
        or url.query.get("mode") == "memory"
    )


@dataclass(frozen=True, kw_only=True)
class LedgerTimeouts:
    """PostgreSQL's bounds on waiting (``[ledger]`` keys of the same names + ``_seconds``).

    The server enforces ``statement`` and ``lock`` (``lock_timeout`` also bounds the wait
    for the ledger's advisory locks); the client gives up on a connection that has not
    answered for ``statement`` plus a margin (a frozen network: the server never saw the
    query, so its own timeout cannot fire); keepalives find a peer that vanished."""

    connect_seconds: float = PG_CONNECT_TIMEOUT_S
    statement_seconds: float = 30.0
    lock_seconds: float = 10.0
    keepalive_idle_seconds: int = 30
    keepalive_interval_seconds: int = 10
    keepalive_count: int = 3

    @property
    def client_seconds(self) -> float:
        """How long the client waits for any answer before it drops the connection."""
        return self.statement_seconds + min(5.0, self.statement_seconds)


def _pg_connect_args(parsed: URL, timeouts: LedgerTimeouts) -> dict[str, Any]:
    args: dict[str, Any] = {
        # libpq takes whole seconds; 0 would mean "wait for ever".
        "connect_timeout": max(1, round(timeouts.connect_seconds)),
        "keepalives": 1,
        "keepalives_idle": timeouts.keepalive_idle_seconds,
        "keepalives_interval": timeouts.keepalive_interval_seconds,
        "keepalives_count": timeouts.keepalive_count,
        # Unacknowledged data for this long also ends the connection.
        "tcp_user_timeout": round(timeouts.client_seconds * 1000),
    }
    # What the URL itself says wins (an operator's explicit choice)...
    args = {k: v for k, v in args.items() if k not in parsed.query}
    # ...and the server-side timeouts join the URL's own ``options`` (a search_path, say)
    # unless it sets them itself.
    given = parsed.query.get("options", "")
    options = [given if isinstance(given, str) else " ".join(given)]
    # idle_in_transaction_session_timeout: a client that froze mid-transaction (its network
    # hung after the server answered) would otherwise keep its row and advisory locks for
    # as long as the server's TCP keepalive takes (two hours by default), blocking every
    # other worker on those rows; its transaction is ended once the client has given up.
    for name, seconds in (("statement_timeout", timeouts.statement_seconds),
                          ("lock_timeout", timeouts.lock_seconds),
                          ("idle_in_transaction_session_timeout", timeouts.client_seconds)):
        if name not in options[0]:
            options.append(f"-c {name}={round(seconds * 1000)}")
    args["options"] = " ".join(o for o in options if o)
    return args


def _deadline_connection(seconds: float) -> Any | None:
    """A psycopg connection class whose every wait for the server ends after ``seconds``:
    then the connection is closed (its state is unknown) and an OperationalError raised,
    which the ledger reports as LedgerUnavailable."""
    import inspect

    import psycopg
    from psycopg import errors as pg_errors

    if "timeout" not in inspect.signature(psycopg.Connection.wait).parameters:
        return None  # psycopg before 3.2: the server-side timeouts and keepalives only

    class DeadlineConnection(psycopg.Connection[Any]):
        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            try:
                return super().wait(gen, interval, seconds if timeout is None else timeout)
            except pg_errors._WaitTimeout:
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"no answer from the database server in {seconds:g} s "
                    "([ledger] statement_timeout_seconds plus a margin)"
                ) from None

    return DeadlineConnection


def make_engine(
    url: str | URL, timeouts: LedgerTimeouts | None = None, *, read_only: bool = False,
    threads: int | None = None, schema: str | None = None,
) -> Engine:
    """An engine set up for the ledger: WAL, busy timeout and write-locking transactions on
    SQLite; connect, statement and lock timeouts, keepalives, a client-side deadline and
    stale-connection checks on PostgreSQL. ConfigError if the URL cannot be used.
    ``read_only`` (SQLite): opens an existing file read-only, never creating it nor changing
    its journal mode, so a ledger on a read-only mount is read. ``threads``: threads that
    may each hold a pooled connection at once; the pool keeps that many and ``POOL_SPARE``
    more (SQLAlchemy's default of 5 otherwise). ``schema`` (PostgreSQL, ``[ledger]
    schema``): the schema every statement names its tables in (``ledger_schema``); None
    leaves the names unqualified, found through the connection's ``search_path``. Its
    errors never quote a statement's parameters (advocates' addresses, messages that may
    carry a reward link)."""
    parsed = parse_url(url)
    timeouts = timeouts or LedgerTimeouts()
    pool: dict[str, Any] = {} if threads is None else {"pool_size": threads + POOL_SPARE}
    try:
        if parsed.get_backend_name() == "sqlite":
            if schema is not None:
                raise ConfigError(
                    f"[ledger] schema = {schema!r} is for PostgreSQL; a SQLite ledger is one "
                    "file of its own: leave schema out"
                )
            if read_only and not _is_memory(parsed):
                return _sqlite_read_only_engine(parsed)
            return _sqlite_engine(parsed, pool)
        connect_args = _pg_connect_args(parsed, timeouts)
        # No ping before every checkout (one more round trip per transaction): connections
        # are replaced after PG_POOL_RECYCLE_S, before a server's or a firewall's idle
        # limit closes them, and a connection that fails anyway (server restart) is
        # invalidated with the rest of the pool by SQLAlchemy's disconnect handling, so
        # only the transaction that found it fails (LedgerUnavailable) and the next one
        # connects afresh.
        if schema is not None:
            # Every statement SQLAlchemy runs on this engine names its tables in the schema:
            # the server's search_path, and one set in the URL's options, no longer decide.
            pool["execution_options"] = {"schema_translate_map": {None: schema}}
        engine = create_engine(parsed, pool_recycle=PG_POOL_RECYCLE_S, hide_parameters=True,
                               connect_args=connect_args, **pool)
        connection_class = (_deadline_connection(timeouts.client_seconds)
                            if parsed.get_driver_name() == "psycopg" else None)
        if connection_class is not None:

            @event.listens_for(engine, "do_connect")
            def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
                return connection_class.connect(*cargs, **cparams)

        return engine
    except ImportError as e:
        raise ConfigError(
            f"ledger.url {safe_url(parsed)} needs the {e.name or 'database driver'} package: "
            "install reward-poller[postgres]"
        ) from None
    except exc.ArgumentError as e:
        raise ConfigError(f"ledger.url {safe_url(parsed)} is not usable: {e}") from None


def ledger_schema(engine: Engine | Connection) -> str | None:
    """The schema the ledger's tables are in, as ``make_engine(schema=...)`` set it; None:
    unqualified names (the connection's ``search_path``, ``public`` by default)."""
    found = engine.get_execution_options().get("schema_translate_map") or {}
    schema = found.get(None)
    return schema if isinstance(schema, str) else None


def _create_private(path: Path) -> None:
    """Create a new ledger file readable by its owner only (0600): it holds e-mail and
    postal addresses. SQLite gives its -wal, -shm and -journal files the mode of the
    database file, so they follow. An existing file keeps the mode its owner chose."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # not creatable here: sqlite3's own open reports why, with the URL
    os.close(fd)


def _sqlite_read_only_engine(url: URL) -> Engine:
    """``mode=ro`` through a SQLite URI: no file is created, nothing written. Where the
    folder cannot be written (a read-only mount) SQLite cannot make the WAL index either, so
    the file is opened ``immutable``: nothing can be changing it there."""
    from urllib.parse import quote

    assert url.database is not None
    path = Path(url.database).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"ledger.url {safe_url(url)}: no ledger file at {path}")
    writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
    query = "mode=ro" if writable else "mode=ro&immutable=1"
    uri = f"file:{quote(str(path))}?{query}"

    def connect() -> Any:
        import sqlite3

        conn = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
        conn.isolation_level = None
        return conn

    return create_engine("sqlite://", creator=connect, poolclass=StaticPool)


def _sqlite_engine(url: URL, pool: dict[str, Any] | None = None) -> Engine:
    memory = _is_memory(url)
    if memory:
        # One connection shared by everyone, or each connection would see its own empty
        # database. Fit for tests and dry runs in one thread, not for a worker.
        engine = create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False},
            hide_parameters=True,
        )
    else:
        assert url.database is not None
        # sqlite3 would take "~" literally; a user writing sqlite:///~/ledger.db means home.
        path = Path(url.database).expanduser()
        url = url.set(database=str(path))
        folder = path.resolve().parent
        if not folder.is_dir():
            raise ConfigError(
                f"ledger.url {safe_url(url)}: the folder {folder} does not exist"
            )
        from poller.ledger.access import sqlite_write_problem

        problem = sqlite_write_problem(path.resolve())
        if problem is not None:
            raise LedgerNotWritable(f"cannot write the ledger {safe_url(url)}: {problem}")
        _create_private(path)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               hide_parameters=True, **(pool or {}))
        _WRITERS[engine] = threading.RLock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite, which would BEGIN (deferred) on its
        # own before the first write; _on_begin below decides how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL: readers never block the writer nor wait for it. The mode is stored in the
            # file, so it is only switched once; synchronous stays FULL because this is the
            # record of money spent.
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if not memory and str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE) else "BEGIN")

    return engine


def _unavailable(url: URL, error: exc.DBAPIError) -> LedgerUnavailable:
    reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""
    if url.password:
        reason = reason.replace(str(url.password), "***")
    if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
        reason += (" (a lock, such as the ledger's advisory lock for recording polls or "
                   "checking spend, was held longer than [ledger] lock_timeout_seconds)")
    return LedgerUnavailable(
        f"the ledger database {safe_url(url)} is unavailable: {reason or type(error.orig).__name__}"
    )


@contextmanager
def translate_errors(url: URL) -> Iterator[None]:
    """Turn "the database is not there / not usable now" into LedgerUnavailable, whose
    message names the URL without its password and carries no SQL parameters."""
    try:
        yield
    except exc.OperationalError as e:
        raise _unavailable(url, e) from None
    except exc.DBAPIError as e:
        # A plain DatabaseError (no subclass) is a file SQLite cannot use: "file is not a
        # database", "database disk image is malformed".
        if e.connection_invalidated or type(e) is exc.DatabaseError:
            raise _unavailable(url, e) from None
        raise


_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
"""One lock per SQLite file engine, held around each of its writes. SQLite admits one writer
at a time; threads of one process that meet at its lock wait in its busy handler, which
sleeps in steps of up to 100 ms. Queued on a lock of our own instead, the next writer
starts the moment the last one commits. Other processes still wait in the busy handler."""



def _writer(engine: Engine) -> threading.RLock | nullcontext[None]:
    return _WRITERS.get(engine) or nullcontext()


def write_variant(engine: Engine) -> Engine:
    """``engine`` whose transactions will write (BEGIN IMMEDIATE on SQLite), for a caller
    that begins and ends the transaction itself."""
    return engine.execution_options(**{_WRITE: True})


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One committed-or-rolled-back transaction that will write (BEGIN IMMEDIATE on SQLite),
    on a connection from the pool."""
    with _writer(engine), translate_errors(engine.url), write_variant(engine).begin() as conn:
        yield conn


@contextmanager
def one_statement_write(engine: Engine) -> Iterator[Connection]:
    """A write that is one statement. On PostgreSQL it commits on its own (autocommit): a
    statement is atomic by itself, and BEGIN and COMMIT around it would be two more round
    trips for each of a redemption's moves. SQLite: an ordinary write transaction (its
    writer lock and BEGIN IMMEDIATE)."""
    if engine.dialect.name != "postgresql":
        with write_transaction(engine) as conn:
            yield conn
        return
    with translate_errors(engine.url), engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction (a consistent snapshot), rolled back at the end."""
    with translate_errors(engine.url), engine.connect() as conn:
        yield conn


def _entry(row: Row[Any]) -> LedgerEntry:
    return entry_from_columns(row._mapping)


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


def _spent_where(currency: str, since: datetime) -> builtins.list[ColumnElement[bool]]:
    """The rows whose amount counts as spent (``poller.ledger.counts_as_spent``, in SQL).
    Served by ix_redemptions_currency_ordered_at."""
    return [
        red_t.c.currency == currency,
        red_t.c.ordered_at >= since,
        red_t.c.state.not_in([State.REFUSED, State.PERHAPS_REFUSED]),
        not_(
            and_(red_t.c.state == State.CLOSED_UPSTREAM, red_t.c.vendor_order_id.is_(None))
        ),
    ]


def _spent(conn: Connection, where: Sequence[ColumnElement[bool]]) -> Decimal:
    # Summed here: amounts are stored as text (exact Decimals), which SQL cannot add.
    return sum_amounts(conn.execute(select(red_t.c.amount).where(*where)).scalars())


def _key_in_use(pk: int, columns: Mapping[str, Any], error: exc.IntegrityError) -> Exception:
    if "idempotency_key" in str(error.orig):
        return IdempotencyKeyInUse(
            f"redemption {pk}: idempotency key {columns.get('idempotency_key')!r} "
            "already belongs to another redemption"
        )
    return error


def _shifted(value: Any, now: Any, ledger_now: Any) -> Any:  # datetimes, or SQL expressions
    """``value``, a time the caller gave relative to its ``now``, on the ledger's clock
    (``ledger_now``): the same distance from it."""
    return value + (ledger_now - now)


def _lease_free(now: Any) -> Any:
    return or_(
        red_t.c.lease_owner.is_(None), red_t.c.lease_until.is_(None), red_t.c.lease_until < now
    )


class SqlLedger:
    """The ``Ledger`` on a SQLAlchemy engine. Build it with ``poller.ledger.open_ledger``,
    which also checks or migrates the schema."""

    def __init__(self, engine: Engine, *, process_clock: bool = False) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        # The database server's clock, shared by every worker (see the module's docstring).
        self._db_clock = self._pg and not process_clock
        # The dialect's own insert (ON CONFLICT), imported here: a SQLite worker never
        # loads the PostgreSQL dialect, a tenth of its start.
        self._insert: Any
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            self._insert = pg_insert
        else:
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
            .where(this, or_(_lease_free(now), red_t.c.lease_owner == owner))
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
        shifted: ColumnElement[datetime] = _shifted(
            value, bindparam("w_now", type_=UTCDateTime()), SERVER_NOW)
        return shifted

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

    # --- polls -------------------------------------------------------------------------

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
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_RECORD_LOCK})")
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

    # --- the worker's queries ---------------------------------------------------------

    def _select_entries(
        self, stmt: Select[Any], params: Mapping[str, Any] | None = None
    ) -> builtins.list[LedgerEntry]:
        with read_transaction(self._engine) as conn:
            return [_entry(row) for row in conn.execute(stmt, params)]

    def due(self, now: datetime, limit: int) -> builtins.list[LedgerEntry]:
        now = check_aware(now)
        at = self._now_sql()
        return self._select_entries(
            select(red_t)
            .where(
                red_t.c.state.in_(sorted(ACTIVE)),
                or_(red_t.c.next_attempt_at.is_(None), red_t.c.next_attempt_at <= at),
                _lease_free(at),
            )
            .order_by(red_t.c.pk)
            .limit(check_limit(limit)),
            {"w_now": now},
        )

    def unseen_since(
        self, poll_id: int, states: frozenset[State], *, polls: int = 1
    ) -> builtins.list[LedgerEntry]:
        if not states:
            return []
        before = poll_id
        if polls > 1:
            # A row missed ``polls`` complete polls exactly when the polls-th newest complete
            # poll up to poll_id is newer than the last poll that saw it: one short walk
            # down the polls' primary key, then the same indexed range as polls=1.
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
        # ix_redemptions_state_last_seen_poll: one range per state.
        return self._select_entries(
            select(red_t)
            .where(red_t.c.state.in_(sorted(states)), red_t.c.last_seen_poll >= poll_id)
            .order_by(red_t.c.pk)
        )

    # --- leases and transitions -------------------------------------------------------

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
        return None if row is None else _entry(row)

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
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_SPEND_LOCK})")
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
                    where = _spent_where(guard.currency, guard.since)
                    check_spend(guard, _spent(conn, [*where, red_t.c.pk != pk]))
                columns = {
                    name: _shifted(value, now, ledger_now)
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
        return _entry(new)

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
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_SPEND_LOCK})")
                row = conn.execute(stmt, params).first()
                if row is None:
                    if claim:
                        return None  # another worker holds it, or it has moved on
                    raise self._why_not_moved(conn, pk, owner, now, expect)
                if guard is not None:
                    # After the move, in its transaction: the lease and the state are
                    # checked first, and going over the limit rolls the move back.
                    where = _spent_where(guard.currency, guard.since)
                    check_spend(guard, _spent(conn, [*where, red_t.c.pk != pk]))
        except exc.IntegrityError as e:
            raise _key_in_use(pk, columns, e) from None
        return _entry(row)

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
            where.append(or_(_lease_free(now), red_t.c.lease_owner == owner))
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

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        since = check_aware(since, "since")
        with read_transaction(self._engine) as conn:
            return _spent(conn, _spent_where(clean_text(currency), since))

    # --- cache --------------------------------------------------------------------------

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
            set_={
                "value": stmt.excluded.value,
                "expires_at": stmt.excluded.expires_at,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        with write_transaction(self._engine) as conn:
            conn.execute(stmt)

    # --- reading ----------------------------------------------------------------------

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None:
        found = self._select_entries(
            select(red_t).where(
                red_t.c.source == source, red_t.c.redemption_id == redemption_id
            )
        )
        return found[0] if found else None

    def get_pk(self, pk: int) -> LedgerEntry | None:
        found = self._select_entries(select(red_t).where(red_t.c.pk == pk))
        return found[0] if found else None

    def events(self, pk: int) -> builtins.list[Event]:
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(events_t).where(events_t.c.redemption_pk == pk).order_by(events_t.c.id)
            )
            return [
                Event(at=r.at, from_state=r.from_state, to_state=r.to_state, detail=r.detail,
                      actor=r.actor)
                for r in rows
            ]

    def counts(self) -> dict[State, int]:
        """Rows per state; states with no rows are left out."""
        with read_transaction(self._engine) as conn:
            rows = conn.execute(select(red_t.c.state, func.count()).group_by(red_t.c.state))
            return {state: int(n) for state, n in rows}

    def oldest_waiting(self) -> LedgerEntry | None:
        found = self._select_entries(
            select(red_t)
            .where(red_t.c.state.not_in(sorted(TERMINAL)))
            .order_by(red_t.c.created_at, red_t.c.pk)
            .limit(1)
        )
        return found[0] if found else None

    def ping(self) -> None:
        """SELECT 1; LedgerUnavailable if the database cannot answer."""
        with read_transaction(self._engine) as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()

    def close(self) -> None:
        self._engine.dispose()

    # Last, because inside the class body its name hides the builtin ``list``.
    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
        filters: Mapping[str, Any] | None = None,
    ) -> builtins.list[LedgerEntry]:
        """Newest first. See ``poller.ledger.FILTER_KEYS`` for ``filters``."""
        wanted = check_filters(filters)
        where: builtins.list[Any] = []
        if states is not None:
            if not states:
                return []
            where.append(red_t.c.state.in_(sorted(states)))
        if "vendor" in wanted:
            where.append(red_t.c.vendor == wanted["vendor"])
        if "source" in wanted:
            where.append(red_t.c.source == wanted["source"])
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
