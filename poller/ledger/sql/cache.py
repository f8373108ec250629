"""The ledger's small durable key-value store (``Cache``): vendor catalogs, webhook ids
already seen."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    or_,
    select,
)

from poller.ledger import (
    check_aware,
    clean_text,
)
from poller.ledger.sql.base import SqlLedgerBase
from poller.ledger.sql.transactions import read_transaction, write_transaction
from poller.ledger.tables import cache as cache_t


class CacheRows(SqlLedgerBase):
    """``cache_get`` and ``cache_put`` on the ``cache`` table."""

    def cache_get(self, key: str, now: datetime) -> str | None:
        now = check_aware(now)
        with read_transaction(self._engine) as conn:
            value: str | None = conn.execute(
                select(cache_t.c.value).where(
                    cache_t.c.key == clean_text(key),
                    or_(cache_t.c.expires_at.is_(None), cache_t.c.expires_at > now),
                )
            ).scalar_one_or_none()
        return value

    def cache_put(self, key: str, value: str, expires_at: datetime | None) -> None:
        if expires_at is not None:
            expires_at = check_aware(expires_at, "expires_at")
        stmt = self._insert(cache_t).values(
            key=clean_text(key), value=clean_text(value), expires_at=expires_at,
            # Wall clock: only for people reading the table, nothing decides on it.
            updated_at=datetime.now(UTC),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[cache_t.c.key],
            set_={
                "value": stmt.excluded.value,
                "expires_at": stmt.excluded.expires_at,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        with write_transaction(self._engine) as conn:
            conn.execute(stmt)
