"""The SQL ledger (SQLite or PostgreSQL 15), on SQLAlchemy Core.

Concurrency, in one place:

* Every write is one short transaction. On SQLite it starts with ``BEGIN IMMEDIATE``, so a
  writer takes the write lock before reading and two processes can never deadlock upgrading
  a read lock; other writers wait (``busy_timeout``). Reads start a plain ``BEGIN`` and, in
  WAL mode, never block or get blocked by the writer.
* ``claim`` is a single compare-and-swap UPDATE: whoever's UPDATE matches the free lease
  gets the row; on PostgreSQL the loser's UPDATE re-reads the row after the winner commits
  and no longer matches.
* ``record`` inserts with ``ON CONFLICT DO NOTHING`` on (source, redemption_id), so a row
  another worker recorded first is skipped, never an error. On PostgreSQL it first takes a
  transaction advisory lock: two workers recording overlapping batches in different orders
  would otherwise each wait for a row the other inserted, a deadlock. (Recording happens
  once a poll and takes milliseconds; queueing them costs nothing.)
* A guarded ``transition`` (the move to ORDERING under the daily spend limit) adds up what
  was spent and moves the row in one transaction. SQLite's BEGIN IMMEDIATE already lets one
  writer at a time do that; on PostgreSQL guarded transitions queue on a transaction
  advisory lock first, so two workers cannot both read "60 of 75 spent" and both order 10.
  The lock is taken before the row lock and only by guarded transitions, so it cannot form
  a cycle with the others.

Time, on PostgreSQL, is the database server's: several workers on several hosts share the
ledger, and their clocks differ. Every time that one worker writes and another compares
(lease expiry and renewal, ``updated_at`` and the polls' times that the reconciliation
compares, ``next_attempt_at`` against ``due``, the request budget's entries:
``poller.ledger.budget``) is taken inside the statement (``statement_timestamp()``) or read
once per decision (``SqlLedger.now``). The ``now`` a caller passes then only anchors the
times it gives relative to it: ``next_attempt_at = now + 60 s`` is stored as the server's
time plus 60 s, ``ordered_at = now`` as the server's time. A spend guard's ``since`` is a
calendar instant (midnight UTC) and is compared as it is. SQLite is one file on one host, so
the process's clock (the ``now`` passed) is the time there; ``open_ledger(process_clock=True)``
asks for the same on PostgreSQL (a single process that moves time by hand, such as a test).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poller.ledger.sql.base import SERVER_NOW, SqlLedgerBase
from poller.ledger.sql.cache import CacheRows
from poller.ledger.sql.engine import (
    PG_CONNECT_TIMEOUT_S,
    PG_POOL_RECYCLE_S,
    POOL_SPARE,
    SQLITE_BUSY_TIMEOUT_MS,
    LedgerTimeouts,
    ledger_schema,
    make_engine,
    parse_url,
    safe_url,
)
from poller.ledger.sql.locks import PG_MIGRATION_LOCK
from poller.ledger.sql.moves import Moves
from poller.ledger.sql.polls import Polls
from poller.ledger.sql.reads import Reads
from poller.ledger.sql.spend import Spend
from poller.ledger.sql.transactions import (
    one_statement_write,
    read_transaction,
    translate_errors,
    write_transaction,
    write_variant,
)

if TYPE_CHECKING:
    from poller.ports import Ledger

__all__ = [
    "PG_CONNECT_TIMEOUT_S",
    "PG_MIGRATION_LOCK",
    "PG_POOL_RECYCLE_S",
    "POOL_SPARE",
    "SERVER_NOW",
    "SQLITE_BUSY_TIMEOUT_MS",
    "LedgerTimeouts",
    "SqlLedger",
    "ledger_schema",
    "make_engine",
    "one_statement_write",
    "parse_url",
    "read_transaction",
    "safe_url",
    "translate_errors",
    "write_transaction",
    "write_variant",
]


class SqlLedger(Polls, Reads, Moves, Spend, CacheRows, SqlLedgerBase):
    """The ``Ledger`` on a SQLAlchemy engine. Build it with ``poller.ledger.open_ledger``,
    which also checks or migrates the schema.

    One room per concern, each a module of this package: ``polls`` (polls and recording),
    ``reads`` (the queries), ``moves`` (leases and state moves), ``spend``, ``cache``; what
    they share (engine, clock, statements) is ``base``; opening the database is ``engine``,
    the transactions ``transactions``."""


if TYPE_CHECKING:

    def _conforms(ledger: SqlLedger) -> Ledger:
        return ledger
