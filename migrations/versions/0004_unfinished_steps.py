"""Steps started on a redemption and never finished.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

``redemptions.unfinished_steps``: ``claim`` adds one, a step that finishes (``release``)
sets it back to 0. A row whose steps keep dying (the process is killed, or the lease runs
out during a slow vendor call) is held after ``max_attempts`` instead of being tried for
ever. Existing rows start at 0. A plain ADD COLUMN on both databases.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "redemptions",
        sa.Column("unfinished_steps", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"downgrading below 0004 needs SQLite 3.35 or later (ALTER TABLE DROP COLUMN); "
            f"this Python has SQLite {sqlite3.sqlite_version}"
        )
    op.drop_column("redemptions", "unfinished_steps")
