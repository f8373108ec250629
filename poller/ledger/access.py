"""Whether this process can write the ledger, and if not, why, in words a person can act on.

``sqlite_write_problem`` (``poller.ledger.writable``) names the SQLite file or folder this
user cannot write, and the user, before SQLite is asked. ``prove_writable`` writes a row in
a transaction it rolls back, and ``check_ledger`` puts it all together for
``reward-poller check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import exc, insert
from sqlalchemy.engine import Engine

from poller.ledger import LedgerNotWritable, LedgerUnavailable, migrate
from poller.ledger.sql import (
    LedgerTimeouts,
    SqlLedger,
    make_engine,
    parse_url,
    safe_url,
    write_variant,
)
from poller.ledger.tables import request_log
from poller.ledger.writable import sqlite_write_problem, user

__all__ = ["LedgerCheck", "check_ledger", "prove_writable", "sqlite_write_problem", "user"]


def prove_writable(engine: Engine) -> None:
    """Write one row in a transaction and roll it back; LedgerNotWritable naming the cause
    when the database refuses (a read-only server or transaction, no privilege, a read-only
    SQLite file or folder). Nothing is kept. The ledger's tables must exist (a
    ``request_log`` row is written)."""
    try:
        with write_variant(engine).connect() as conn:
            transaction = conn.begin()
            try:
                conn.execute(insert(request_log).values(
                    scope="reward-poller check", at=datetime.now(UTC)))
            finally:
                transaction.rollback()
    except exc.DBAPIError as e:
        reason = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else ""
        if engine.url.password:
            reason = reason.replace(str(engine.url.password), "***")
        raise LedgerNotWritable(
            f"the ledger database {safe_url(engine.url)} refuses a write by user {user()}: "
            f"{reason or type(e.orig).__name__}") from None


@dataclass(frozen=True)
class LedgerCheck:
    """``reward-poller check`` on the ledger: whether it can be used as it is, and why."""

    ok: bool
    detail: str


def check_ledger(
    url: str, *, schema: str | None = None, timeouts: LedgerTimeouts | None = None,
) -> tuple[LedgerCheck, SqlLedger | None]:
    """Connect, read the schema's revision against the one this version needs, and prove a
    write (rolled back). Creates and migrates nothing. Returns the ledger, open, when it is
    ready for the worker as it is (the caller closes it), else None. ConfigError for a URL
    that cannot be used."""
    parsed = parse_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        if not parsed.database or parsed.database == ":memory:" or (
                parsed.query.get("mode") == "memory"):
            return LedgerCheck(True, "in memory: nothing is kept between runs"), None
        path = Path(parsed.database).expanduser().resolve()
        problem = sqlite_write_problem(path)
        if problem is not None:
            return LedgerCheck(False, f"{problem}; `run` fails the same way"), None
        if not path.exists():
            return LedgerCheck(True, f"no ledger yet: the first `run` creates {path}"), None
    engine = make_engine(parsed, timeouts, schema=schema)
    try:
        where = migrate.describe(engine)
        state = migrate.schema_revision(engine)
        if not state.known:
            return LedgerCheck(False, (
                f"{where} is at revision {state.current}, newer than this version of "
                f"reward-poller knows (it needs {state.head}): upgrade reward-poller")), None
        if not state.at_head:
            found = ("has no reward-poller tables yet" if state.current is None
                     else f"is at revision {state.current}")
            if sqlite:
                return LedgerCheck(True, f"{where} {found}; the next `run` migrates it to "
                                         f"{state.head}"), None
            return LedgerCheck(False, f"{where} {found} (this version needs {state.head}): "
                                      "run `reward-poller db upgrade`"), None
        prove_writable(engine)
    except (LedgerUnavailable, LedgerNotWritable) as e:
        engine.dispose()
        return LedgerCheck(False, str(e)), None
    except BaseException:
        engine.dispose()
        raise
    return (LedgerCheck(True, f"{where}: revision {state.head} (up to date), writable (a "
                              "write tried and rolled back)"),
            SqlLedger(engine))
