"""PostgreSQL that stops answering: a frozen connection and a lock held elsewhere end in a
bounded time with LedgerUnavailable (exit 1 for `run --run-once`), and nothing the ledger
had is lost."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from poller.domain.model import INFLUITIVE, Contact, Redemption
from poller.ledger import LedgerUnavailable, migrate, open_ledger
from poller.ledger.sql import RECORD_LOCK, LedgerTimeouts
from tests.ledger.conftest import pg_schema
from tests.system.cli.conftest import Standins, run_cli

pytestmark = pytest.mark.postgres


class FreezingProxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL. ``freeze()`` stops every byte in
    both directions on the open connections and forwards nothing for new ones, while
    keeping every socket open: the network that hangs, not the one that fails."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._start(self._accept)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
            if self.frozen.is_set():
                continue  # accepted, never answered
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets.append(server)
            self._start(self._pump, client, server)
            self._start(self._pump, server, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while not self.closed.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                dst.close()
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self.closed.set()
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for s in sockets:
            s.close()
        for t in threads:
            t.join(timeout=2)


@pytest.fixture
def migrated_pg() -> Iterator[str]:
    with pg_schema("edge") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def proxy(migrated_pg: str) -> Iterator[FreezingProxy]:
    url = make_url(migrated_pg)
    p = FreezingProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield p
    finally:
        p.close()


def _via(url: str, proxy: FreezingProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)


def _redemption(rid: str) -> Redemption:
    return Redemption(source=INFLUITIVE, id=rid, reward_id="1", reward_name="Card",
                      contact=Contact(email="a@example.com"), raw={"id": rid})


def test_a_frozen_connection_ends_in_ledger_unavailable_within_the_deadline(
    migrated_pg: str, proxy: FreezingProxy
) -> None:
    ledger = open_ledger(_via(migrated_pg, proxy), migrate=False,
                         timeouts=LedgerTimeouts(statement_seconds=1, connect_seconds=1))
    try:
        ledger.ping()
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable, match=r"statement_timeout_seconds|timeout"):
            ledger.counts()
        assert time.monotonic() - started < 5
    finally:
        ledger.close()


def test_the_advisory_lock_wait_is_bounded_and_named(migrated_pg: str) -> None:
    holder = create_engine(migrated_pg)
    ledger = open_ledger(migrated_pg, migrate=False, timeouts=LedgerTimeouts(lock_seconds=1))
    outcome: list[BaseException | int] = []
    try:
        with holder.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({RECORD_LOCK})")

            def record() -> None:
                from datetime import UTC, datetime

                try:
                    outcome.append(ledger.record(0, [_redemption("1")], datetime.now(UTC)))
                except BaseException as exc:
                    outcome.append(exc)

            worker = threading.Thread(target=record, daemon=True)
            started = time.monotonic()
            worker.start()
            worker.join(timeout=15)
            waited = time.monotonic() - started
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({RECORD_LOCK})")
            worker.join(timeout=15)
        assert waited < 5, "record waited for the advisory lock without a bound"
        [result] = outcome
        assert isinstance(result, LedgerUnavailable)
        assert "[ledger] lock_timeout_seconds" in str(result)
    finally:
        ledger.close()
        holder.dispose()


@pytest.mark.e2e
def test_run_once_ends_with_exit_1_when_postgres_freezes_and_loses_nothing(
    standins: Standins, migrated_pg: str, proxy: FreezingProxy
) -> None:
    config = standins.config(ledger_url=_via(migrated_pg, proxy), lease_seconds="1")
    text = config.read_text().replace(
        "[ledger]\n",
        "[ledger]\nstatement_timeout_seconds = 2\nlock_timeout_seconds = 1\n"
        "connect_timeout_seconds = 2\n", 1)
    config.write_text(text)
    ids = list(range(1, 9))
    standins.seed(*ids)
    standins.tremendous.set_delay(0.5)

    result: list[tuple[int, float]] = []

    def run() -> None:
        started = time.monotonic()
        out = run_cli("run", "--run-once", config=config, timeout=120)
        result.append((out.returncode, time.monotonic() - started))
        (config.parent / "run.err").write_text(out.stderr)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 60
    while not standins.tremendous.counts() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert standins.tremendous.counts(), "no order reached the vendor"
    proxy.freeze()
    frozen_at = time.monotonic()
    runner.join(timeout=90)
    assert not runner.is_alive(), "run --run-once hung on the frozen connection"
    [(code, _)] = result
    err = (config.parent / "run.err").read_text()
    assert code == 1, err[-2000:]
    took = time.monotonic() - frozen_at
    assert took < 30, f"the run ended {took:.1f} s after the freeze"
    assert "unavailable" in err

    # Nothing lost: straight to the server, every redemption is there and every order the
    # vendor took is a row past ORDERING (so it is reconciled by key, never ordered again).
    direct = standins.config(ledger_url=migrated_pg, lease_seconds="1")
    listing = run_cli("ledger", "list", "--json", "--limit", "100", config=direct)
    rows = {r["redemption_id"]: r for r in json.loads(listing.stdout)}
    assert sorted(rows, key=int) == [str(i) for i in ids]
    ordered = standins.tremendous.counts()
    keys = {r.get("idempotency_key") for r in rows.values()}
    for external_id in ordered:
        assert external_id in keys, f"an order the vendor took ({external_id}) is not in the ledger"
    # Later runs straight to the server finish the work (leases of the frozen run expire
    # after lease_seconds; a redemption that failed waits out its backoff).
    deadline = time.monotonic() + 60
    while set(standins.accepted()) != {str(i) for i in ids} and time.monotonic() < deadline:
        time.sleep(1.5)
        run_cli("run", "--run-once", config=direct, timeout=120)
    assert set(standins.accepted()) == {str(i) for i in ids}, run_cli(
        "ledger", "list", "--json", config=direct).stdout
    assert all(c["created"] == 1 for c in standins.tremendous.counts().values())
    assert len(standins.tremendous.counts()) == len(ids)
