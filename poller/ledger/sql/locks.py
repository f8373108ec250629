"""The keys of the ledger's PostgreSQL advisory locks: each serialises one kind of write
between processes (``pg_advisory_xact_lock``, held to the commit)."""

from __future__ import annotations

PG_MIGRATION_LOCK = 0x72705F6D69677261
"""Advisory lock key of a migration (``db upgrade``, a SQLite-like start): PostgreSQL
processes that migrate at the same time queue on it, so the second one finds the schema
done instead of half-done."""

RECORD_LOCK = 0x72705F7265636F72
"""Advisory lock key serialising ``record`` between processes on PostgreSQL."""

SPEND_LOCK = 0x72705F7370656E64
"""Advisory lock key serialising guarded transitions (the spend check) on PostgreSQL."""

