"""The ledger: redemptions, their events, and polls.

Revision ID: 0001
Revises:
Create Date: 2024-11-21

Written by hand to match poller/ledger/tables.py; tests/ledger compares them. Types are the
plain SQL ones (the TypeDecorators in tables.py only convert values in Python), so this file
never changes when that code does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "redemptions",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("redemption_id", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("reward_id", sa.Text(), nullable=True),
        sa.Column("reward_name", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("vendor", sa.Text(), nullable=True),
        sa.Column("product", sa.Text(), nullable=True),
        sa.Column("amount", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("vendor_order_id", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_poll", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_redemptions"),
        sa.UniqueConstraint(
            "source", "redemption_id", name="uq_redemptions_source_redemption_id"
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_redemptions_idempotency_key"),
        sqlite_autoincrement=True,
    )
    # Why each index exists: see poller/ledger/tables.py.
    op.create_index(
        "ix_redemptions_state_next_attempt_at", "redemptions", ["state", "next_attempt_at"]
    )
    op.create_index(
        "ix_redemptions_state_last_seen_poll", "redemptions", ["state", "last_seen_poll"]
    )
    op.create_index("ix_redemptions_created_at", "redemptions", ["created_at"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("redemption_pk", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["redemption_pk"], ["redemptions.pk"], name="fk_events_redemption_pk_redemptions"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_redemption_pk_id", "events", ["redemption_pk", "id"])

    op.create_table(
        "polls",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("complete", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("seen", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_polls"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("polls")
    op.drop_index("ix_events_redemption_pk_id", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_redemptions_created_at", table_name="redemptions")
    op.drop_index("ix_redemptions_state_last_seen_poll", table_name="redemptions")
    op.drop_index("ix_redemptions_state_next_attempt_at", table_name="redemptions")
    op.drop_table("redemptions")
