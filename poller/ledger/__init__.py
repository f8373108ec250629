"""The ledger: ``open_ledger(url)`` gives the SQL ledger (SQLite or PostgreSQL);
``poller.ledger.memory`` is its in-memory twin for fast unit tests. Both apply the rules
below, and ``tests/ledger`` runs one contract suite against both.

Importing this package imports no SQL library (the CLI's ``--help``, the core's unit tests):
SQLAlchemy is loaded by ``open_ledger`` and ``poller.ledger.sql``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from poller.domain.errors import PollerError
from poller.domain.model import LedgerEntry, Redemption
from poller.domain.states import State, check_transition
from poller.ledger.stored_redemption import decode_redemption, encode_json, encode_redemption
from poller.logs import redactor
from poller.ports import Changes, LeaseLost, Ledger, SpendGuard, SpendLimitReached

if TYPE_CHECKING:
    from poller.ledger.sql import LedgerTimeouts, SqlLedger


class LedgerUnavailable(PollerError):
    """The database cannot be reached or used right now; retrying later may work. The
    message never carries the URL's password."""


class LedgerNotWritable(PollerError):
    """This process may not write the ledger (file, folder, mount, server or role); the
    message names the cause."""


class LedgerNotMigrated(PollerError):
    """No reward-poller schema, or not this version's: a person must act (``reward-poller
    db upgrade``, or upgrade reward-poller), so commands exit 1, not as a config error."""


class IdempotencyKeyInUse(PollerError):
    """A key another redemption already has: keys derive from the redemption, so a bug."""


ADMIN_OWNER = "admin"

FILTER_KEYS = frozenset({"vendor", "reward", "email", "since", "until", "source"})
"""Keys ``Ledger.list(filters=...)`` understands. ``reward`` matches the reward id or name,
``email`` matches case-insensitively (SQLite folds ASCII letters only), ``since`` is
inclusive and ``until`` exclusive on ``created_at``; the others match exactly."""

# ``attempts`` and ``approved`` are NOT NULL, so they cannot be cleared.
CLEARABLE_COLUMNS = frozenset({
    "idempotency_key", "vendor", "product", "amount", "currency", "vendor_order_id",
    "next_attempt_at", "hold_reason", "last_error", "message", "ordered_at",
})
TIME_COLUMNS = frozenset({"next_attempt_at", "ordered_at"})
# Text from outside (vendor and source answers, exception texts): scrubbed of secrets.
SCRUBBED_COLUMNS = frozenset({"hold_reason", "last_error", "message"})

# PostgreSQL rejects NUL in text and neither driver can encode a lone surrogate; one such
# character in an advocate's name must not fail every poll on the same batch.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Decimal digits when adding amounts (the default context keeps 28): a day's total is exact.
_EXACT = 200

HEAD_REVISION = "0007"
"""The newest migration in migrations/versions; a test keeps the two equal."""


def clean_text(value: str) -> str:
    return _UNSTORABLE.sub("\ufffd", value)


def clean_stored(value: str) -> str:
    """Third-party text the ledger stores, without the secrets the log redactor knows:
    ``ledger show`` and ``report`` must not show what the logs may not."""
    return clean_text(redactor.scrub(value))


def clean_optional(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def check_aware(value: datetime, name: str = "now") -> datetime:
    """``value`` in UTC. A naive datetime is a bug in the caller: its clock is unknown."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def check_amount(value: Decimal) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"amount must be a finite Decimal, got {value!r}")
    return value


def check_lease(now: datetime, lease_seconds: float) -> datetime:
    now = check_aware(now)
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    return now


def check_limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return limit


def change_columns(changes: Changes | None) -> dict[str, Any]:
    if changes is None:
        return {}
    unknown = set(changes.clear) - CLEARABLE_COLUMNS
    if unknown:
        raise ValueError(
            f"cannot clear {sorted(unknown)}; clearable columns: {sorted(CLEARABLE_COLUMNS)}"
        )
    cols = changes.as_columns()
    for name, value in cols.items():
        if value is None:
            continue
        if name in TIME_COLUMNS:
            cols[name] = check_aware(value, name)
        elif name == "approved":
            if not isinstance(value, bool):
                raise ValueError(f"approved must be a bool, got {value!r}")
        elif name == "amount":
            cols[name] = check_amount(value)
        elif isinstance(value, str):
            cols[name] = clean_stored(value) if name in SCRUBBED_COLUMNS else clean_text(value)
    return cols


def check_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    if not filters:
        return {}
    unknown = set(filters) - FILTER_KEYS
    if unknown:
        raise ValueError(f"unknown ledger filter(s) {sorted(unknown)}; use {sorted(FILTER_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if value is None:
            continue
        if key in ("since", "until"):
            if not isinstance(value, datetime):
                raise ValueError(f"filter {key!r} must be a datetime, got {value!r}")
            out[key] = check_aware(value, key)
        else:
            out[key] = str(value)
    return out


def check_guard(guard: SpendGuard | None) -> SpendGuard | None:
    if guard is None:
        return None
    check_amount(guard.amount)
    check_amount(guard.daily_limit)
    return replace(
        guard, currency=clean_text(guard.currency), since=check_aware(guard.since, "since")
    )


def counts_as_spent(state: State, vendor_order_id: str | None) -> bool:
    """Whether a row ordered in the window counts towards the daily spend: not when refused
    (the vendor took nothing), nor when closed upstream before any vendor order existed.
    The SQL ledger applies the same rule as a WHERE clause."""
    if state in (State.REFUSED, State.PERHAPS_REFUSED):
        return False
    return not (state is State.CLOSED_UPSTREAM and vendor_order_id is None)


def sum_amounts(amounts: Iterable[Decimal | None]) -> Decimal:
    with localcontext(prec=_EXACT):
        return sum((amount for amount in amounts if amount is not None), Decimal(0))


def check_spend(guard: SpendGuard, spent: Decimal) -> None:
    """SpendLimitReached if ``guard.amount`` on top of ``spent`` passes the limit (reaching
    it exactly is allowed)."""
    if sum_amounts([spent, guard.amount]) > guard.daily_limit:
        raise SpendLimitReached(
            currency=guard.currency, spent=spent, amount=guard.amount, limit=guard.daily_limit
        )


def lease_lost(
    pk: int, owner: str, row: Mapping[Any, Any] | None, now: datetime, expect: State | None
) -> LeaseLost | None:
    """Why ``owner`` may not move the row (its lease and state in ``row``), or None."""
    if row is None:
        return LeaseLost(f"redemption {pk} is not in the ledger")
    if row["lease_owner"] != owner or row["lease_until"] is None or row["lease_until"] < now:
        return LeaseLost(f"redemption {pk}: the lease of {owner!r} is gone")
    if expect is not None and row["state"] != expect:
        return LeaseLost(
            f"redemption {pk} is {row['state'].value!r}, expected {expect.value!r}")
    return None


def key_in_use(pk: int, key: Any) -> IdempotencyKeyInUse:
    return IdempotencyKeyInUse(
        f"redemption {pk}: idempotency key {key!r} already belongs to another redemption"
    )


def lease_until(now: datetime, lease_seconds: float) -> datetime:
    return now + timedelta(seconds=lease_seconds)


def record_rows(
    poll_id: int, redemptions: Sequence[Redemption], now: datetime
) -> list[dict[str, Any]]:
    """The new rows ``record`` would insert, one per key as stored (cleaned, so two
    spellings that store alike count once), in the order the source listed them (so primary
    keys, and ``due``, follow it). Encoded before any write: a payload that cannot be
    stored fails the whole call with TypeError."""
    batch: dict[tuple[str, str], Redemption] = {}
    for r in redemptions:
        batch.setdefault((clean_text(r.source), clean_text(r.id)), r)
    return [
        {
            "source": source, "redemption_id": rid, "state": State.NEW,
            "payload": encode_json(r.raw), "redemption": encode_redemption(r),
            "reward_id": clean_optional(r.reward_id),
            "reward_name": clean_optional(r.reward_name),
            "email": clean_optional(r.contact.email),
            "attempts": 0, "created_at": now, "updated_at": now, "last_seen_poll": poll_id,
        }
        for (source, rid), r in batch.items()
    ]


class AdminTransition:
    """``Ledger.admin_transition`` for either ledger, through its own claim and move."""

    def admin_transition(
        self: Ledger, pk: int, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, actor: str | None = None,
    ) -> LedgerEntry:
        if self.get_pk(pk) is None:
            raise LookupError(f"no redemption with pk {pk}")
        if self.claim(pk, ADMIN_OWNER, now, 60) is None:
            raise LeaseLost(f"redemption {pk} is being worked on; try again in a minute")
        try:
            return self.transition(pk, ADMIN_OWNER, to_state, detail, now, changes, actor=actor)
        finally:
            self.release(pk, ADMIN_OWNER)


def check_move(expect: State | None, to_state: State) -> None:
    if expect is not None:
        check_transition(expect, to_state)


_ENTRY_COLUMNS = tuple(field.name for field in fields(LedgerEntry)
                       if field.name not in ("payload", "redemption", "unreadable"))


def entry_from_columns(row: Mapping[Any, Any]) -> LedgerEntry:
    payload = json.loads(row["payload"])
    if not isinstance(payload, dict):
        raise ValueError("stored payload is not a JSON object")
    redemption, unreadable = decode_redemption(row["redemption"], payload)
    columns = {name: row[name] for name in _ENTRY_COLUMNS}
    columns.update(state=State(row["state"]), approved=bool(row["approved"]))
    return LedgerEntry(payload=payload, redemption=redemption, unreadable=unreadable,
                       **columns)


def open_ledger(
    url: str, *, migrate: bool | None = None, timeouts: LedgerTimeouts | None = None,
    threads: int | None = None, schema: str | None = None, process_clock: bool = False,
) -> SqlLedger:
    """The SQL ledger at ``url`` (``sqlite:///path.db`` or ``postgresql://...``).

    ``migrate=None`` brings a SQLite file up to date by itself (a single-machine install
    should just work) but leaves PostgreSQL alone: a shared server is migrated on purpose,
    with ``reward-poller db upgrade``. ``True`` always migrates, ``False`` never.
    ``threads``: threads that may each hold a connection (the worker's ``concurrency``).
    ``schema`` (PostgreSQL, ``[ledger] schema``): where the tables and Alembic's version
    table are; None: the connection's ``search_path``. ``process_clock`` (PostgreSQL): go by
    the ``now`` each call is given, as SQLite does, not by the server's clock (a single
    process that moves time by hand, such as a test).

    Raises ConfigError, LedgerNotMigrated, LedgerUnavailable, LedgerNotWritable.
    """
    # On demand: importing this package loads no SQL library, and poller.ledger.sql
    # builds on this module.
    from poller.ledger.sql import SqlLedger, make_engine, stored_revision

    engine = make_engine(url, timeouts, threads=threads, schema=schema)
    try:
        # The usual start: nothing to migrate, and Alembic (the largest import of a cold
        # start) is never loaded.
        if migrate is False or stored_revision(engine) != HEAD_REVISION:
            from poller.ledger import migrate as migrations  # on demand: Alembic

            if migrate is None:
                migrate = engine.dialect.name == "sqlite"
            if migrate:
                migrations.upgrade(engine)
            else:
                migrations.check(engine)
    except BaseException:
        engine.dispose()
        raise
    return SqlLedger(engine, process_clock=process_clock)
