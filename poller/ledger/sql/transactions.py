"""The three kinds of transaction every ledger call runs in, and the translation of "the
database is not there" into ``LedgerUnavailable``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import (
    exc,
)
from sqlalchemy.engine import URL, Connection, Engine

from poller.ledger import (
    LedgerUnavailable,
)
from poller.ledger.sql.engine import SQLITE_WRITERS, WRITE_OPTION, safe_url


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


def _writer(engine: Engine) -> threading.RLock | nullcontext[None]:
    return SQLITE_WRITERS.get(engine) or nullcontext()


def write_variant(engine: Engine) -> Engine:
    """``engine`` whose transactions will write (BEGIN IMMEDIATE on SQLite), for a caller
    that begins and ends the transaction itself."""
    return engine.execution_options(**{WRITE_OPTION: True})


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

