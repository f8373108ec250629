"""Schema migrations, run through Alembic from code.

``reward-poller db upgrade`` and ``open_ledger`` use these; the ``alembic`` command line
works too, from the project folder (``alembic.ini``). The scripts ship inside the package
as ``poller.migrations``, so an installed reward-poller can migrate without the source tree.
"""

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
from poller.ledger.sql import make_engine, read_transaction, safe_url, write_transaction


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic Config for the packaged scripts. ``migrations/env.py`` uses ``connection``
    as it is (inside the caller's transaction), else ``url``."""
    cfg = Config()
    location = str(resources.files("poller.migrations"))
    cfg.set_main_option("script_location", location.replace("%", "%%"))
    # Running from code: leave the application's logging alone (env.py reads this).
    cfg.attributes["configure_logger"] = False
    if url is not None:
        cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The revision this version of reward-poller needs."""
    found = _script().get_current_head()
    if found is None:  # pragma: no cover - the package always ships 0001
        raise LedgerNotMigrated("reward-poller ships no migrations: the install is broken")
    return found


@contextmanager
def _engine(url: str | Engine) -> Iterator[Engine]:
    if isinstance(url, Engine):
        yield url
        return
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


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
    """Where a ledger's schema stands against the revision this version needs."""

    current: str | None
    """None: no reward-poller tables yet."""
    head: str
    known: bool
    """False: a revision this version does not ship (a newer reward-poller migrated it)."""

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def upgrade(url: str | Engine, revision: str = "head") -> Migration:
    """Bring the database at ``url`` (or on ``engine``) up to ``revision``, in one
    transaction: on SQLite it holds the write lock, on PostgreSQL env.py takes an advisory
    lock, so processes starting together migrate one after the other, never twice. The
    revisions before and after are read inside that transaction, so they are the ones this
    call saw, even when another process migrated just before."""
    with _engine(url) as engine:
        try:
            with write_transaction(engine) as conn:
                before = MigrationContext.configure(conn).get_current_revision()
                command.upgrade(alembic_config(connection=conn), revision)
                after = MigrationContext.configure(conn).get_current_revision()
            return Migration(before=before, after=after)
        except CommandError as e:
            raise LedgerNotMigrated(
                f"cannot migrate the ledger database {safe_url(engine.url)}: {e}. "
                "Was it migrated by a newer reward-poller?"
            ) from None


def downgrade(url: str | Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (``base`` drops every ledger table)."""
    with _engine(url) as engine, write_transaction(engine) as conn:
        command.downgrade(alembic_config(connection=conn), revision)


def current(url: str | Engine) -> str | None:
    """The revision the database is at, None if it has no reward-poller schema."""
    with _engine(url) as engine, read_transaction(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_revision(url: str | Engine) -> Revision:
    """The ledger's revision, and whether this version of reward-poller knows it."""
    found = current(url)
    known = True
    if found is not None:
        try:
            known = _script().get_revision(found) is not None
        except CommandError:
            known = False
    return Revision(current=found, head=head(), known=known)


def is_up_to_date(engine: Engine) -> bool:
    with read_transaction(engine) as conn:
        heads = set(MigrationContext.configure(conn).get_current_heads())
    return heads == set(_script().get_heads())


def check(engine: Engine) -> None:
    """LedgerNotMigrated, saying what to do, unless the schema is the one this version needs."""
    if is_up_to_date(engine):
        return
    found = current(engine)
    where = f"the ledger database {safe_url(engine.url)}"
    if found is None:
        raise LedgerNotMigrated(
            f"{where} has no reward-poller tables yet: run `reward-poller db upgrade` first"
        )
    try:
        _script().get_revision(found)
    except CommandError:
        raise LedgerNotMigrated(
            f"{where} is at revision {found!r}, which this version of reward-poller does not "
            f"know (it needs {head()!r}): it was migrated by a newer reward-poller; upgrade "
            "reward-poller instead"
        ) from None
    raise LedgerNotMigrated(
        f"{where} is at revision {found!r} but this version needs {head()!r}: "
        "run `reward-poller db upgrade` first"
    )
