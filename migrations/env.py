"""Alembic environment for the reward-poller ledger.

Where the database URL comes from, first match wins:

1. ``config.attributes["connection"]``: an open connection, already inside a transaction
   (``poller.ledger.migrate`` passes one, so migrating uses the ledger's own engine);
2. ``config.attributes["url"]``;
3. ``alembic -x url=...``;
4. the environment variable ``REWARD_POLLER_LEDGER__URL`` (the same one the app reads);
5. ``sqlalchemy.url`` in ``alembic.ini``.

The PostgreSQL schema (``[ledger] schema``) comes with the connection's engine in case 1,
else from ``config.attributes["schema"]``, ``alembic -x schema=...`` or
``REWARD_POLLER_LEDGER__SCHEMA``; none: unqualified names (the ``search_path``). The
ledger's tables and Alembic's version table are created in it, and the migration's own
statements find their tables there (``search_path`` set for the migration's transaction).
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from poller.ledger.migrate import create_schema
from poller.ledger.sql import PG_MIGRATION_LOCK, ledger_schema, make_engine, write_transaction
from poller.ledger.tables import metadata

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


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


def _schema() -> str | None:
    schema = (
        config.attributes.get("schema")
        or context.get_x_argument(as_dictionary=True).get("schema")
        or os.environ.get("REWARD_POLLER_LEDGER__SCHEMA")
    )
    return str(schema) if schema else None


def _run(connection: Connection) -> None:
    schema = ledger_schema(connection)
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table_schema=schema,
    )
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        if schema is not None:
            create_schema(connection)
            # Statements a migration writes out (ALTER TABLE ... by name, a trigger or a
            # function's body) are not rewritten by the engine's schema_translate_map:
            # for this transaction, unqualified names mean the ledger's schema.
            quoted = connection.dialect.identifier_preparer.quote_identifier(schema)
            connection.exec_driver_sql(f"SET LOCAL search_path TO {quoted}")
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
        version_table_schema=_schema(),
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
    engine = make_engine(_url(), schema=_schema())
    try:
        with write_transaction(engine) as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
