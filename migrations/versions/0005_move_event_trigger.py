"""A worker's move is one statement on SQLite too.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

``redemptions.move_detail`` and ``redemptions.move_actor``: the detail and the actor of the
row's last guarded move (the worker's own steps: a claim with the idempotency key, the
vendor's answer, the decision). The move sets them in the same UPDATE that changes the
state; its event row is written from them, on PostgreSQL by the same statement (a CTE), on
SQLite by the trigger ``trg_redemptions_move_event``, which fires only for an UPDATE that
sets ``move_detail``. The UPDATE and the event are then one statement, atomic on its own,
and a move needs no BEGIN, INSERT and COMMIT around it. Operator commands and other
transitions write their event rows themselves and never set these columns. Existing rows
start with NULL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGER = """
CREATE TRIGGER trg_redemptions_move_event AFTER UPDATE OF move_detail ON redemptions
BEGIN
    INSERT INTO events (redemption_pk, at, from_state, to_state, detail, actor)
    VALUES (NEW.pk, NEW.updated_at, OLD.state, NEW.state, NEW.move_detail, NEW.move_actor);
END
"""


def upgrade() -> None:
    op.add_column("redemptions", sa.Column("move_detail", sa.Text(), nullable=True))
    op.add_column("redemptions", sa.Column("move_actor", sa.Text(), nullable=True))
    if op.get_context().dialect.name == "sqlite":
        op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        if sqlite3.sqlite_version_info < (3, 35):
            raise RuntimeError(
                f"downgrading below 0005 needs SQLite 3.35 or later (ALTER TABLE DROP "
                f"COLUMN); this Python has SQLite {sqlite3.sqlite_version}"
            )
        op.execute("DROP TRIGGER IF EXISTS trg_redemptions_move_event")
    op.drop_column("redemptions", "move_actor")
    op.drop_column("redemptions", "move_detail")
