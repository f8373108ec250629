"""Fixtures for the integration tests: real SQL ledgers (a SQLite file, a PostgreSQL schema)
under the worker, with fakes or the local stand-ins around it.

PostgreSQL: the server at ``REWARD_POLLER_TEST_PG_URL`` (default: local, user postgres,
database ``reward_poller_test``, created if missing), in a schema of its own per test,
migrated with Alembic and dropped at the end. A server that is down fails the tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import make_url

from poller.ledger import migrate

PG_URL = os.environ.get(
    "REWARD_POLLER_TEST_PG_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/reward_poller_test",
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated PostgreSQL schema of its own, dropped after the test."""
    base = make_url(PG_URL)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                               {"n": base.database}):
                with suppress(exc.ProgrammingError):  # another session created it first
                    conn.exec_driver_sql(f'CREATE DATABASE "{base.database}"')
    except exc.OperationalError as e:
        pytest.fail(f"PostgreSQL is not reachable at {base.render_as_string()}: {e.orig}",
                    pytrace=False)
    finally:
        admin.dispose()
    schema = f"rp_int_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    try:
        migrate.upgrade(rendered)
        yield rendered
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
