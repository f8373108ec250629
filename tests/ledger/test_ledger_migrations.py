"""The Alembic migrations build exactly the schema of poller/ledger/tables.py, on both
databases, from code and from the ``alembic`` command line."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from poller.ledger import migrate
from poller.ledger.sql import make_engine
from poller.ledger.tables import metadata

ROOT = Path(__file__).resolve().parents[2]
LEDGER_TABLES = {"redemptions", "events", "polls"}


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
