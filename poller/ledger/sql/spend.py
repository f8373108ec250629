"""What was spent: the rows whose amount counts towards the daily spend limit, added up
exactly."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    ColumnElement,
    and_,
    not_,
    select,
)
from sqlalchemy.engine import Connection

from poller.domain.states import State
from poller.ledger import (
    check_aware,
    clean_text,
    sum_amounts,
)
from poller.ledger.sql.base import SqlLedgerBase
from poller.ledger.sql.transactions import read_transaction
from poller.ledger.tables import redemptions as red_t


def spent_where(currency: str, since: datetime) -> builtins.list[ColumnElement[bool]]:
    """The rows whose amount counts as spent (``poller.ledger.counts_as_spent``, in SQL).
    Served by ix_redemptions_currency_ordered_at."""
    return [
        red_t.c.currency == currency,
        red_t.c.ordered_at >= since,
        red_t.c.state.not_in([State.REFUSED, State.PERHAPS_REFUSED]),
        not_(
            and_(red_t.c.state == State.CLOSED_UPSTREAM, red_t.c.vendor_order_id.is_(None))
        ),
    ]


def spent(conn: Connection, where: Sequence[ColumnElement[bool]]) -> Decimal:
    # Summed here: amounts are stored as text (exact Decimals), which SQL cannot add.
    return sum_amounts(conn.execute(select(red_t.c.amount).where(*where)).scalars())


class Spend(SqlLedgerBase):
    """The ledger's spend query (the spend guard's check runs inside a move: ``moves``)."""

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        since = check_aware(since, "since")
        with read_transaction(self._engine) as conn:
            return spent(conn, spent_where(clean_text(currency), since))

