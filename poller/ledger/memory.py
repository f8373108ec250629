"""The in-memory ledger: the SQL ledger's twin for fast unit tests of the worker, with the
same rules and errors (``poller.ledger``). One lock makes every method atomic, as a
transaction would. ``close`` forgets nothing: tests may read on after the worker closed it.
"""

from __future__ import annotations

import builtins
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from poller.domain.model import Event, LedgerEntry, Redemption
from poller.domain.states import ACTIVE, TERMINAL, State, check_transition
from poller.ledger import (
    CLEARABLE_COLUMNS,
    AdminTransition,
    change_columns,
    check_aware,
    check_filters,
    check_guard,
    check_lease,
    check_limit,
    check_move,
    check_spend,
    clean_optional,
    clean_stored,
    clean_text,
    counts_as_spent,
    entry_from_columns,
    key_in_use,
    lease_lost,
    lease_until,
    record_rows,
    sum_amounts,
)
from poller.ports import Changes, PollRecord, SpendGuard

if TYPE_CHECKING:
    from poller.ports import Ledger

_NULL_COLUMNS = CLEARABLE_COLUMNS | {"lease_owner", "lease_until"}


def _lease_free(row: Mapping[str, Any], now: datetime) -> bool:
    return row["lease_owner"] is None or row["lease_until"] is None or row["lease_until"] < now


def _claimable(row: Mapping[str, Any], owner: str, now: datetime) -> bool:
    return _lease_free(row, now) or row["lease_owner"] == owner


def _age(row: Mapping[str, Any]) -> tuple[datetime, int]:
    return row["created_at"], row["pk"]


def _entry(row: Mapping[str, Any] | None) -> LedgerEntry | None:
    return None if row is None else entry_from_columns(row)


class MemoryLedger(AdminTransition):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rows: dict[int, dict[str, Any]] = {}  # in pk order: pks only grow
        self._keys: dict[tuple[str, str], int] = {}
        self._events: dict[int, builtins.list[Event]] = {}
        self._polls: dict[int, PollRecord] = {}
        self._cache: dict[str, tuple[str, datetime | None]] = {}

    def now(self, local: datetime) -> datetime:
        return check_aware(local)

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
            self._polls[poll_id] = replace(poll, finished_at=now, complete=complete, ok=ok,
                                           seen=seen, error=clean_optional(error))

    def last_successful_poll(self) -> PollRecord | None:
        with self._lock:
            return max((p for p in self._polls.values() if p.ok), key=lambda p: p.id,
                       default=None)

    def record(self, poll_id: int, redemptions: Sequence[Redemption], now: datetime) -> int:
        now = check_aware(now)
        rows = record_rows(poll_id, redemptions, now)
        new = 0
        with self._lock:
            for fresh in rows:
                key = (fresh["source"], fresh["redemption_id"])
                pk = self._keys.get(key)
                if pk is None:
                    pk = self._keys[key] = len(self._rows) + 1
                    self._rows[pk] = {**dict.fromkeys(_NULL_COLUMNS), **fresh, "pk": pk,
                                      "approved": False, "unfinished_steps": 0}
                    self._events[pk] = [
                        Event(at=now, from_state=None, to_state=State.NEW, detail="recorded")
                    ]
                    new += 1
                row = self._rows[pk]
                row["last_seen_poll"] = max(row["last_seen_poll"] or 0, poll_id)
        return new

    def _entries(self, rows: Any) -> builtins.list[LedgerEntry]:
        return [entry_from_columns(row) for row in rows]

    def due(self, now: datetime, limit: int) -> builtins.list[LedgerEntry]:
        now = check_aware(now)
        limit = check_limit(limit)
        with self._lock:
            rows = [
                row for row in self._rows.values()
                if row["state"] in ACTIVE
                and (row["next_attempt_at"] is None or row["next_attempt_at"] <= now)
                and _lease_free(row, now)
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
                row for row in self._rows.values()
                if row["state"] in states
                and (row["last_seen_poll"] is None or row["last_seen_poll"] < before)
            )

    def seen_since(self, poll_id: int, states: frozenset[State]) -> builtins.list[LedgerEntry]:
        with self._lock:
            return self._entries(
                row for row in self._rows.values()
                if row["state"] in states
                and row["last_seen_poll"] is not None and row["last_seen_poll"] >= poll_id
            )

    def claim(
        self, pk: int, owner: str, now: datetime, lease_seconds: float
    ) -> LedgerEntry | None:
        now = check_lease(now, lease_seconds)
        owner = clean_text(owner)
        with self._lock:
            row = self._rows.get(pk)
            if row is None or not _claimable(row, owner, now):
                return None
            row.update(lease_owner=owner, lease_until=lease_until(now, lease_seconds),
                       unfinished_steps=row["unfinished_steps"] + 1)
            return entry_from_columns(row)

    def renew(self, pk: int, owner: str, now: datetime, lease_seconds: float) -> bool:
        now = check_lease(now, lease_seconds)
        owner = clean_text(owner)
        with self._lock:
            row = self._rows.get(pk)
            if lease_lost(pk, owner, row, now, None) is not None:
                return False
            assert row is not None
            row["lease_until"] = lease_until(now, lease_seconds)
            return True

    def release(self, pk: int, owner: str) -> None:
        owner = clean_text(owner)
        with self._lock:
            row = self._rows.get(pk)
            if row is not None and row["lease_owner"] == owner:
                row.update(lease_owner=None, lease_until=None, unfinished_steps=0)

    def claim_transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        lease_seconds: float, changes: Changes | None = None, *, expect: State,
        guard: SpendGuard | None = None,
    ) -> LedgerEntry | None:
        now = check_lease(now, lease_seconds)
        check_transition(expect, to_state)
        owner = clean_text(owner)
        with self._lock:
            row = self._rows.get(pk)
            if row is None or row["state"] != expect or not _claimable(row, owner, now):
                return None
            return self._move(row, pk, owner, to_state, detail, now, changes, guard=guard,
                              actor=None, claim_until=lease_until(now, lease_seconds))

    def transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, expect: State | None = None,
        guard: SpendGuard | None = None, actor: str | None = None, release: bool = False,
    ) -> LedgerEntry:
        now = check_aware(now)
        owner = clean_text(owner)
        check_move(expect, to_state)
        with self._lock:
            row = self._rows.get(pk)
            lost = lease_lost(pk, owner, row, now, expect)
            if lost is not None:
                raise lost
            assert row is not None
            return self._move(row, pk, owner, to_state, detail, now, changes, guard=guard,
                              actor=actor, release=release)

    def _move(
        self, row: dict[str, Any], pk: int, owner: str, to_state: State, detail: str,
        now: datetime, changes: Changes | None, *, guard: SpendGuard | None,
        actor: str | None, claim_until: datetime | None = None, release: bool = False,
    ) -> LedgerEntry:
        """Check and apply one move on ``row`` (the lock held, the lease checked)."""
        columns = change_columns(changes)
        guard = check_guard(guard)
        current: State = row["state"]
        check_transition(current, to_state)
        if guard is not None:
            check_spend(guard, self._spent(guard.currency, guard.since, but=pk))
        key = columns.get("idempotency_key")
        if key is not None and any(
            other["idempotency_key"] == key for other_pk, other in self._rows.items()
            if other_pk != pk
        ):
            raise key_in_use(pk, key)
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

    def cache_get(self, key: str, now: datetime) -> str | None:
        now = check_aware(now)
        with self._lock:
            value, expires_at = self._cache.get(clean_text(key), (None, None))
        return value if expires_at is None or expires_at > now else None

    def cache_put(self, key: str, value: str, expires_at: datetime | None) -> None:
        if expires_at is not None:
            expires_at = check_aware(expires_at, "expires_at")
        with self._lock:
            self._cache[clean_text(key)] = (clean_text(value), expires_at)

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None:
        with self._lock:
            pk = self._keys.get((clean_text(source), clean_text(redemption_id)))
            return None if pk is None else _entry(self._rows[pk])

    def get_pk(self, pk: int) -> LedgerEntry | None:
        with self._lock:
            return _entry(self._rows.get(pk))

    def events(self, pk: int) -> builtins.list[Event]:
        with self._lock:
            return builtins.list(self._events.get(pk, ()))

    def counts(self) -> dict[State, int]:
        with self._lock:
            return dict(Counter(row["state"] for row in self._rows.values()))

    def oldest_waiting(self) -> LedgerEntry | None:
        with self._lock:
            return _entry(min((row for row in self._rows.values()
                               if row["state"] not in TERMINAL), key=_age, default=None))

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass

    # Last, because inside the class body its name hides the builtin ``list``.
    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
        filters: Mapping[str, Any] | None = None,
    ) -> builtins.list[LedgerEntry]:
        wanted = check_filters(filters)
        limit = check_limit(limit)

        def keep(row: Mapping[str, Any]) -> bool:
            created = row["created_at"]
            return ((states is None or row["state"] in states)
                    and all(row[key] == wanted[key] for key in ("vendor", "source")
                            if key in wanted)
                    and ("reward" not in wanted
                         or wanted["reward"] in (row["reward_id"], row["reward_name"]))
                    and ("email" not in wanted or (
                        row["email"] is not None
                        and row["email"].lower() == wanted["email"].lower()))
                    and ("since" not in wanted or created >= wanted["since"])
                    and ("until" not in wanted or created < wanted["until"]))

        with self._lock:
            rows = sorted(filter(keep, self._rows.values()), key=_age, reverse=True)
            return self._entries(rows[:limit])


if TYPE_CHECKING:

    def _conforms(ledger: MemoryLedger) -> Ledger:
        return ledger
