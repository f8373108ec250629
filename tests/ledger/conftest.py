"""Fixtures for the ledger tests: one ``ledger`` fixture over memory, SQLite and PostgreSQL.

PostgreSQL: the server at ``REWARD_POLLER_TEST_PG_URL`` (default: local, user postgres,
database ``reward_poller_test``, created if missing). Each test session works in its own
schema inside that database (via ``search_path`` in the URL), built by the Alembic
migrations and dropped at the end, so two test runs at once do not empty each other's
tables. A server that is down fails the tests, it does not skip them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import URL, make_url

from poller.ledger import migrate, open_ledger
from poller.ledger.memory import MemoryLedger
from poller.ledger.sql import SqlLedger

PG_URL = os.environ.get(
    "REWARD_POLLER_TEST_PG_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/reward_poller_test",
)

def _fail_unreachable(url: URL, error: exc.DBAPIError) -> None:
    pytest.fail(
        f"PostgreSQL is not reachable at {url.render_as_string(hide_password=True)}: "
        f"{error.orig}. Start it (127.0.0.1:5432, trust auth) or point "
        "REWARD_POLLER_TEST_PG_URL at a server where the tests may create a database.",
        pytrace=False,
    )


def _ensure_database(url: URL) -> None:
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not found:
                # Another test session may create it between the check and here.
                with suppress(exc.ProgrammingError):
                    conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
    except exc.OperationalError as e:
        _fail_unreachable(url, e)
    finally:
        admin.dispose()


@contextmanager
def pg_schema(prefix: str = "t") -> Iterator[str]:
    """A URL whose connections work in a new, empty schema of the test database; the schema
    is dropped afterwards."""
    base = make_url(PG_URL)
    _ensure_database(base)
    schema = f"rp_{prefix}_{uuid.uuid4().hex[:12]}"
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except exc.OperationalError as e:
        _fail_unreachable(base, e)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The session's PostgreSQL schema, migrated to head with Alembic."""
    with pg_schema("session") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL schema (no tables at all), dropped after the test."""
    with pg_schema("t") as url:
        yield url


def _empty_pg(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "TRUNCATE events, redemptions, polls, cache, request_log, audit_discrepancies, "
                "audit_runs RESTART IDENTITY CASCADE"
            )
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def ledger(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[MemoryLedger | SqlLedger]:
    """Each contract test runs once per ledger."""
    kind: str = request.param
    if kind == "memory":
        yield MemoryLedger()
        return
    if kind == "sqlite":
        sql = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        url: str = request.getfixturevalue("pg_url")
        _empty_pg(url)
        # The contract moves time by hand (``now`` given to each call): on PostgreSQL the
        # ledger is asked to go by it, as SQLite does. The server's clock, which a shared
        # ledger goes by otherwise, is tested in test_ledger_clock.py.
        sql = open_ledger(url, process_clock=True)
    try:
        yield sql
    finally:
        sql.close()
