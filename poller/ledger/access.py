"""Whether this process can write the ledger, and if not, why, for ``reward-poller check``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import exc, insert
from sqlalchemy.engine import Engine

from poller.ledger import LedgerNotWritable, LedgerUnavailable, migrate
from poller.ledger.sql import LedgerTimeouts, SqlLedger, make_engine, parse_url, safe_url
from poller.ledger.sql.engine import is_memory, sqlite_write_problem, user, write_variant
from poller.ledger.tables import request_log


def prove_writable(engine: Engine) -> None:
    """Write a ``request_log`` row in a transaction and roll it back; LedgerNotWritable
    naming the cause when the database refuses (a read-only server or transaction, no
    privilege, a read-only SQLite file or folder)."""
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
    ok: bool
    detail: str


def check_ledger(
    url: str, *, schema: str | None = None, timeouts: LedgerTimeouts | None = None,
) -> tuple[LedgerCheck, SqlLedger | None]:
    """Connect, compare the schema's revision with this version's, and prove a write
    (rolled back); creates and migrates nothing. Returns the ledger, open, when the worker
    could use it as it is (the caller closes it). ConfigError for an unusable URL."""
    parsed = parse_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        if is_memory(parsed):
            return LedgerCheck(True, "in memory: nothing is kept between runs"), None
        assert parsed.database is not None
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
