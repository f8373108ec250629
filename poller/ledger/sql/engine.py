"""Opening the ledger's database: the URL, the driver, the pool, the timeouts, and the
per-connection set-up of SQLite (WAL, busy timeout, write-locking transactions)."""

from __future__ import annotations

import inspect
import os
import sqlite3
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    create_engine,
    event,
    exc,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from poller.domain.errors import ConfigError
from poller.ledger import (
    LedgerNotWritable,
)
from poller.ledger.writable import sqlite_write_problem

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write before giving up. Writes are
a few milliseconds long, so reaching this means something is wrong (a stuck process)."""

PG_CONNECT_TIMEOUT_S = 10

POOL_SPARE = 4
"""Pooled connections beyond the worker's threads: the lease keeper, the poll, the request
budget, the listener and metrics take one now and then."""

PG_POOL_RECYCLE_S = 600
"""Pooled PostgreSQL connections older than this are closed and replaced at checkout."""
WRITE_OPTION = "reward_poller_write"
"""Execution option marking a connection whose transactions will write (BEGIN IMMEDIATE)."""

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
    # Here, not at the top: psycopg is only for a PostgreSQL URL (reward-poller[postgres]).
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
    assert url.database is not None
    path = Path(url.database).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"ledger.url {safe_url(url)}: no ledger file at {path}")
    writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
    query = "mode=ro" if writable else "mode=ro&immutable=1"
    uri = f"file:{quote(str(path))}?{query}"

    def connect() -> Any:
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
        problem = sqlite_write_problem(path.resolve())
        if problem is not None:
            raise LedgerNotWritable(f"cannot write the ledger {safe_url(url)}: {problem}")
        _create_private(path)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               hide_parameters=True, **(pool or {}))
        SQLITE_WRITERS[engine] = threading.RLock()

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
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")

    return engine


SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
"""One lock per SQLite file engine, held around each of its writes. SQLite admits one writer
at a time; threads of one process that meet at its lock wait in its busy handler, which
sleeps in steps of up to 100 ms. Queued on a lock of our own instead, the next writer
starts the moment the last one commits. Other processes still wait in the busy handler."""


