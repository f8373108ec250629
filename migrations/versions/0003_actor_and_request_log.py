"""Who made each transition, and the Influitive request log behind the request budget.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

``events.actor``: the worker's lease owner, or the person who ran an operator command
(``ledger refuse --by NAME``, else the OS user). Older events keep NULL.

``request_log``: one row per request sent to a rate-limited upstream (Influitive's firewall
allows a fixed number of requests per IP in any rolling window). Every worker on the same
ledger shares one egress address, so they share one budget: they count each other's rows.
Rows older than the window are pruned by whoever takes the next request.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("actor", sa.Text(), nullable=True))
    op.create_table(
        "request_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_request_log"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_request_log_scope_at", "request_log", ["scope", "at"])


def downgrade() -> None:
    op.drop_index("ix_request_log_scope_at", table_name="request_log")
    op.drop_table("request_log")
    op.drop_column("events", "actor")
