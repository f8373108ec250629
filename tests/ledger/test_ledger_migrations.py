"""The Alembic migrations build exactly the schema of poller/ledger/tables.py, on both
databases, from code and from the ``alembic`` command line; each step up and down keeps
the data."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Row, inspect, text

from poller.ledger import migrate, open_ledger
from poller.ledger.sql import make_engine
from poller.ledger.tables import metadata

ROOT = Path(__file__).resolve().parents[2]
LEDGER_TABLES = {"redemptions", "events", "polls", "cache", "request_log"}
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (a new SQLite file, or a new PostgreSQL schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    url: str = request.getfixturevalue("empty_pg_url")
    return url


def _diffs(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_head_builds_exactly_the_tables_module(fresh_url: str) -> None:
    assert migrate.current(fresh_url) is None
    migrate.upgrade(fresh_url)
    assert migrate.current(fresh_url) == migrate.head()
    assert _diffs(fresh_url) == []


def test_upgrade_is_idempotent_and_downgrade_removes_everything(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    migrate.upgrade(fresh_url)
    assert _tables(fresh_url) >= LEDGER_TABLES
    migrate.downgrade(fresh_url, "base")
    assert _tables(fresh_url) & LEDGER_TABLES == set()
    assert migrate.current(fresh_url) is None
    migrate.upgrade(fresh_url)
    assert _diffs(fresh_url) == []


def _columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _indexes(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {str(i["name"]) for i in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def _execute(url: str, sql: str) -> list[Row[Any]]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _has_move_trigger(url: str) -> bool:
    if not url.startswith("sqlite"):
        return False
    names = _execute(url, "SELECT name FROM sqlite_master WHERE type = 'trigger'")
    return [tuple(n) for n in names] == [("trg_redemptions_move_event",)]


def test_0002_adds_the_spend_columns_and_the_cache_and_downgrades_keeping_the_data(
    fresh_url: str,
) -> None:
    migrate.upgrade(fresh_url, "0001")
    assert migrate.current(fresh_url) == "0001"
    # A row written by the version before, with an event pointing at it. (The time as
    # SQLite stores it; PostgreSQL reads the same text.)
    at = "'2024-05-01 12:00:00.000000'"
    _execute(
        fresh_url,
        "INSERT INTO redemptions (source, redemption_id, state, payload, amount, currency, "
        "attempts, created_at, updated_at) VALUES ('influitive', 'old', 'ordering', '{}', "
        f"'12.50', 'USD', 1, {at}, {at})",
    )
    _execute(
        fresh_url,
        f"INSERT INTO events (redemption_pk, at, to_state, detail) VALUES (1, {at}, 'new', 'x')",
    )

    migrate.upgrade(fresh_url, "0002")
    assert migrate.current(fresh_url) == "0002"
    assert {"ordered_at", "approved"} <= _columns(fresh_url, "redemptions")
    assert "ix_redemptions_currency_ordered_at" in _indexes(fresh_url, "redemptions")
    assert _columns(fresh_url, "cache") == {"key", "value", "expires_at", "updated_at"}
    migrate.upgrade(fresh_url, "0003")
    assert "actor" in _columns(fresh_url, "events")
    assert _columns(fresh_url, "request_log") == {"id", "scope", "at"}
    migrate.upgrade(fresh_url, "0004")
    assert "unfinished_steps" in _columns(fresh_url, "redemptions")
    migrate.upgrade(fresh_url, "0005")
    assert {"move_detail", "move_actor"} <= _columns(fresh_url, "redemptions")
    assert _has_move_trigger(fresh_url) is fresh_url.startswith("sqlite")
    migrate.upgrade(fresh_url, "0006")
    assert "redemption" in _columns(fresh_url, "redemptions")
    assert not {"audit_runs", "audit_discrepancies"} & _tables(fresh_url)
    migrate.upgrade(fresh_url, "0007")
    assert {"audit_runs", "audit_discrepancies"} <= _tables(fresh_url)
    ledger = open_ledger(fresh_url, migrate=False)
    try:
        old = ledger.get("influitive", "old")
        assert old is not None and old.amount == Decimal("12.50")
        assert old.ordered_at is None and old.approved is False  # the server default
        assert old.unfinished_steps == 0
        ledger.cache_put("k", "v", None)
        assert ledger.cache_get("k", T0) == "v"
        (old_event,) = ledger.events(old.pk)
        assert old_event.actor is None  # written before the column existed
        # Its payload ("{}") has no id: kept, with why it could not be read.
        assert old.redemption is None and old.unreadable == "redemption has no id"
    finally:
        ledger.close()

    migrate.downgrade(fresh_url, "0006")
    assert not {"audit_runs", "audit_discrepancies"} & _tables(fresh_url)
    migrate.downgrade(fresh_url, "0005")
    assert "redemption" not in _columns(fresh_url, "redemptions")
    assert _execute(fresh_url, "SELECT payload FROM redemptions")[0][0] == "{}"
    migrate.downgrade(fresh_url, "0004")
    assert not {"move_detail", "move_actor"} & _columns(fresh_url, "redemptions")
    assert not _has_move_trigger(fresh_url)
    migrate.downgrade(fresh_url, "0002")
    assert "unfinished_steps" not in _columns(fresh_url, "redemptions")
    assert "request_log" not in _tables(fresh_url)
    assert "actor" not in _columns(fresh_url, "events")
    assert len(_execute(fresh_url, "SELECT id FROM events WHERE redemption_pk = 1")) == 1
    migrate.downgrade(fresh_url, "0001")
    assert migrate.current(fresh_url) == "0001"
    assert "cache" not in _tables(fresh_url)
    assert not {"ordered_at", "approved"} & _columns(fresh_url, "redemptions")
    assert "ix_redemptions_currency_ordered_at" not in _indexes(fresh_url, "redemptions")
    rows = _execute(fresh_url, "SELECT pk, amount FROM redemptions")
    assert [tuple(r) for r in rows] == [(1, "12.50")]
    assert len(_execute(fresh_url, "SELECT id FROM events WHERE redemption_pk = 1")) == 1
    if fresh_url.startswith("sqlite"):
        # Altered in place, not copied: ids still only grow.
        (ddl,) = _execute(fresh_url, "SELECT sql FROM sqlite_master WHERE name = 'redemptions'")
        assert "AUTOINCREMENT" in ddl[0]

    migrate.upgrade(fresh_url)
    assert _diffs(fresh_url) == []


def test_the_alembic_command_line_config_finds_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alembic.ini + env.py: -x url= wins over REWARD_POLLER_LEDGER__URL, which wins over
    sqlalchemy.url."""
    from_env, from_x = tmp_path / "env.db", tmp_path / "x.db"
    monkeypatch.setenv("REWARD_POLLER_LEDGER__URL", f"sqlite:///{from_env}")
    monkeypatch.chdir(tmp_path)  # sqlalchemy.url's relative file would land here

    x_opts = argparse.Namespace(x=[f"url=sqlite:///{from_x}"])
    cfg = Config(str(ROOT / "alembic.ini"), cmd_opts=x_opts)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    assert from_x.exists() and not from_env.exists()

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    assert from_env.exists()
    assert not (tmp_path / "reward-poller.db").exists()
    assert _diffs(f"sqlite:///{from_env}") == []


def test_offline_sql_can_be_generated_for_postgresql() -> None:
    out = io.StringIO()
    cfg = migrate.alembic_config(url="postgresql+psycopg://u@db.invalid/x")
    cfg.output_buffer = out
    command.upgrade(cfg, "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE redemptions" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql
    assert "pg_advisory_xact_lock" not in sql  # only taken on a live connection


def test_the_fast_start_check_names_the_newest_migration() -> None:
    from poller.ledger import HEAD_REVISION
    from poller.ledger.migrate import head

    assert head() == HEAD_REVISION
