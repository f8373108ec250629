"""Reading the ledger: the worker's queries (due, unseen, seen), one row, its story, and
the operator's listings."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    func,
    or_,
    select,
)

from poller.domain.model import Event, LedgerEntry
from poller.domain.states import ACTIVE, TERMINAL, State
from poller.ledger import (
    check_aware,
    check_filters,
    check_limit,
)
from poller.ledger.sql.base import SqlLedgerBase, lease_free
from poller.ledger.sql.transactions import read_transaction
from poller.ledger.tables import events as events_t
from poller.ledger.tables import polls as polls_t
from poller.ledger.tables import redemptions as red_t


class Reads(SqlLedgerBase):
    """Every read of redemptions and events."""

    def due(self, now: datetime, limit: int) -> builtins.list[LedgerEntry]:
        now = check_aware(now)
        at = self._now_sql()
        return self._select_entries(
            select(red_t)
            .where(
                red_t.c.state.in_(sorted(ACTIVE)),
                or_(red_t.c.next_attempt_at.is_(None), red_t.c.next_attempt_at <= at),
                lease_free(at),
            )
            .order_by(red_t.c.pk)
            .limit(check_limit(limit)),
            {"w_now": now},
        )

    def unseen_since(
        self, poll_id: int, states: frozenset[State], *, polls: int = 1
    ) -> builtins.list[LedgerEntry]:
        if not states:
            return []
        before = poll_id
        if polls > 1:
            # A row missed ``polls`` complete polls exactly when the polls-th newest complete
            # poll up to poll_id is newer than the last poll that saw it: one short walk
            # down the polls' primary key, then the same indexed range as polls=1.
            with read_transaction(self._engine) as conn:
                nth = conn.execute(
                    select(polls_t.c.id)
                    .where(polls_t.c.complete, polls_t.c.id <= poll_id)
                    .order_by(polls_t.c.id.desc())
                    .offset(polls - 1)
                    .limit(1)
                ).scalar_one_or_none()
            if nth is None:
                return []
            before = nth
        return self._select_entries(
            select(red_t)
            .where(
                red_t.c.state.in_(sorted(states)),
                or_(red_t.c.last_seen_poll.is_(None), red_t.c.last_seen_poll < before),
            )
            .order_by(red_t.c.pk)
        )

    def seen_since(self, poll_id: int, states: frozenset[State]) -> builtins.list[LedgerEntry]:
        if not states:
            return []
        # ix_redemptions_state_last_seen_poll: one range per state.
        return self._select_entries(
            select(red_t)
            .where(red_t.c.state.in_(sorted(states)), red_t.c.last_seen_poll >= poll_id)
            .order_by(red_t.c.pk)
        )

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None:
        found = self._select_entries(
            select(red_t).where(
                red_t.c.source == source, red_t.c.redemption_id == redemption_id
            )
        )
        return found[0] if found else None

    def events(self, pk: int) -> builtins.list[Event]:
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(events_t).where(events_t.c.redemption_pk == pk).order_by(events_t.c.id)
            )
            return [
                Event(at=r.at, from_state=r.from_state, to_state=r.to_state, detail=r.detail,
                      actor=r.actor)
                for r in rows
            ]

    def counts(self) -> dict[State, int]:
        """Rows per state; states with no rows are left out."""
        with read_transaction(self._engine) as conn:
            rows = conn.execute(select(red_t.c.state, func.count()).group_by(red_t.c.state))
            return {state: int(n) for state, n in rows}

    def oldest_waiting(self) -> LedgerEntry | None:
        found = self._select_entries(
            select(red_t)
            .where(red_t.c.state.not_in(sorted(TERMINAL)))
            .order_by(red_t.c.created_at, red_t.c.pk)
            .limit(1)
        )
        return found[0] if found else None

    # Last, because inside the class body its name hides the builtin ``list``.
    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
        filters: Mapping[str, Any] | None = None,
    ) -> builtins.list[LedgerEntry]:
        """Newest first. See ``poller.ledger.FILTER_KEYS`` for ``filters``."""
        wanted = check_filters(filters)
        where: builtins.list[Any] = []
        if states is not None:
            if not states:
                return []
            where.append(red_t.c.state.in_(sorted(states)))
        if "vendor" in wanted:
            where.append(red_t.c.vendor == wanted["vendor"])
        if "source" in wanted:
            where.append(red_t.c.source == wanted["source"])
        if "reward" in wanted:
            where.append(
                or_(red_t.c.reward_id == wanted["reward"], red_t.c.reward_name == wanted["reward"])
            )
        if "email" in wanted:
            where.append(func.lower(red_t.c.email) == func.lower(wanted["email"]))
        if "since" in wanted:
            where.append(red_t.c.created_at >= wanted["since"])
        if "until" in wanted:
            where.append(red_t.c.created_at < wanted["until"])
        return self._select_entries(
            select(red_t)
            .where(*where)
            .order_by(red_t.c.created_at.desc(), red_t.c.pk.desc())
            .limit(check_limit(limit))
        )

