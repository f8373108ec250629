"""``[ledger] schema`` on PostgreSQL: the ledger's tables, Alembic's version table and every
statement live in the schema named, created by ``db upgrade``; two
ledgers in two schemas of one database are independent; a ``search_path`` in the URL (how
the other tests place their tables) no longer decides once the key is set."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from poller.cli.main import cli
from poller.core.budget import BudgetLimit
from poller.domain.model import Redemption
from poller.domain.states import State
from poller.ledger import migrate, open_ledger
from poller.ledger.budget import SqlRequestLog
from poller.ports import Changes
from tests.ledger.conftest import PG_URL, _ensure_database, pg_schema

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEDGER_TABLES = {"alembic_version", "redemptions", "events", "polls", "cache", "request_log",
                 "audit_runs", "audit_discrepancies"}


@pytest.fixture
def schemas() -> Iterator[list[str]]:
    """Names for new schemas (none created); whatever exists of them is dropped after."""
    _ensure_database(make_url(PG_URL))
    stem = f"rp_key_{uuid.uuid4().hex[:10]}"
    names = [f"{stem}_{n}" for n in range(3)]
    yield names
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        engine.dispose()


def tables(schema: str) -> set[str]:
    engine = create_engine(PG_URL)
    try:
        return set(inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


def config_file(tmp_path: Path, url: str, schema: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[influitive]
api_token = "t"
org_id = "o"

[ledger]
url = "{url}"
schema = "{schema}"
""")
    return str(path)


@pytest.mark.postgres
def test_db_upgrade_creates_the_schema_with_the_version_table_in_it(
    schemas: list[str], tmp_path: Path
) -> None:
    schema = schemas[0]
    config = config_file(tmp_path, PG_URL, schema)
    runner = CliRunner()

    missing = runner.invoke(cli, ["--config", config, "db", "current"])
    assert missing.exit_code == 1
    assert f"schema {schema}" in missing.output and "db upgrade" in missing.output

    done = runner.invoke(cli, ["--config", config, "db", "upgrade"])
    assert done.exit_code == 0, done.output
    assert f"(PostgreSQL schema {schema}) migrated from revision (none)" in done.output
    assert tables(schema) == LEDGER_TABLES
    assert "alembic_version" not in tables("public")
    assert migrate.current(PG_URL, schema=schema) == migrate.head()

    current = runner.invoke(cli, ["--config", config, "db", "current"])
    assert current.exit_code == 0
    assert f"ledger schema (PostgreSQL schema {schema}) at revision {migrate.head()} (head)" \
        in current.output


@pytest.mark.postgres
def test_two_ledgers_in_two_schemas_of_one_database_are_independent(
    schemas: list[str]
) -> None:
    first, second = schemas[0], schemas[1]
    for schema in (first, second):
        migrate.upgrade(PG_URL, schema=schema)
    one = open_ledger(PG_URL, schema=first)
    two = open_ledger(PG_URL, schema=second)
    try:
        poll = one.start_poll(T0)
        assert one.record(poll, [Redemption(id="7", raw={"id": "7"})], T0) == 1
        assert two.get("influitive", "7") is None
        assert two.list() == [] and two.counts() == {}
        # The one-statement guarded moves work in the schema too.
        entry = one.get("influitive", "7")
        assert entry is not None
        moved = one.claim_transition(entry.pk, "w", State.ORDERING, "ordering", T0, 60,
                                     Changes(idempotency_key="k7", amount=Decimal("5"),
                                             currency="USD", ordered_at=T0),
                                     expect=State.NEW)
        assert moved is not None and moved.state is State.ORDERING
        one.transition(entry.pk, "w", State.ORDERED, "placed", T0, expect=State.ORDERING)
        assert [e.to_state for e in one.events(entry.pk)] == [
            State.NEW, State.ORDERING, State.ORDERED]
        # The same redemption recorded in the other ledger is new there.
        poll_two = two.start_poll(T0)
        assert two.record(poll_two, [Redemption(id="7", raw={"id": "7"})], T0) == 1
        fresh = two.get("influitive", "7")
        assert fresh is not None and fresh.state is State.NEW
        # The request budget of each is its own.
        limit = BudgetLimit(scope="influitive", max_requests=1, window_seconds=60)
        assert SqlRequestLog(one.engine).try_take(limit, lambda: T0).taken
        assert SqlRequestLog(two.engine).try_take(limit, lambda: T0).taken
    finally:
        one.close()
        two.close()


@pytest.mark.postgres
def test_the_key_wins_over_a_search_path_in_the_url(schemas: list[str]) -> None:
    keyed = schemas[0]
    with pg_schema("path") as by_path:  # a URL whose options set search_path, as tests do
        migrate.upgrade(by_path, schema=keyed)
        assert tables(keyed) == LEDGER_TABLES
        ledger = open_ledger(by_path, schema=keyed)
        try:
            poll = ledger.start_poll(T0)
            ledger.record(poll, [Redemption(id="1", raw={"id": "1"})], T0)
        finally:
            ledger.close()
        # Nothing landed in the search_path's schema, and without the key the URL's
        # search_path still decides: an empty schema there.
        path_schema = make_url(by_path).query["options"]
        assert isinstance(path_schema, str)
        assert tables(path_schema.split("=", 1)[1]) == set()
        assert migrate.current(by_path) is None
        assert migrate.current(by_path, schema=keyed) == migrate.head()


@pytest.mark.postgres
def test_open_ledger_without_migrating_names_the_schema(schemas: list[str]) -> None:
    from poller.ledger import LedgerNotMigrated

    with pytest.raises(LedgerNotMigrated, match=f"schema {schemas[0]}.*db upgrade"):
        open_ledger(PG_URL, schema=schemas[0], migrate=False)


@pytest.mark.postgres
def test_the_alembic_command_line_takes_the_schema(
    schemas: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWARD_POLLER_LEDGER__URL", PG_URL)
    x_opts = argparse.Namespace(x=[f"schema={schemas[0]}"])
    cfg = AlembicConfig(str(ROOT / "alembic.ini"), cmd_opts=x_opts)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    assert tables(schemas[0]) == LEDGER_TABLES

    monkeypatch.setenv("REWARD_POLLER_LEDGER__SCHEMA", schemas[1])
    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    assert tables(schemas[1]) == LEDGER_TABLES


@pytest.mark.parametrize(("ledger", "message"), [
    ({"url": "postgresql://u@h/d", "schema": "Ledger"}, "ledger.schema"),
    ({"url": "postgresql://u@h/d", "schema": "pg_ledger"}, "reserved by PostgreSQL"),
    ({"url": "sqlite:///x.db", "schema": "ledger"}, "schema is for a PostgreSQL ledger"),
])
def test_a_schema_the_ledger_cannot_use_is_a_configuration_error(
    ledger: dict[str, str], message: str
) -> None:
    from poller.config import Config
    from poller.domain.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match=message):
        Config(influitive={"api_token": "tok-123456789", "org_id": "org"}, ledger=ledger)
