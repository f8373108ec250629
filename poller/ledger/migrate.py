"""Schema migrations, run through Alembic from code (``reward-poller db upgrade``,
``open_ledger``); the ``alembic`` command line works too, from the project folder. The
scripts ship inside the package as ``poller.migrations``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine

from poller.ledger import LedgerNotMigrated
from poller.ledger.sql import (
    PG_MIGRATION_LOCK,
    ledger_schema,
    make_engine,
    read_transaction,
    safe_url,
    write_transaction,
)


def alembic_config(*, url: str | None = None, connection: Connection | None = None,
                   schema: str | None = None) -> Config:
    """Config for the packaged scripts. ``migrations/env.py`` uses ``connection`` as it is
    (inside the caller's transaction, in its engine's schema), else ``url`` and ``schema``."""
    cfg = Config()
    location = str(resources.files("poller.migrations"))
    cfg.set_main_option("script_location", location.replace("%", "%%"))
    # Running from code: leave the application's logging alone (env.py reads this).
    cfg.attributes["configure_logger"] = False
    for name, value in (("url", url), ("connection", connection), ("schema", schema)):
        if value is not None:
            cfg.attributes[name] = value
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The revision this version of reward-poller needs."""
    found = _script().get_current_head()
    assert found is not None  # the package always ships 0001
    return found


def _known(revision: str) -> bool:
    try:
        return _script().get_revision(revision) is not None
    except CommandError:
        return False


@contextmanager
def _engine(url: str | Engine, schema: str | None) -> Iterator[Engine]:
    if isinstance(url, Engine):
        yield url
        return
    engine = make_engine(url, schema=schema)
    try:
        yield engine
    finally:
        engine.dispose()


def _context(conn: Connection) -> MigrationContext:
    """Alembic's view of the ledger on ``conn``: its version table in the ledger's schema."""
    return MigrationContext.configure(
        conn, opts={"version_table_schema": ledger_schema(conn)})


def describe(engine: Engine) -> str:
    """The ledger as messages name it: the URL without its password, and the schema."""
    schema = ledger_schema(engine)
    return safe_url(engine.url) + ("" if schema is None else f" (schema {schema})")


def create_schema(conn: Connection) -> None:
    """PostgreSQL: create the ledger's schema unless it exists, under the migration lock
    (IF NOT EXISTS alone can still fail when two processes race)."""
    schema = ledger_schema(conn)
    if schema is None or conn.dialect.name != "postgresql":
        return
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
    quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")


@dataclass(frozen=True)
class Migration:
    """What an ``upgrade`` did: the revision before and after (None: no schema)."""

    before: str | None
    after: str | None

    @property
    def migrated(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class Revision:
    current: str | None  # None: no reward-poller tables yet
    head: str
    known: bool  # False: a revision a newer reward-poller migrated to

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def upgrade(url: str | Engine, revision: str = "head", *,
            schema: str | None = None) -> Migration:
    """Bring the database up to ``revision`` in one transaction, holding SQLite's write lock
    or PostgreSQL's migration lock, so processes starting together migrate one after the
    other, never twice; the revisions before and after are the ones this call saw.
    ``schema`` (PostgreSQL, with a URL; an engine brings its own): created if missing."""
    with _engine(url, schema) as engine:
        try:
            with write_transaction(engine) as conn:
                create_schema(conn)
                before = _context(conn).get_current_revision()
                command.upgrade(alembic_config(connection=conn), revision)
                return Migration(before=before, after=_context(conn).get_current_revision())
        except CommandError as e:
            raise LedgerNotMigrated(
                f"cannot migrate the ledger database {describe(engine)}: {e}. "
                "Was it migrated by a newer reward-poller?"
            ) from None


def downgrade(url: str | Engine, revision: str, *, schema: str | None = None) -> None:
    """Take the schema back to ``revision`` (``base`` drops every ledger table)."""
    with _engine(url, schema) as engine, write_transaction(engine) as conn:
        command.downgrade(alembic_config(connection=conn), revision)


def current(url: str | Engine, *, schema: str | None = None) -> str | None:
    with _engine(url, schema) as engine, read_transaction(engine) as conn:
        return _context(conn).get_current_revision()


def schema_revision(url: str | Engine, *, schema: str | None = None) -> Revision:
    found = current(url, schema=schema)
    return Revision(current=found, head=head(), known=found is None or _known(found))


def check(engine: Engine) -> None:
    """LedgerNotMigrated, saying what to do, unless the schema is the one this version needs."""
    state = schema_revision(engine)
    where = f"the ledger database {describe(engine)}"
    if state.at_head:
        return
    if state.current is None:
        raise LedgerNotMigrated(
            f"{where} has no reward-poller tables yet: run `reward-poller db upgrade` first"
        )
    if not state.known:
        raise LedgerNotMigrated(
            f"{where} is at revision {state.current!r}, which this version of reward-poller "
            f"does not know (it needs {state.head!r}): it was migrated by a newer "
            "reward-poller; upgrade reward-poller instead"
        )
    raise LedgerNotMigrated(
        f"{where} is at revision {state.current!r} but this version needs {state.head!r}: "
        "run `reward-poller db upgrade` first"
    )
