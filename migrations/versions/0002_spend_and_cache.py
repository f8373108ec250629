"""The spend guard's columns on redemptions, and the cache table.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-15

Written by hand to match poller/ledger/tables.py, like 0001. Plain ALTER TABLE on both
databases, no batch copy: SQLite adds and drops these columns in place (DROP COLUMN needs
SQLite 3.35 or later), so the table keeps its AUTOINCREMENT and the events' foreign key
never sees the table vanish.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("redemptions", sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=True))
    # Existing rows were never approved past a guard that did not exist yet.
    op.add_column(
        "redemptions",
        sa.Column("approved", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    # The spend guard and spent_since() ask "this currency, ordered_at since midnight": with
    # the currency first, that is one range scan of today's entries, whatever the history.
    op.create_index(
        "ix_redemptions_currency_ordered_at", "redemptions", ["currency", "ordered_at"]
    )

    op.create_table(
        "cache",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_cache"),
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"downgrading below 0002 needs SQLite 3.35 or later (ALTER TABLE DROP COLUMN); "
            f"this Python has SQLite {sqlite3.sqlite_version}"
        )
    op.drop_table("cache")
    # Before the columns: SQLite refuses to drop a column an index uses.
    op.drop_index("ix_redemptions_currency_ordered_at", table_name="redemptions")
    op.drop_column("redemptions", "approved")
    op.drop_column("redemptions", "ordered_at")
