"""open_ledger: URLs, migration policy, and the errors a user sees."""

from __future__ import annotations

import subprocess
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from poller.domain.errors import ConfigError
from poller.domain.model import Redemption
from poller.ledger import LedgerNotMigrated, LedgerUnavailable, migrate, open_ledger
from poller.ledger.sql import SqlLedger, make_engine

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# Nothing listens on port 1: connecting fails at once.
UNREACHABLE = "postgresql://postgres:s3cret-pw@127.0.0.1:1/nothing"


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "mysql://root@localhost/rewards",
        "postgresql+asyncpg://postgres@localhost/rewards",
        "sqlite+aiosqlite:///x.db",
        "sqlite:////no/such/folder/ledger.db",
    ],
)
def test_an_unusable_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"ledger\.url"):
        open_ledger(url)


def test_a_config_error_does_not_echo_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        open_ledger("mysql://root:hunter2@localhost/rewards")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_urls_default_to_psycopg(scheme: str) -> None:
    engine = make_engine(f"{scheme}://postgres@127.0.0.1/x")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


def test_an_unreachable_server_is_ledger_unavailable_without_the_password() -> None:
    with pytest.raises(LedgerUnavailable) as caught:
        open_ledger(UNREACHABLE, migrate=False)
    shown = "".join(traceback.format_exception(caught.value))
    assert "s3cret-pw" not in shown
    assert "127.0.0.1:1" in str(caught.value) and "***" in str(caught.value)

    ledger = SqlLedger(make_engine(UNREACHABLE))
    try:
        with pytest.raises(LedgerUnavailable):
            ledger.ping()
        with pytest.raises(LedgerUnavailable):
            ledger.counts()
    finally:
        ledger.close()


def test_a_sqlite_file_is_created_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    ledger = open_ledger(url)
    try:
        ledger.ping()
        with ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        ledger.close()
    assert migrate.current(url) == migrate.head()
    # Opening again finds it up to date; migrate=False only checks.
    open_ledger(url, migrate=False).close()


def test_a_sqlite_path_may_start_with_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    open_ledger("sqlite:///~/home.db").close()
    assert (tmp_path / "home.db").exists()


def test_an_unmigrated_sqlite_file_with_migrate_false_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LedgerNotMigrated, match="reward-poller db upgrade"):
        open_ledger(f"sqlite:///{tmp_path / 'empty.db'}", migrate=False)


def test_an_in_memory_sqlite_ledger_works(tmp_path: Path) -> None:
    ledger = open_ledger("sqlite://")
    try:
        poll = ledger.start_poll(T0)
        assert ledger.record(poll, [Redemption(id="1")], T0) == 1
        assert ledger.get("influitive", "1") is not None
    finally:
        ledger.close()


@pytest.mark.postgres
def test_postgresql_is_never_migrated_unless_asked(empty_pg_url: str) -> None:
    with pytest.raises(LedgerNotMigrated, match="run `reward-poller db upgrade`") as caught:
        open_ledger(empty_pg_url)
    assert "has no reward-poller tables" in str(caught.value)
    assert migrate.current(empty_pg_url) is None

    ledger = open_ledger(empty_pg_url, migrate=True)
    ledger.close()
    open_ledger(empty_pg_url).close()


@pytest.mark.postgres
def test_a_database_from_a_newer_version_is_refused(empty_pg_url: str) -> None:
    migrate.upgrade(empty_pg_url)
    engine = create_engine(empty_pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(LedgerNotMigrated, match="newer reward-poller"):
        open_ledger(empty_pg_url)
    with pytest.raises(LedgerNotMigrated, match="newer reward-poller"):
        open_ledger(empty_pg_url, migrate=True)


def test_importing_the_ledger_package_does_not_load_sqlalchemy() -> None:
    code = (
        "import sys, poller.ledger, poller.ledger.memory; "
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
