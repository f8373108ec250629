"""Several worker processes on one ledger: every redemption is recorded once, every row is
claimed by exactly one of them, and guarded orders never pass the daily spend limit, on
SQLite (one file) and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import queue
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from poller.domain.model import Contact, Redemption
from poller.domain.states import State
from poller.ledger import migrate, open_ledger
from poller.ports import Changes, SpendGuard, SpendLimitReached

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


# --- the spend guard under contention ----------------------------------------------------

CURRENCIES = [f"X{n:02d}" for n in range(8)]
ROWS_PER_CURRENCY = 10
SPEND_ROWS = len(CURRENCIES) * ROWS_PER_CURRENCY
AMOUNT = Decimal("10")
LIMIT = Decimal("25")  # room for 2 orders per currency, whoever places them
MIDNIGHT = datetime(2024, 5, 1, tzinfo=UTC)


def _spender(url: str, owner: str, barrier: Any, results: Any) -> None:
    """One process: try to take every row to ORDERING under its currency's daily limit.

    Every process walks the rows in the same order (grouped by currency), so the four of
    them reach each currency's limit at the same moment: eight chances per run for two
    transactions to both read "10 of 25 spent". Without the lock on PostgreSQL this test
    fails nearly every run."""
    ledger = open_ledger(url, migrate=False)
    try:
        pks = sorted(e.pk for e in ledger.list(limit=SPEND_ROWS * 2))
        ordered: list[tuple[int, str]] = []
        refused: list[int] = []
        barrier.wait(timeout=30)
        for pk in pks:
            # The lease is kept to the end, so each row is tried by exactly one process.
            entry = ledger.claim(pk, owner, T0, 600)
            if entry is None:
                continue
            currency = str(entry.payload["currency"])
            guard = SpendGuard(
                currency=currency, amount=AMOUNT, daily_limit=LIMIT, since=MIDNIGHT
            )
            try:
                ledger.transition(
                    pk, owner, State.ORDERING, f"ordered by {owner}", T0,
                    Changes(idempotency_key=f"key-{pk}", amount=AMOUNT, currency=currency,
                            ordered_at=T0),
                    expect=State.NEW, guard=guard,
                )
                ordered.append((pk, currency))
            except SpendLimitReached as e:
                assert e.spent + AMOUNT > LIMIT
                refused.append(pk)
        results.put((owner, ordered, refused))
    finally:
        ledger.close()


def _spend_race(url: str) -> None:
    ledger = open_ledger(url, migrate=False)
    try:
        poll = ledger.start_poll(T0)
        ledger.record(
            poll,
            [
                Redemption(id=str(i), raw={"id": i, "currency": CURRENCIES[i // ROWS_PER_CURRENCY]})
                for i in range(SPEND_ROWS)
            ],
            T0,
        )
    finally:
        ledger.close()

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_spender, args=(url, f"s{n}", barrier, results))
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

    ordered = [row for _, done, _ in outcomes for row in done]
    refused = [pk for _, _, no in outcomes for pk in no]
    # Every row tried exactly once.
    assert sorted([pk for pk, _ in ordered] + refused) == list(range(1, SPEND_ROWS + 1))
    per_currency = {c: sum(AMOUNT for _, oc in ordered if oc == c) for c in CURRENCIES}
    over = {c: total for c, total in per_currency.items() if total > LIMIT}
    assert not over, f"orders passed the limit of {LIMIT}: {over}"
    # And no order was refused while there was room for it.
    assert set(per_currency.values()) == {(LIMIT // AMOUNT) * AMOUNT}

    ledger = open_ledger(url, migrate=False)
    try:
        for currency, total in per_currency.items():
            assert ledger.spent_since(currency, MIDNIGHT) == total
        assert ledger.counts() == {State.ORDERING: len(ordered), State.NEW: len(refused)}
        for pk, _ in ordered:
            assert [e.to_state for e in ledger.events(pk)] == [State.NEW, State.ORDERING]
        for pk in refused:
            entry = ledger.get_pk(pk)
            assert entry is not None and entry.ordered_at is None and entry.amount is None
            assert len(ledger.events(pk)) == 1
    finally:
        ledger.close()


def test_the_spend_limit_holds_across_processes_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'spend.db'}"
    migrate.upgrade(url)
    _spend_race(url)


@pytest.mark.postgres
def test_the_spend_limit_holds_across_processes_on_postgresql(empty_pg_url: str) -> None:
    migrate.upgrade(empty_pg_url)
    _spend_race(empty_pg_url)


# --- threads of one process ------------------------------------------------------------------

THREADS = 24


def _many_threads(url: str) -> None:
    """More threads than SQLAlchemy's default pool (5 + 10 overflow), started together, each
    moving its own rows on pooled connections."""
    import threading

    ledger = open_ledger(url, threads=THREADS)
    try:
        assert ledger.engine.pool.size() >= THREADS  # type: ignore[attr-defined]
        poll = ledger.start_poll(T0)
        ledger.record(poll, [Redemption(id=str(i), contact=Contact(email=f"{i}@example.com"),
                                        raw={"id": i}) for i in range(THREADS * 3)], T0)
        rows = [e.pk for e in ledger.due(T0, THREADS * 3)]
        all_ready = threading.Barrier(THREADS, timeout=30)
        failures: list[BaseException] = []

        def work(n: int) -> None:
            try:
                all_ready.wait()
                for pk in rows[n::THREADS]:
                    owner = f"t{n}"
                    assert ledger.claim_transition(pk, owner, State.ORDERING, "o", T0, 60,
                                                   expect=State.NEW) is not None
                    ledger.transition(pk, owner, State.ORDERED, "p", T0,
                                      expect=State.ORDERING, release=True)
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert ledger.counts()[State.ORDERED] == THREADS * 3
        assert ledger.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        ledger.close()


def test_more_threads_than_the_default_pool_move_rows_on_sqlite(tmp_path: Path) -> None:
    _many_threads(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.mark.postgres
def test_more_threads_than_the_default_pool_move_rows_on_postgresql(
    empty_pg_url: str,
) -> None:
    migrate.upgrade(empty_pg_url)
    _many_threads(empty_pg_url)
