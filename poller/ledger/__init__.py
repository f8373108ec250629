"""The ledger: the durable record of every redemption and of every state change.

``open_ledger(url)`` gives the SQL ledger (SQLite or PostgreSQL); ``poller.ledger.memory``
holds the in-memory twin used by fast unit tests. Both share the rules below, so they behave
the same; the contract tests in ``tests/ledger`` run one suite against both.

Importing this package imports no SQL library: the CLI's ``--help`` and the core's unit tests
stay fast. SQLAlchemy is loaded by ``open_ledger`` (and by ``poller.ledger.sql``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from poller.domain.errors import PollerError
from poller.domain.model import LedgerEntry
from poller.domain.states import State, check_transition
from poller.ledger.stored_redemption import decode_redemption
from poller.logs import redactor
from poller.ports import Changes, SpendGuard, SpendLimitReached

if TYPE_CHECKING:
    from poller.ledger.sql import LedgerTimeouts, SqlLedger

__all__ = [
    "ADMIN_OWNER",
    "FILTER_KEYS",
    "IdempotencyKeyInUse",
    "LedgerNotMigrated",
    "LedgerNotWritable",
    "LedgerUnavailable",
    "open_ledger",
]


class LedgerUnavailable(PollerError):
    """The ledger database cannot be reached or used right now (server down, file locked
    past the busy timeout, connection dropped). Retrying later may work. The message never
    carries the password of the URL."""


class LedgerNotWritable(PollerError):
    """This process cannot write the ledger: a SQLite file or folder it may not write (or
    on a read-only mount), a PostgreSQL server or role that refuses writes. The message
    names the cause (the folder and the user, the server's answer)."""


class LedgerNotMigrated(PollerError):
    """The database has no reward-poller schema, or not the one this version expects. Not a
    configuration error: the configuration is right and a person must act (run
    ``reward-poller db upgrade``, or upgrade reward-poller), so commands exit 1."""


class IdempotencyKeyInUse(PollerError):
    """A transition tried to save an idempotency key that another redemption already has.
    Keys are derived from the redemption, so this is a bug, never a retryable condition."""


ADMIN_OWNER = "admin"
"""The lease owner used by ``admin_transition`` (the CLI's ``ledger retry``/``refuse``)."""

FILTER_KEYS = frozenset({"vendor", "reward", "email", "since", "until", "source"})
"""Keys ``Ledger.list(filters=...)`` understands. ``reward`` matches the reward id or name,
``email`` matches case-insensitively (SQLite folds ASCII letters only), ``since`` is
inclusive and ``until`` exclusive on ``created_at``; the others match exactly."""

# Changes.as_columns() may name these; ``attempts`` and ``approved`` are NOT NULL, so they
# cannot be cleared (``approved=False`` takes an approval back).
CHANGE_COLUMNS = frozenset(
    {
        "idempotency_key", "vendor", "product", "amount", "currency", "vendor_order_id",
        "attempts", "next_attempt_at", "hold_reason", "last_error", "message", "ordered_at",
        "approved",
    }
)
CLEARABLE_COLUMNS = CHANGE_COLUMNS - {"attempts", "approved"}
TIME_COLUMNS = frozenset({"next_attempt_at", "ordered_at"})

# PostgreSQL rejects NUL in text and neither driver can encode a lone surrogate. One such
# character in an advocate's name must not make every poll fail on the same batch, so text
# is cleaned on the way in (both ledgers do it, so they stay alike).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` with the characters no database can store replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value)


SCRUBBED_COLUMNS = frozenset({"hold_reason", "last_error", "message"})
"""Columns that hold text from outside (vendor and source answers, exception texts)."""


def clean_stored(value: str) -> str:
    """Text the ledger stores from third-party answers (a hold reason, the last error, a
    message, an event's detail), with every secret the log redactor knows removed: the
    ledger is read by ``ledger show`` and exported by ``report``, so it must not keep what
    the logs may not show (a token quoted in an error, a URL's userinfo or secret path)."""
    return clean_text(redactor.scrub(value))


def clean_optional(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def check_aware(value: datetime, name: str = "now") -> datetime:
    """``value`` in UTC. A naive datetime is a bug in the caller: the ledger cannot guess
    which clock it came from, so it refuses it rather than storing a wrong instant."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def check_amount(value: Decimal) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"amount must be a finite Decimal, got {value!r}")
    return value


def change_columns(changes: Changes | None) -> dict[str, Any]:
    """The columns a transition sets, validated the same way by both ledgers."""
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
    """``filters`` with the datetimes checked, or ValueError naming the unknown keys."""
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


_EXACT = 200
"""Decimal digits when adding amounts (the default context keeps 28): far more than any
money amount has, so a day's total is exact."""



def check_claim(now: datetime, lease_seconds: float, expect: State, to_state: State) -> datetime:
    """The arguments of ``claim_transition`` (both ledgers): an aware ``now``, a positive
    lease, a move the state machine allows. Returns ``now``."""
    now = check_aware(now)
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    check_transition(expect, to_state)
    return now

def check_guard(guard: SpendGuard) -> SpendGuard:
    """``guard`` with its amounts checked and ``since`` in UTC."""
    check_amount(guard.amount)
    check_amount(guard.daily_limit)
    return replace(
        guard, currency=clean_text(guard.currency), since=check_aware(guard.since, "since")
    )


def counts_as_spent(state: State, vendor_order_id: str | None) -> bool:
    """Whether a row with ``ordered_at`` in the window counts towards the daily spend: not
    when refused (the vendor took nothing), nor when closed upstream before any vendor
    order existed. Both ledgers apply this same rule (the SQL one as a WHERE clause)."""
    if state in (State.REFUSED, State.PERHAPS_REFUSED):
        return False
    return not (state is State.CLOSED_UPSTREAM and vendor_order_id is None)


def check_spend(guard: SpendGuard, spent: Decimal) -> None:
    """SpendLimitReached if ordering ``guard.amount`` on top of ``spent`` passes the limit.
    Reaching the limit exactly is allowed."""
    with localcontext() as ctx:
        ctx.prec = _EXACT
        over = spent + guard.amount > guard.daily_limit
    if over:
        raise SpendLimitReached(
            currency=guard.currency, spent=spent, amount=guard.amount, limit=guard.daily_limit
        )


def sum_amounts(amounts: Iterable[Decimal | None]) -> Decimal:
    """Exact sum (amounts are stored as text, so the database cannot add them)."""
    total = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = _EXACT
        for amount in amounts:
            if amount is not None:
                total += amount
    return total


def check_limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return limit


def _json_default(value: Any) -> Any:
    # Raw payloads come from JSON, but a caller may hand read-only mappings or tuples.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"payload value of type {type(value).__name__} is not JSON")


def encode_payload(raw: Mapping[str, Any]) -> str:
    """The payload as stored: JSON text. ``ensure_ascii`` escapes everything outside ASCII,
    NUL and lone surrogates included, so any payload the source sent can be stored."""
    return json.dumps(raw, ensure_ascii=True, separators=(",", ":"), default=_json_default)


def decode_payload(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("stored payload is not a JSON object")
    return value


def entry_from_columns(row: Mapping[Any, Any]) -> LedgerEntry:
    """A ``LedgerEntry`` from the columns of one ``redemptions`` row (SQL or in-memory)."""
    payload = decode_payload(row["payload"])
    redemption, unreadable = decode_redemption(row["redemption"], payload)
    return LedgerEntry(
        pk=row["pk"],
        source=row["source"],
        redemption_id=row["redemption_id"],
        state=State(row["state"]),
        payload=payload,
        redemption=redemption,
        unreadable=unreadable,
        reward_id=row["reward_id"],
        reward_name=row["reward_name"],
        email=row["email"],
        vendor=row["vendor"],
        product=row["product"],
        amount=row["amount"],
        currency=row["currency"],
        idempotency_key=row["idempotency_key"],
        vendor_order_id=row["vendor_order_id"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        hold_reason=row["hold_reason"],
        last_error=row["last_error"],
        message=row["message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seen_poll=row["last_seen_poll"],
        ordered_at=row["ordered_at"],
        approved=bool(row["approved"]),
        unfinished_steps=row["unfinished_steps"],
    )


HEAD_REVISION = "0007"
"""The newest migration in migrations/versions; a test keeps the two equal."""


def _at_head(engine: Any) -> bool:
    """Whether the schema is exactly this version's, read with one plain SELECT."""
    # On demand, as in open_ledger: importing this package loads no SQL library.
    from sqlalchemy import Column, MetaData, String, Table, inspect, select
    from sqlalchemy.exc import SQLAlchemyError

    from poller.ledger.sql import ledger_schema  # on demand: SQLAlchemy, as above

    schema = ledger_schema(engine)
    version = Table("alembic_version", MetaData(), Column("version_num", String(32)),
                    schema=schema)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version", schema=schema):
                return False
            rows = conn.execute(select(version.c.version_num)).scalars().all()
    except SQLAlchemyError:  # unreachable, or unreadable: the full path says which, clearly
        return False
    return list(rows) == [HEAD_REVISION]


def open_ledger(
    url: str, *, migrate: bool | None = None, timeouts: LedgerTimeouts | None = None,
    threads: int | None = None, schema: str | None = None, process_clock: bool = False,
) -> SqlLedger:
    """The SQL ledger at ``url`` (``sqlite:///path.db`` or ``postgresql://...``).

    ``migrate=None`` brings a SQLite file up to date by itself (a single-machine install
    should just work) but leaves PostgreSQL alone: a shared server is migrated on purpose,
    with ``reward-poller db upgrade``. ``migrate=True`` always migrates, ``False`` never.

    ``threads``: how many threads may each hold a connection at once (the worker's
    ``concurrency``); the pool keeps that many and a few more.

    ``schema`` (PostgreSQL, ``[ledger] schema``): the schema the ledger's tables, and
    Alembic's version table, are in; None: unqualified names (the connection's
    ``search_path``, ``public`` on a default server).

    ``process_clock`` (PostgreSQL): take the ``now`` each call is given as the time, as
    SQLite does, instead of the database server's clock (``SqlLedger``). Only for a single
    process whose clock is the one that counts, such as a test that moves time by hand.

    Raises ConfigError for an unusable URL, LedgerNotMigrated when the schema is missing or
    out of date, LedgerUnavailable when the database cannot be reached, LedgerNotWritable
    when a SQLite ledger's file or folder cannot be written by this user (naming both).
    """
    # On demand: importing this package loads no SQL library (the CLI's --help, the core's
    # unit tests), and poller.ledger.sql builds on this module.
    from poller.ledger.sql import SqlLedger, make_engine

    engine = make_engine(url, timeouts, threads=threads, schema=schema)
    try:
        if migrate is not False and _at_head(engine):
            # The usual start: nothing to migrate, and Alembic (the largest import of a
            # cold start) is never loaded.
            return SqlLedger(engine, process_clock=process_clock)
        from poller.ledger import migrate as migrations  # on demand: Alembic, only to migrate

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
