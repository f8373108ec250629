"""The books audit: one row per run, and the discrepancies it found.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

``audit_runs``: when a run (``reward-poller audit``, or the daemon's scheduled one) read
the vendors' order lists, the period it covered, who ran it, whether the books balanced, the
totals, and a JSON summary per vendor. ``audit_discrepancies``: one row per discrepancy,
naming the vendor, its kind, the redemption and the order, and what to do (docs/audit.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("balanced", sa.Boolean(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("discrepancies", sa.Integer(), nullable=False),
        sa.Column("vendors", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_runs"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "audit_discrepancies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("vendor", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("redemption_id", sa.Text(), nullable=True),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_discrepancies"),
        sa.ForeignKeyConstraint(["run_id"], ["audit_runs.id"],
                                name="fk_audit_discrepancies_run_id_audit_runs"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_discrepancies_run_id_id", "audit_discrepancies",
                    ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_discrepancies_run_id_id", table_name="audit_discrepancies")
    op.drop_table("audit_discrepancies")
    op.drop_table("audit_runs")
