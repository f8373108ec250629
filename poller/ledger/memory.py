"""The in-memory ledger: the SQL ledger's twin for fast unit tests of the worker.

Same rules, same errors (the contract tests in ``tests/ledger`` run one suite on both):
payloads go through the same JSON encoding, text through the same cleaning, times must be
timezone-aware. One lock makes every method atomic, as a transaction would. Nothing is kept
after the object is dropped.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from poller.domain.model import Event, LedgerEntry, Redemption
from poller.domain.states import ACTIVE, TERMINAL, State, check_transition
from poller.ledger import (
    ADMIN_OWNER,
    IdempotencyKeyInUse,
    change_columns,
    check_aware,
    check_claim,
    check_filters,
    check_guard,
    check_limit,
    check_spend,
    clean_optional,
    clean_stored,
    clean_text,
    counts_as_spent,
    encode_payload,
    entry_from_columns,
    sum_amounts,
)
from poller.ledger.stored_redemption import encode_redemption
from poller.ports import Changes, LeaseLost, PollRecord, SpendGuard

if TYPE_CHECKING:
    from poller.ports import Ledger


class MemoryLedger:
    """A ``Ledger`` kept in dicts. Thread-safe; ``close`` forgets nothing (tests may keep
    reading after the worker closed it)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rows: dict[int, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], int] = {}
        self._events: dict[int, builtins.list[Event]] = {}
        self._polls: dict[int, PollRecord] = {}
        self._cache: dict[str, tuple[str, datetime | None]] = {}

    def now(self, local: datetime) -> datetime:
        """One process, one clock: the caller's."""
        return check_aware(local)

    # --- polls -------------------------------------------------------------------------

    def start_poll(self, now: datetime) -> int:
        now = check_aware(now)
        with self._lock:
            poll_id = len(self._polls) + 1
            self._polls[poll_id] = PollRecord(
                id=poll_id, started_at=now, finished_at=None, complete=False, ok=False,
                seen=0, error=None,
            )
            return poll_id

    def finish_poll(
        self, poll_id: int, now: datetime, *, ok: bool, complete: bool, seen: int,
        error: str | None = None,
    ) -> None:
        now = check_aware(now)
        with self._lock:
            poll = self._polls.get(poll_id)
            if poll is None:
                raise LookupError(f"no poll with id {poll_id}")
            self._polls[poll_id] = PollRecord(
                id=poll_id, started_at=poll.started_at, finished_at=now, complete=complete,
                ok=ok, seen=seen, error=clean_optional(error),
            )

    def last_successful_poll(self) -> PollRecord | None:
        with self._lock:
            ok = [p for p in self._polls.values() if p.ok]
            return max(ok, key=lambda p: p.id) if ok else None

    # --- recording ---------------------------------------------------------------------

    def record(self, poll_id: int, redemptions: Sequence[Redemption], now: datetime) -> int:
        now = check_aware(now)
        batch: dict[tuple[str, str], Redemption] = {}
        for r in redemptions:
            batch.setdefault((clean_text(r.source), clean_text(r.id)), r)
        # Encoded before touching anything: a payload that cannot be stored fails the whole
        # batch, as the SQL transaction would.
        payloads = {key: encode_payload(r.raw) for key, r in batch.items()}
        models = {key: encode_redemption(r) for key, r in batch.items()}
        new = 0
        with self._lock:
            for key in batch:
                pk = self._keys.get(key)
                if pk is None:
                    r = batch[key]
                    pk = len(self._rows) + 1
                    self._keys[key] = pk
                    self._rows[pk] = {
                        "pk": pk, "source": key[0], "redemption_id": key[1],
                        "state": State.NEW, "payload": payloads[key],
                        "redemption": models[key],
                        "reward_id": clean_optional(r.reward_id),
                        "reward_name": clean_optional(r.reward_name),
                        "email": clean_optional(r.contact.email),
                        "vendor": None, "product": None, "amount": None, "currency": None,
                        "idempotency_key": None, "vendor_order_id": None, "attempts": 0,
                        "next_attempt_at": None, "hold_reason": None, "last_error": None,
                        "message": None, "lease_owner": None, "lease_until": None,
                        "created_at": now, "updated_at": now, "last_seen_poll": poll_id,
                        "ordered_at": None, "approved": False, "unfinished_steps": 0,
                    }
                    self._events[pk] = [
                        Event(at=now, from_state=None, to_state=State.NEW, detail="recorded")
                    ]
                    new += 1
                row = self._rows[pk]
                if row["last_seen_poll"] is None or row["last_seen_poll"] < poll_id:
                    row["last_seen_poll"] = poll_id
        return new

    # --- the worker's queries ---------------------------------------------------------

    @staticmethod
    def _lease_free(row: Mapping[str, Any], now: datetime) -> bool:
        return (
            row["lease_owner"] is None or row["lease_until"] is None or row["lease_until"] < now
        )

    def _entries(self, rows: Any) -> builtins.list[LedgerEntry]:
        return [entry_from_columns(row) for row in rows]

    def due(self, now: datetime, limit: int) -> builtins.list[LedgerEntry]:
        now = check_aware(now)
        limit = check_limit(limit)
        with self._lock:
            rows = [
                row for _, row in sorted(self._rows.items())
                if row["state"] in ACTIVE
                and (row["next_attempt_at"] is None or row["next_attempt_at"] <= now)
                and self._lease_free(row, now)
            ]
            return self._entries(rows[:limit])

    def unseen_since(
        self, poll_id: int, states: frozenset[State], *, polls: int = 1
    ) -> builtins.list[LedgerEntry]:
        with self._lock:
            before = poll_id
            if polls > 1:
                complete = sorted((p.id for p in self._polls.values()
                                   if p.complete and p.id <= poll_id), reverse=True)
                if len(complete) < polls:
                    return []
                before = complete[polls - 1]
            return self._entries(
                row for _, row in sorted(self._rows.items())
                if row["state"] in states
                and (row["last_seen_poll"] is None or row["last_seen_poll"] < before)
            )

    def seen_since(self, poll_id: int, states: frozenset[State]) -> builtins.list[LedgerEntry]:
        with self._lock:
            return self._entries(
                row for _, row in sorted(self._rows.items())
                if row["state"] in states
                and row["last_seen_poll"] is not None and row["last_seen_poll"] >= poll_id
            )

    # --- leases and transitions -------------------------------------------------------

    def claim(
        self, pk: int, owner: str, now: datetime, lease_seconds: float
    ) -> LedgerEntry | None:
        now = check_aware(now)
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        owner = clean_text(owner)
        with self._lock:
            row = self._rows.get(pk)
            if row is None or not (self._lease_free(row, now) or row["lease_owner"] == owner):
                return None
            row["lease_owner"] = owner
            row["lease_until"] = now + timedelta(seconds=lease_seconds)
            row["unfinished_steps"] += 1
            return entry_from_columns(row)

    def renew(self, pk: int, owner: str, now: datetime, lease_seconds: float) -> bool:
        now = check_aware(now)
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        owner = clean_text(owner)
        with self._lock:
            row = self._rows.get(pk)
            if (row is None or row["lease_owner"] != owner or row["lease_until"] is None
                    or row["lease_until"] < now):
                return False
            row["lease_until"] = now + timedelta(seconds=lease_seconds)
            return True

    def release(self, pk: int, owner: str) -> None:
        owner = clean_text(owner)
        with self._lock:
            row = self._rows.get(pk)
            if row is not None and row["lease_owner"] == owner:
                row["lease_owner"] = None
                row["lease_until"] = None
                row["unfinished_steps"] = 0

    def claim_transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        lease_seconds: float, changes: Changes | None = None, *, expect: State,
        guard: SpendGuard | None = None,
    ) -> LedgerEntry | None:
        now = check_claim(now, lease_seconds, expect, to_state)
        owner = clean_text(owner)
        with self._lock:
            row = self._rows.get(pk)
            if (row is None or row["state"] != expect
                    or not (self._lease_free(row, now) or row["lease_owner"] == owner)):
                return None
            return self._move(row, pk, owner, to_state, detail, now, changes, guard=guard,
                              actor=None, claim_until=now + timedelta(seconds=lease_seconds))

    def transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, expect: State | None = None,
        guard: SpendGuard | None = None, actor: str | None = None, release: bool = False,
    ) -> LedgerEntry:
        now = check_aware(now)
        owner = clean_text(owner)
        if expect is not None:
            check_transition(expect, to_state)
        with self._lock:
            row = self._rows.get(pk)
            if row is None:
                raise LeaseLost(f"redemption {pk} is not in the ledger")
            if row["lease_owner"] != owner or self._lease_free(row, now):
                raise LeaseLost(f"redemption {pk}: the lease of {owner!r} is gone")
            current: State = row["state"]
            if expect is not None and current != expect:
                raise LeaseLost(f"redemption {pk} is {current.value!r}, expected {expect.value!r}")
            return self._move(row, pk, owner, to_state, detail, now, changes, guard=guard,
                              actor=actor, release=release)

    def _move(
        self, row: dict[str, Any], pk: int, owner: str, to_state: State, detail: str,
        now: datetime, changes: Changes | None, *, guard: SpendGuard | None,
        actor: str | None, claim_until: datetime | None = None, release: bool = False,
    ) -> LedgerEntry:
        """Check and apply one move on ``row`` (the lock held, the lease checked)."""
        columns = change_columns(changes)
        guard = None if guard is None else check_guard(guard)
        current: State = row["state"]
        check_transition(current, to_state)
        if guard is not None:
            check_spend(guard, self._spent(guard.currency, guard.since, but=pk))
        key = columns.get("idempotency_key")
        if key is not None and any(
            other["idempotency_key"] == key for other_pk, other in self._rows.items()
            if other_pk != pk
        ):
            raise IdempotencyKeyInUse(
                f"redemption {pk}: idempotency key {key!r} already belongs to another "
                "redemption"
            )
        row.update(columns, state=to_state, updated_at=now)
        if claim_until is not None:
            row.update(lease_owner=owner, lease_until=claim_until,
                       unfinished_steps=row["unfinished_steps"] + 1)
        if release:
            row.update(lease_owner=None, lease_until=None, unfinished_steps=0)
        self._events[pk].append(
            Event(at=now, from_state=current, to_state=to_state, detail=clean_stored(detail),
                  actor=clean_text(actor or owner))
        )
        return entry_from_columns(row)

    def admin_transition(
        self, pk: int, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, actor: str | None = None,
    ) -> LedgerEntry:
        """See ``SqlLedger.admin_transition``."""
        if self.get_pk(pk) is None:
            raise LookupError(f"no redemption with pk {pk}")
        if self.claim(pk, ADMIN_OWNER, now, 60) is None:
            raise LeaseLost(f"redemption {pk} is being worked on; try again in a minute")
        try:
            return self.transition(pk, ADMIN_OWNER, to_state, detail, now, changes,
                                   actor=actor)
        finally:
            self.release(pk, ADMIN_OWNER)

    def _spent(self, currency: str, since: datetime, *, but: int | None = None) -> Decimal:
        return sum_amounts(
            row["amount"] for pk, row in self._rows.items()
            if pk != but
            and row["currency"] == currency
            and row["ordered_at"] is not None
            and row["ordered_at"] >= since
            and counts_as_spent(row["state"], row["vendor_order_id"])
        )

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        since = check_aware(since, "since")
        with self._lock:
            return self._spent(clean_text(currency), since)

    # --- cache --------------------------------------------------------------------------

    def cache_get(self, key: str, now: datetime) -> str | None:
        now = check_aware(now)
        with self._lock:
            found = self._cache.get(clean_text(key))
        if found is None:
            return None
        value, expires_at = found
        return value if expires_at is None or expires_at > now else None

    def cache_put(self, key: str, value: str, expires_at: datetime | None) -> None:
        if expires_at is not None:
            expires_at = check_aware(expires_at, "expires_at")
        with self._lock:
            self._cache[clean_text(key)] = (clean_text(value), expires_at)

    # --- reading ----------------------------------------------------------------------

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None:
        with self._lock:
            pk = self._keys.get((clean_text(source), clean_text(redemption_id)))
            return None if pk is None else entry_from_columns(self._rows[pk])

    def get_pk(self, pk: int) -> LedgerEntry | None:
        with self._lock:
            row = self._rows.get(pk)
            return None if row is None else entry_from_columns(row)

    def events(self, pk: int) -> builtins.list[Event]:
        with self._lock:
            return builtins.list(self._events.get(pk, ()))

    def counts(self) -> dict[State, int]:
        """Rows per state; states with no rows are left out."""
        out: dict[State, int] = {}
        with self._lock:
            for row in self._rows.values():
                out[row["state"]] = out.get(row["state"], 0) + 1
        return out

    def oldest_waiting(self) -> LedgerEntry | None:
        with self._lock:
            waiting = [row for row in self._rows.values() if row["state"] not in TERMINAL]
            if not waiting:
                return None
            return entry_from_columns(min(waiting, key=lambda r: (r["created_at"], r["pk"])))

    def ping(self) -> None:
        """Always answers."""

    def close(self) -> None:
        """Nothing to release."""

    # Last, because inside the class body its name hides the builtin ``list``.
    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
        filters: Mapping[str, Any] | None = None,
    ) -> builtins.list[LedgerEntry]:
        """Newest first. See ``poller.ledger.FILTER_KEYS`` for ``filters``."""
        wanted = check_filters(filters)
        limit = check_limit(limit)

        def keep(row: Mapping[str, Any]) -> bool:
            if states is not None and row["state"] not in states:
                return False
            if "vendor" in wanted and row["vendor"] != wanted["vendor"]:
                return False
            if "source" in wanted and row["source"] != wanted["source"]:
                return False
            if "reward" in wanted and wanted["reward"] not in (
                row["reward_id"], row["reward_name"]
            ):
                return False
            if "email" in wanted and (
                row["email"] is None or row["email"].lower() != wanted["email"].lower()
            ):
                return False
            if "since" in wanted and row["created_at"] < wanted["since"]:
                return False
            return not ("until" in wanted and row["created_at"] >= wanted["until"])

        with self._lock:
            rows = sorted(
                (row for row in self._rows.values() if keep(row)),
                key=lambda r: (r["created_at"], r["pk"]),
                reverse=True,
            )
            return self._entries(rows[:limit])


if TYPE_CHECKING:

    def _conforms(ledger: MemoryLedger) -> Ledger:
        return ledger
