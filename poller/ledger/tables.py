"""The ledger schema in SQLAlchemy Core; ``migrations/versions`` must build exactly this
(``tests/ledger/test_ledger_migrations.py`` compares them). Every type works alike on both
databases: times come out timezone-aware UTC, amounts as the exact ``Decimal`` that went in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from poller.domain.states import State
from poller.ledger import check_amount, check_aware, clean_text

# Named constraints: Alembic's batch mode on SQLite recreates tables by constraint name, and
# the migration can then name them identically on both databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz``; on SQLite, text always in UTC: text order is time order."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = check_aware(value, "a ledger time")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """A Decimal as its own text: ``Numeric`` is a float on SQLite and pads the scale on
    PostgreSQL, and the amount ordered must be exactly the amount decided."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else str(check_amount(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class CleanText(TypeDecorator[str]):

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else clean_text(value)


class StateType(TypeDecorator[State]):

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: State | str | None, dialect: Dialect) -> str | None:
        return None if value is None else State(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> State | None:
        return None if value is None else State(value)


def _table(name: str, *items: Any, key: str = "id") -> Table:
    """A table keyed by a ``key`` that only grows (SQLite may otherwise reuse the largest
    one after a delete)."""
    return Table(name, metadata, Column(key, Integer, primary_key=True, autoincrement=True),
                 *items, sqlite_autoincrement=True)


redemptions = _table(
    "redemptions",
    Column("source", CleanText, nullable=False),
    Column("redemption_id", CleanText, nullable=False),
    Column("state", StateType, nullable=False),
    # The raw payload as JSON text (stored_redemption.encode_json), byte for byte alike on
    # both databases; nothing queries inside it, so no JSONB.
    Column("payload", Text, nullable=False),
    # The redemption as read when recorded (poller.ledger.stored_redemption). Added and
    # filled by migration 0006; NULL only if a row was written around it.
    Column("redemption", Text),
    Column("reward_id", CleanText),
    Column("reward_name", CleanText),
    Column("email", CleanText),
    Column("vendor", CleanText),
    Column("product", CleanText),
    Column("amount", DecimalText),
    Column("currency", CleanText),
    # UNIQUE: one vendor order per key. NULLs (nothing ordered yet) do not collide.
    Column("idempotency_key", CleanText, unique=True),
    Column("vendor_order_id", CleanText),
    Column("attempts", Integer, nullable=False, default=0, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime),
    Column("hold_reason", CleanText),
    Column("last_error", CleanText),
    Column("message", CleanText),
    Column("lease_owner", CleanText),
    Column("lease_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_seen_poll", Integer),
    # When the order was first committed to (the idempotency key saved): the spend guard
    # counts the row's amount from then on. Added by migration 0002.
    Column("ordered_at", UTCDateTime),
    # A person let this one past the spend guard (``ledger approve``).
    Column("approved", Boolean, nullable=False, default=False, server_default=false()),
    # Steps started on the row (claim) and never finished (release): a worker killed or out
    # of lease mid-step. Past max_attempts the row is held. Added by migration 0004.
    Column("unfinished_steps", Integer, nullable=False, default=0, server_default=text("0")),
    # The detail and actor of the row's last guarded move (a worker's step), set by the
    # move's own UPDATE; its event row is written from them in the same statement (a CTE on
    # PostgreSQL, a trigger on SQLite). Added by migration 0005.
    Column("move_detail", CleanText),
    Column("move_actor", CleanText),
    # The exactly-once key: record() inserts with ON CONFLICT DO NOTHING on it.
    UniqueConstraint("source", "redemption_id"),
    # due(): each active state is one range scan of this index, so the finished rows that
    # pile up over the years (fulfilled, refused, closed) are never read by the worker.
    Index("ix_redemptions_state_next_attempt_at", "state", "next_attempt_at"),
    # unseen_since(): by state first, because finished rows are never seen again and an index
    # on last_seen_poll alone would walk all of them on every poll.
    Index("ix_redemptions_state_last_seen_poll", "state", "last_seen_poll"),
    # list(): newest first with a limit reads the end of this index, not the whole table.
    Index("ix_redemptions_created_at", "created_at"),
    # spent_since() and the spend guard: one currency's orders since midnight are one range
    # scan of this index, however many days of orders the table holds.
    Index("ix_redemptions_currency_ordered_at", "currency", "ordered_at"),
    key="pk",
)

events = _table(
    "events",
    Column("redemption_pk", Integer, ForeignKey("redemptions.pk"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("from_state", StateType),
    Column("to_state", StateType, nullable=False),
    Column("detail", CleanText, nullable=False),
    # Who made the transition: the worker's lease owner, or the person behind an operator
    # command. NULL on events written before migration 0003.
    Column("actor", CleanText),
    # events(pk): one redemption's story in append order, whatever the size of the history.
    Index("ix_events_redemption_pk_id", "redemption_pk", "id"),
)

polls = _table(
    "polls",
    # Poll ids only grow: last_seen_poll < poll_id means "not seen by that poll".
    # last_successful_poll() walks this key backwards to the first ok row: no index needed.
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("ok", Boolean, nullable=False, default=False, server_default=false()),
    Column("complete", Boolean, nullable=False, default=False, server_default=false()),
    Column("seen", Integer, nullable=False, default=0, server_default=text("0")),
    Column("error", CleanText),
)

cache = Table(
    "cache",
    metadata,
    # Small durable key-value store (``Cache``): vendor catalogs, webhook ids already seen.
    # Written with INSERT ... ON CONFLICT (key) DO UPDATE. Expired rows stay until
    # overwritten; reads treat them as missing.
    Column("key", CleanText, primary_key=True),
    Column("value", CleanText, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)

request_log = _table(
    "request_log",
    # One row per request sent to a rate-limited upstream (``scope``, e.g. "influitive"):
    # the shared, rolling-window request budget of every worker on this ledger.
    Column("scope", CleanText, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_request_log_scope_at", "scope", "at"),
)

# The books audit (``poller.ledger.audit``): one row per run, one per discrepancy found.
audit_runs = _table(
    "audit_runs",
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    # The period audited: orders created in [since, until).
    Column("since", UTCDateTime, nullable=False),
    Column("until", UTCDateTime, nullable=False),
    # Who ran it: "daemon", or the OS user behind `reward-poller audit`.
    Column("actor", CleanText, nullable=False),
    Column("balanced", Boolean, nullable=False),
    Column("orders", Integer, nullable=False),
    Column("matched", Integer, nullable=False),
    Column("discrepancies", Integer, nullable=False),
    # Per vendor, as JSON text (``poller.ledger.audit.vendor_summary``): counts by status, spend
    # by currency in minor units, and why a list could not be read or audited.
    Column("vendors", Text, nullable=False),
)

audit_discrepancies = _table(
    "audit_discrepancies",
    Column("run_id", Integer, ForeignKey("audit_runs.id"), nullable=False),
    Column("vendor", CleanText, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("source", CleanText),
    Column("redemption_id", CleanText),
    Column("order_id", CleanText),
    Column("detail", CleanText, nullable=False),
    Column("action", CleanText, nullable=False),
    # One run's discrepancies, in the order found.
    Index("ix_audit_discrepancies_run_id_id", "run_id", "id"),
)
