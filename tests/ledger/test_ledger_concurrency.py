"""Several worker processes on one ledger: every redemption is recorded once and every row
is claimed by exactly one of them, on SQLite (one file) and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import queue
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from poller.core.model import Contact, Redemption
from poller.core.states import State
from poller.ledger import migrate, open_ledger

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PROCESSES = 4
ROWS = 200


def _worker(url: str, owner: str, seed: int, barrier: Any, results: Any) -> None:
    """One process: record all ROWS redemptions in its own order and batches, wait for the
    others, then try to claim every row and move the ones it got."""
    ledger = open_ledger(url, migrate=False)
    try:
        ids = [str(i) for i in range(ROWS)]
        random.Random(seed).shuffle(ids)
        barrier.wait(timeout=30)
        new = 0
        for start in range(0, ROWS, 50):
            poll = ledger.start_poll(T0)
            batch = [
                Redemption(id=i, contact=Contact(email=f"{i}@example.com"), raw={"id": i})
                for i in ids[start : start + 50]
            ]
            new += ledger.record(poll, batch, T0)
        barrier.wait(timeout=30)
        pks = sorted(e.pk for e in ledger.list(limit=ROWS * 2))
        barrier.wait(timeout=30)
        claimed = [pk for pk in pks if ledger.claim(pk, owner, T0, 600) is not None]
        barrier.wait(timeout=30)  # nobody releases (making rows claimable) before all tried
        # Read-then-write transactions from every process at once: on SQLite this is where
        # a deferred BEGIN would fail with "database is locked" instead of waiting.
        for pk in claimed:
            ledger.transition(pk, owner, State.WAITING, f"tried by {owner}", T0)
            ledger.release(pk, owner)
        results.put((owner, new, len(pks), claimed))
    finally:
        ledger.close()


def _race(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, f"w{n}", n, barrier, results))
        for n in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    outcomes = []
    try:
        for _ in procs:
            outcomes.append(results.get(timeout=60))
    except queue.Empty:
        pytest.fail(f"a worker process died; exit codes {[p.exitcode for p in procs]}")
    finally:
        for p in procs:
            p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    assert sum(new for _, new, _, _ in outcomes) == ROWS  # each recorded exactly once
    assert {seen for _, _, seen, _ in outcomes} == {ROWS}
    claims = [pk for _, _, _, claimed in outcomes for pk in claimed]
    assert len(claims) == ROWS, "a row was claimed twice" if len(claims) > ROWS else "unclaimed"
    assert len(set(claims)) == ROWS

    ledger = open_ledger(url, migrate=False)
    try:
        assert ledger.counts() == {State.WAITING: ROWS}
        for entry in ledger.list(limit=ROWS * 2):
            assert [e.to_state for e in ledger.events(entry.pk)] == [State.NEW, State.WAITING]
    finally:
        ledger.close()


def test_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrate.upgrade(url)
    _race(url)


@pytest.mark.postgres
def test_processes_share_one_postgresql_database(empty_pg_url: str) -> None:
    migrate.upgrade(empty_pg_url)
    _race(empty_pg_url)
