"""Opening the ledger's database (the URL, the driver, the pool, the timeouts, SQLite's
per-connection set-up), the transactions every ledger call runs in, and why a SQLite file
cannot be written."""

from __future__ import annotations

import inspect
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Column, MetaData, String, Table, create_engine, event, exc, select
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from poller.domain.errors import ConfigError
from poller.ledger import LedgerNotWritable, LedgerUnavailable

# Keys of the ledger's PostgreSQL advisory locks (``pg_advisory_xact_lock``, held to the
# commit): processes migrating, recording, or checking spend queue on them.
PG_MIGRATION_LOCK = 0x72705F6D69677261
RECORD_LOCK = 0x72705F7265636F72
SPEND_LOCK = 0x72705F7370656E64

# A SQLite writer waits this long for another process's write: writes take milliseconds,
# so reaching it means a stuck process.
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
# Pooled connections beyond the worker's threads: the lease keeper, the poll, the request
# budget, the listener and metrics take one now and then.
POOL_SPARE = 4
# Pooled PostgreSQL connections older than this are replaced at checkout.
PG_POOL_RECYCLE_S = 600
WRITE_OPTION = "reward_poller_write"  # marks a connection whose transactions write

_DRIVERS = {"sqlite": {"pysqlite"}, "postgresql": {"psycopg", "psycopg2"}}


def safe_url(url: URL | str) -> str:
    """The URL as it may be shown or logged: the password replaced by ``***``."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except exc.ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def parse_url(url: str | URL) -> URL:
    """``url`` with the ledger's driver filled in; ConfigError naming the problem."""
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
    # Named, for PostgreSQL: SQLAlchemy's default is psycopg2, which we do not depend on.
    driver = driver or {"postgresql": "psycopg", "sqlite": "pysqlite"}.get(backend, "")
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


def is_memory(url: URL) -> bool:
    return not url.database or url.database == ":memory:" or url.query.get("mode") == "memory"


@dataclass(frozen=True, kw_only=True)
class LedgerTimeouts:
    """PostgreSQL's bounds on waiting (``[ledger]`` keys of the same names + ``_seconds``).

    The server enforces ``statement`` and ``lock`` (which also bounds the advisory locks);
    the client drops a connection silent for ``statement`` plus a margin (a frozen network:
    the server never saw the query); keepalives find a peer that vanished."""

    connect_seconds: float = PG_CONNECT_TIMEOUT_S
    statement_seconds: float = 30.0
    lock_seconds: float = 10.0
    keepalive_idle_seconds: int = 30
    keepalive_interval_seconds: int = 10
    keepalive_count: int = 3

    @property
    def client_seconds(self) -> float:
        return self.statement_seconds + min(5.0, self.statement_seconds)


def _pg_connect_args(parsed: URL, timeouts: LedgerTimeouts) -> dict[str, Any]:
    args: dict[str, Any] = {
        # libpq takes whole seconds; 0 would mean "wait for ever".
        "connect_timeout": max(1, round(timeouts.connect_seconds)),
        "keepalives": 1,
        "keepalives_idle": timeouts.keepalive_idle_seconds,
        "keepalives_interval": timeouts.keepalive_interval_seconds,
        "keepalives_count": timeouts.keepalive_count,
        "tcp_user_timeout": round(timeouts.client_seconds * 1000),
    }
    # What the URL itself says wins; the server-side timeouts join its own ``options``
    # unless it sets them itself.
    args = {k: v for k, v in args.items() if k not in parsed.query}
    given = parsed.query.get("options", "")
    options = [given if isinstance(given, str) else " ".join(given)]
    # idle_in_transaction_session_timeout: a client frozen mid-transaction would otherwise
    # keep its row and advisory locks for as long as the server's TCP keepalive takes (two
    # hours by default); its transaction ends once the client has given up.
    for name, seconds in (("statement_timeout", timeouts.statement_seconds),
                          ("lock_timeout", timeouts.lock_seconds),
                          ("idle_in_transaction_session_timeout", timeouts.client_seconds)):
        if name not in options[0]:
            options.append(f"-c {name}={round(seconds * 1000)}")
    args["options"] = " ".join(o for o in options if o)
    return args


def _deadline_connection(seconds: float) -> Any | None:
    """A psycopg connection class whose every wait for the server ends after ``seconds``,
    closing the connection (its state is unknown) with an OperationalError."""
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
    """An engine set up for the ledger; ConfigError if the URL cannot be used.
    ``read_only`` (SQLite): an existing file opened read-only, never created nor changed
    (a ledger on a read-only mount). ``threads``: the pool keeps that many connections and
    ``POOL_SPARE`` more. ``schema``: as ``open_ledger``'s. Errors never quote a statement's
    parameters (advocates' addresses, messages that may carry a reward link)."""
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
            if read_only and not is_memory(parsed):
                return _sqlite_read_only_engine(parsed)
            return _sqlite_engine(parsed, pool)
        # No ping before every checkout (one more round trip per transaction): connections
        # are replaced before a server's or firewall's idle limit, and one that fails anyway
        # invalidates the pool, so only the transaction that found it fails.
        if schema is not None:
            pool["execution_options"] = {"schema_translate_map": {None: schema}}
        engine = create_engine(parsed, pool_recycle=PG_POOL_RECYCLE_S, hide_parameters=True,
                               connect_args=_pg_connect_args(parsed, timeouts), **pool)
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
    """The schema ``make_engine(schema=...)`` set; None: the connection's ``search_path``."""
    found = engine.get_execution_options().get("schema_translate_map") or {}
    schema = found.get(None)
    return schema if isinstance(schema, str) else None


def stored_revision(engine: Engine) -> str | None:
    """The schema's one revision, read with one plain SELECT; None if there is none, or
    several, or it cannot be read (migrating or checking then says why)."""
    schema = ledger_schema(engine)
    version = Table("alembic_version", MetaData(), Column("version_num", String(32)),
                    schema=schema)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(version.c.version_num)).scalars().all()
    except exc.SQLAlchemyError:  # no such table, or no database to read
        return None
    return rows[0] if len(rows) == 1 else None


def _create_private(path: Path) -> None:
    """A new ledger file is made readable by its owner only (0600): it holds e-mail and
    postal addresses, and SQLite gives its journal files the same mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return  # it exists (its mode is its owner's), or sqlite3's open reports why


def _sqlite_read_only_engine(url: URL) -> Engine:
    """``mode=ro``; where the folder is not writable (a read-only mount) SQLite cannot make
    the WAL index either, so the file is opened ``immutable``: nothing can change it."""
    assert url.database is not None
    path = Path(url.database).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"ledger.url {safe_url(url)}: no ledger file at {path}")
    writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
    uri = f"file:{quote(str(path))}?{'mode=ro' if writable else 'mode=ro&immutable=1'}"

    def connect() -> Any:
        conn = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
        conn.isolation_level = None
        return conn

    return create_engine("sqlite://", creator=connect, poolclass=StaticPool)


def _sqlite_engine(url: URL, pool: dict[str, Any]) -> Engine:
    memory = is_memory(url)
    if memory:
        # One connection shared by everyone, or each would see its own empty database.
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
            raise ConfigError(f"ledger.url {safe_url(url)}: the folder {folder} does not exist")
        problem = sqlite_write_problem(path.resolve())
        if problem is not None:
            raise LedgerNotWritable(f"cannot write the ledger {safe_url(url)}: {problem}")
        _create_private(path)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               hide_parameters=True, **pool)
        SQLITE_WRITERS[engine] = threading.RLock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Transaction control taken from pysqlite, which would BEGIN (deferred) by itself
        # before the first write: _on_begin decides how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL: readers never block the writer nor wait for it. synchronous stays FULL:
            # this is the record of money spent.
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


# One lock per SQLite file engine, held around each of its writes. Threads of one process
# meeting at SQLite's lock wait in its busy handler, which sleeps in steps of up to 100 ms;
# queued on our own lock, the next writer starts the moment the last one commits.
SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


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
    """"The database is not there / not usable now" becomes LedgerUnavailable."""
    try:
        yield
    except exc.OperationalError as e:
        raise _unavailable(url, e) from None
    except exc.DBAPIError as e:
        # A plain DatabaseError is a file SQLite cannot use ("file is not a database").
        if e.connection_invalidated or type(e) is exc.DatabaseError:
            raise _unavailable(url, e) from None
        raise


def write_variant(engine: Engine) -> Engine:
    """``engine`` whose transactions write (BEGIN IMMEDIATE on SQLite)."""
    return engine.execution_options(**{WRITE_OPTION: True})


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    writer = SQLITE_WRITERS.get(engine) or nullcontext()
    with writer, translate_errors(engine.url), write_variant(engine).begin() as conn:
        yield conn


@contextmanager
def one_statement(engine: Engine, *, write: bool = True) -> Iterator[Connection]:
    """A call that is one statement. On PostgreSQL it runs on its own (autocommit): a
    statement is atomic and sees one snapshot by itself, and BEGIN with COMMIT or ROLLBACK
    around it would be two more round trips. On SQLite, an ordinary transaction."""
    if engine.dialect.name != "postgresql":
        with (write_transaction if write else read_transaction)(engine) as conn:
            yield conn
        return
    with translate_errors(engine.url), engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction (a consistent snapshot), rolled back at the end."""
    with translate_errors(engine.url), engine.connect() as conn:
        yield conn


def user() -> str:
    """The user this process runs as (effective uid), by name where it has one."""
    uid = os.geteuid()
    try:
        import pwd  # here, not at the top: POSIX only, absent on Windows

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # a container's uid without a passwd entry
        return f"uid {uid}"


def _writable(path: Path) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0),
                     effective_ids=effective)


def sqlite_write_problem(path: Path) -> str | None:
    """Why this process could not write (or create) the SQLite ledger at ``path``, naming
    the folder and the user, which SQLite's "unable to open database file" does not: it
    also writes its journal (``-wal``, ``-shm``) next to the file. Root passes the
    permission checks, as in SQLite."""
    folder = path.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return (f"the folder {folder} is on a read-only file system: the ledger needs a "
                "writable place (move ledger.url, or mount it read-write)")
    fix = "(chown or chmod it, or point ledger.url elsewhere)"
    if path.exists() and not _writable(path):
        return f"the ledger file {path} is not writable by user {user()} {fix}"
    if _writable(folder):
        return None
    journal = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
    if path.exists() and all(j.exists() and _writable(j) for j in journal):
        return None  # the journal files exist already and can be written: enough for SQLite
    what = ("create the ledger file" if not path.exists()
            else "create its journal files (-wal, -shm) next to the ledger")
    return f"the folder {folder} is not writable by user {user()}: SQLite must {what} {fix}"
