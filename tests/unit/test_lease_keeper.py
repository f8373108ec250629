"""The lease keeper: one thread renews the lease of every call in flight longer than an
interval, and says so when a lease was lost or could not be renewed."""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from structlog.testing import capture_logs

from poller.worker.leases import LeaseKeeper

INTERVAL = 0.05


class Renewals:
    def __init__(self, answer: bool = True, fail: bool = False) -> None:
        self.answer = answer
        self.fail = fail
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, pk: int) -> bool:
        with self._lock:
            self.calls.append(pk)
        if self.fail:
            raise RuntimeError("ledger down")
        return self.answer

    def count(self, pk: int) -> int:
        with self._lock:
            return self.calls.count(pk)


def _named() -> Any:
    """The step's log context, as the cycle binds it for every step."""
    return structlog.contextvars.bound_contextvars(redemption_id="r1")


def test_a_call_longer_than_the_interval_is_renewed_every_interval() -> None:
    renew = Renewals()
    keeper = LeaseKeeper(renew, INTERVAL)
    with keeper.held(7):
        time.sleep(INTERVAL * 4.5)
    seen = renew.count(7)
    assert seen >= 2
    time.sleep(INTERVAL * 2)
    assert renew.count(7) == seen  # nothing after the call ended


def test_a_short_call_is_never_renewed() -> None:
    renew = Renewals()
    keeper = LeaseKeeper(renew, INTERVAL)
    for pk in range(20):
        with keeper.held(pk):
            pass
    time.sleep(INTERVAL * 2)
    assert renew.calls == []


def test_calls_in_several_threads_are_each_renewed_by_the_one_thread() -> None:
    renew = Renewals()
    names: set[str] = set()

    def renew_and_note(pk: int) -> bool:
        names.add(threading.current_thread().name)
        return renew(pk)

    keeper = LeaseKeeper(renew_and_note, INTERVAL)

    def call(pk: int) -> None:
        with keeper.held(pk):
            time.sleep(INTERVAL * 3.5)

    threads = [threading.Thread(target=call, args=(pk,)) for pk in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(renew.count(pk) >= 2 for pk in range(4))
    assert names == {"lease-keeper"}


def test_a_lost_lease_is_logged_once_and_not_renewed_again() -> None:
    renew = Renewals(answer=False)
    keeper = LeaseKeeper(renew, INTERVAL)
    with capture_logs() as logs, _named(), keeper.held(3):
        time.sleep(INTERVAL * 4.5)
    assert renew.count(3) == 1
    lost = [e for e in logs if e["event"] == "redemption.lease.lost_in_call"]
    assert len(lost) == 1 and lost[0]["redemption_id"] == "r1"


def test_a_renewal_that_fails_is_logged_and_tried_again() -> None:
    renew = Renewals(fail=True)
    keeper = LeaseKeeper(renew, INTERVAL)
    with capture_logs() as logs, keeper.held(5):
        time.sleep(INTERVAL * 3.5)
    failed = [e for e in logs if e["event"] == "redemption.lease.renew_failed"]
    assert len(failed) >= 2
    assert failed[0]["error"] == "RuntimeError"


def test_the_thread_leaves_when_idle_and_comes_back_for_the_next_call() -> None:
    renew = Renewals()
    keeper = LeaseKeeper(renew, INTERVAL)
    with keeper.held(1):
        pass
    deadline = time.monotonic() + 2
    while keeper._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert keeper._thread is None
    with keeper.held(2):
        time.sleep(INTERVAL * 2.5)
    assert renew.count(2) >= 1
