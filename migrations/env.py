"""Alembic environment for the reward-poller ledger.

Where the database URL comes from, first match wins:

1. ``config.attributes["connection"]``: an open connection, already inside a transaction
   (``poller.ledger.migrate`` passes one, so migrating uses the ledger's own engine);
2. ``config.attributes["url"]``;
3. ``alembic -x url=...``;
4. the environment variable ``REWARD_POLLER_LEDGER__URL`` (the same one the app reads);
5. ``sqlalchemy.url`` in ``alembic.ini``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from poller.ledger.sql import make_engine, write_transaction
from poller.ledger.tables import metadata

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Any constant unique to this application: PostgreSQL processes that migrate at the same
# time queue on it, so the second one finds the schema done instead of half-done.
_PG_MIGRATION_LOCK = 0x72705F6D69677261


def _url() -> str:
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("REWARD_POLLER_LEDGER__URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit(
            "no database URL: pass -x url=..., set REWARD_POLLER_LEDGER__URL "
            "or sqlalchemy.url in alembic.ini"
        )
    return str(url)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    # The caller's transaction is already open, so Alembic runs every step inside it.
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # The ledger's own engine: WAL and BEGIN IMMEDIATE on SQLite, so a migration waits for
    # running workers' writes instead of failing on a lock.
    engine = make_engine(_url())
    try:
        with write_transaction(engine) as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
