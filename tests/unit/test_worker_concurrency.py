"""The worker's bounded concurrency, on fakes and the in-memory ledger: exactly once still
holds with several threads (and several workers) in one cycle, the stop flag still lets the
redemptions in hand finish and starts no new one, and the report counts every step."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule
from poller.domain.errors import SourceAuthError, TransientVendorError
from poller.domain.model import OrderRequest, OrderResult
from poller.domain.states import State
from poller.ledger.memory import MemoryLedger
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.fake import FakeVendor
from poller.worker.cycle import CycleReport, Worker, WorkerPolicy

RULES = [RewardRule(reward_id="37", vendor="fake", product="CARD25", amount=Decimal("25"),
                    currency="USD")]


def redemption(rid: int) -> dict[str, Any]:
    return {"id": rid, "reward_id": 37, "reward_name": "$25 gift card",
            "contact": {"id": rid, "email": f"a{rid}@example.com", "name": f"Advocate {rid}"}}


class SlowVendor(FakeVendor):
    """A FakeVendor whose calls take a little time, and which remembers how many ran at once
    and on which threads."""

    def __init__(self, seconds: float = 0.002) -> None:
        super().__init__("fake")
        self.seconds = seconds
        self.in_flight = 0
        self.most_in_flight = 0
        self.threads: set[str] = set()
        self._count = threading.Lock()

    def place_order(self, request: OrderRequest) -> OrderResult:
        with self._count:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.seconds)
            return super().place_order(request)
        finally:
            with self._count:
                self.in_flight -= 1


class Rig:
    def __init__(self, concurrency: int = 4, vendor: FakeVendor | None = None) -> None:
        self.source = FakeInfluitive()
        self.ledger = MemoryLedger()
        self.vendor = vendor if vendor is not None else SlowVendor()
        self.now = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
        self.worker = self.make(concurrency=concurrency)

    def make(self, owner: str = "w1", concurrency: int = 4) -> Worker:
        return Worker(
            source=self.source, ledger=self.ledger, vendors=lambda name: self.vendor,
            vendor_names={"fake"}, rules=RULES,
            policy=WorkerPolicy(
                namespace="org", lease_seconds=60, concurrency=concurrency,
                schedule=RetrySchedule(max_attempts=3, initial_seconds=30, max_seconds=600),
            ),
            owner=owner, clock=lambda: self.now,
        )

    def seed(self, n: int) -> None:
        self.source.seed(*(redemption(i) for i in range(1, n + 1)))

    def states(self) -> Counter[str]:
        return Counter(e.state.value for e in self.ledger.list(limit=10_000))

    def assert_exactly_once(self, n: int) -> None:
        assert self.vendor.order_count == n
        assert all(count == 1 for count in self.vendor.created.values())
        decided = Counter(d.redemption_id for d in self.source.accepted_decisions())
        assert len(decided) == n and set(decided.values()) == {1}
        # No decision was even attempted twice (a second one would answer "already decided").
        attempts = Counter(d.redemption_id for d in self.source.decisions)
        assert set(attempts.values()) == {1}


def test_a_backlog_is_worked_on_several_threads_each_redemption_exactly_once() -> None:
    rig = Rig(concurrency=8)
    rig.seed(200)
    report = rig.worker.run_cycle()
    assert report.ok and report.new == 200
    assert report.steps == 200 and report.outcomes == {"fulfilled": 200}
    assert rig.states() == Counter({"fulfilled": 200})
    rig.assert_exactly_once(200)
    assert isinstance(rig.vendor, SlowVendor)
    assert 2 <= rig.vendor.most_in_flight <= 8
    assert rig.worker.run_cycle().steps == 0


def test_concurrency_is_bounded_by_the_setting() -> None:
    rig = Rig(concurrency=3, vendor=SlowVendor(seconds=0.01))
    rig.seed(30)
    rig.worker.run_cycle()
    assert isinstance(rig.vendor, SlowVendor)
    assert rig.vendor.most_in_flight == 3
    assert len(rig.vendor.threads) == 3


class BusyVendor(SlowVendor):
    """Each call keeps the interpreter busy (no sleep, no I/O) until ``meet`` calls are in
    flight at once, or gives up after ``patience`` seconds: a process that only ever grew
    threads while idle would never bring them together."""

    def __init__(self, meet: int, patience: float = 10.0) -> None:
        super().__init__(seconds=0.0)
        self.meet = meet
        self.patience = patience
        self.met = threading.Event()

    def place_order(self, request: OrderRequest) -> OrderResult:
        with self._count:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.threads.add(threading.current_thread().name)
            if self.in_flight >= self.meet:
                self.met.set()
        try:
            deadline = time.monotonic() + self.patience
            while not self.met.is_set() and time.monotonic() < deadline:
                pass  # busy, on purpose
            return FakeVendor.place_order(self, request)
        finally:
            with self._count:
                self.in_flight -= 1


def test_a_cycle_runs_concurrency_threads_even_while_its_steps_keep_the_cpu_busy() -> None:
    # [schedule] concurrency is how many threads a cycle runs: all of them from the start,
    # whatever the process's CPU use.
    vendor = BusyVendor(meet=4)
    rig = Rig(concurrency=4, vendor=vendor)
    rig.seed(4)
    report = rig.worker.run_cycle()
    assert report.outcomes == {"fulfilled": 4}
    assert vendor.met.is_set() and vendor.most_in_flight == 4
    assert vendor.threads == {f"poller-worker-{i}" for i in range(4)}
    rig.assert_exactly_once(4)


def test_concurrency_one_works_in_the_calling_thread() -> None:
    rig = Rig(concurrency=1)
    rig.seed(5)
    rig.worker.run_cycle()
    assert isinstance(rig.vendor, SlowVendor)
    assert rig.vendor.threads == {threading.current_thread().name}
    assert rig.vendor.most_in_flight == 1
    rig.assert_exactly_once(5)


def test_two_workers_with_threads_at_the_same_time_order_each_redemption_once() -> None:
    rig = Rig()
    other = rig.make(owner="w2", concurrency=8)
    rig.seed(300)
    reports: list[CycleReport] = []
    barrier = threading.Barrier(2)

    def run(worker: Worker) -> None:
        barrier.wait()
        reports.append(worker.run_cycle())

    threads = [threading.Thread(target=run, args=(w,)) for w in (rig.worker, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Both polled the same 300; each redemption was stepped by exactly one of them.
    assert sum(r.steps for r in reports) == 300
    for _ in range(2):  # whatever one skipped because the other held its lease
        rig.worker.run_cycle()
    assert rig.states() == Counter({"fulfilled": 300})
    rig.assert_exactly_once(300)


def test_one_attempt_per_cycle_under_concurrency() -> None:
    rig = Rig(concurrency=8)
    rig.vendor.fail(TransientVendorError("503", vendor="fake"), times=None)
    rig.seed(40)
    report = rig.worker.run_cycle()
    assert report.steps == 40 and report.outcomes == {"waiting": 40}
    assert set(rig.vendor.calls.values()) == {1}
    assert all(e.attempts == 1 for e in rig.ledger.list(limit=100))
    # Not due again in the same minute: a second cycle asks the vendor nothing.
    rig.worker.run_cycle()
    assert set(rig.vendor.calls.values()) == {1}


def test_stop_finishes_the_redemptions_in_hand_and_starts_no_new_one() -> None:
    rig = Rig(concurrency=4, vendor=SlowVendor(seconds=0.02))
    rig.seed(40)
    original = rig.vendor.place_order
    started = threading.Event()

    def stop_on_first(request: OrderRequest) -> OrderResult:
        if not started.is_set():
            started.set()
            rig.worker.stop.set()
        return original(request)

    rig.vendor.place_order = stop_on_first  # type: ignore[method-assign]
    report = rig.worker.run_cycle()
    assert report.stopped_early
    states = rig.states()
    # Only the redemptions already taken by the four threads were worked on: each one sent
    # to the vendor has its answer recorded (ordered; the fulfilment waits for the next
    # cycle); one the stop caught before its order was sent is left ordering (its key
    # saved). Every lease was given back.
    assert 1 <= states["ordered"] <= 4
    released = states["ordering"]
    assert released == report.released <= 3
    assert states["new"] == 40 - states["ordered"] - released
    assert report.not_started == states["new"]
    assert sum(rig.vendor.created.values()) == states["ordered"]
    assert report.steps == states["ordered"]
    assert len(rig.ledger.due(rig.now, 100)) == 40


def test_auth_failure_in_one_thread_stops_the_others_and_is_raised() -> None:
    rig = Rig(concurrency=4, vendor=SlowVendor(seconds=0.01))
    rig.seed(40)
    rig.source.fail_next("fulfill", SourceAuthError("HTTP 401"))
    with pytest.raises(SourceAuthError):
        rig.worker.run_cycle()
    states = rig.states()
    # The threads finished what they held and took nothing new: most are still new, and
    # every one that was ordered is recorded as ordered (or further), none lost.
    assert states["new"] >= 40 - 8
    ordered = sum(rig.vendor.created.values())
    assert ordered == states["ordered"] + states["fulfilled"]
    assert states["ordering"] == 0
    # The leases were released: the next cycle carries on and ends every one exactly once.
    rig.worker.run_cycle()
    assert rig.states() == Counter({"fulfilled": 40})
    assert all(count == 1 for count in rig.vendor.created.values())


def test_the_report_counts_every_step_from_many_threads() -> None:
    report = CycleReport()

    def hammer() -> None:
        for i in range(2000):
            report.stepped(State.FULFILLED if i % 2 else State.WAITING)
            report.stepped(State.HELD)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert report.steps == 32_000
    assert report.outcomes == {"fulfilled": 8000, "waiting": 8000, "held": 16_000}


def test_a_newer_poll_by_another_worker_does_not_make_redemptions_look_gone() -> None:
    """Worker A polls; before it records, worker B (started later) polls and records the
    same redemptions with its newer poll id. They are still outstanding for A: A must order
    them, not close them as "left the outstanding list"."""
    rig = Rig(concurrency=4)
    rig.seed(10)
    fake = rig.source

    class Interleaved:
        def poll(self) -> Any:
            result = fake.poll()
            newer = rig.ledger.start_poll(rig.now)
            rig.ledger.record(newer, result.redemptions, rig.now)
            rig.ledger.finish_poll(newer, rig.now, ok=True, complete=True, seen=10)
            return result

        def fulfill(self, redemption_id: str, message: str) -> None:
            fake.fulfill(redemption_id, message)

        def refuse(self, redemption_id: str, message: str) -> None:
            fake.refuse(redemption_id, message)

    rig.worker.source = Interleaved()
    report = rig.worker.run_cycle()
    assert report.outcomes == {"fulfilled": 10}
    rig.assert_exactly_once(10)
