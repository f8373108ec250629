"""The reconciliation cases on the SQL ledgers (SQLite file and PostgreSQL schema), with the
fakes around the worker: the ledger's queries (complete polls missed, rows still listed,
unfinished steps, lease renewal) are what decides here."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from poller.core.backoff import RetrySchedule
from poller.domain.errors import AlreadyDecided, ConfigFixable, TransientVendorError
from poller.domain.model import OrderRequest, OrderResult
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.sql import SqlLedger
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.fake import FakeVendor
from poller.worker.cycle import Worker, WorkerPolicy, utcnow
from tests.unit.test_worker import RULES, Clock, redemption


class SlowVendor(FakeVendor):
    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__("fake")
        self.seconds = seconds

    def place_order(self, request: OrderRequest) -> OrderResult:
        time.sleep(self.seconds)
        return super().place_order(request)


class SqlRig:
    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger
        self.source = FakeInfluitive()
        self.vendor = SlowVendor()
        self.clock = Clock()

    def worker(self, owner: str = "w1", *, real_time: bool = False, max_attempts: int = 3,
               lease_seconds: float = 60, **kw: Any) -> Worker:
        return Worker(
            source=self.source, ledger=self.ledger, vendors=lambda name: self.vendor,
            vendor_names={"fake"}, rules=RULES,
            policy=WorkerPolicy(namespace="org", lease_seconds=lease_seconds, concurrency=1,
                                schedule=RetrySchedule(max_attempts=max_attempts,
                                                       initial_seconds=30, max_seconds=600),
                                **kw),
            owner=owner, clock=utcnow if real_time else self.clock,
        )

    def cycle(self, worker: Worker, seconds: float = 60) -> None:
        self.clock.advance(seconds)
        worker.run_cycle()

    def state(self, rid: int) -> State:
        entry = self.ledger.get("influitive", str(rid))
        assert entry is not None
        return entry.state

    def key(self, rid: int) -> str:
        entry = self.ledger.get("influitive", str(rid))
        assert entry is not None and entry.idempotency_key
        return entry.idempotency_key


@pytest.fixture
def rig(ledger_url: str) -> Iterator[SqlRig]:
    # The rig moves time by hand, so the ledger goes by the clock it is given (on PostgreSQL
    # too); the workers that run in real time read the same clock.
    ledger = open_ledger(ledger_url, migrate=True, process_clock=True)
    try:
        yield SqlRig(ledger)
    finally:
        ledger.close()


def test_an_empty_list_closes_nothing_at_once_and_a_listed_one_reopens(rig: SqlRig) -> None:
    worker = rig.worker(max_attempts=50)
    rig.vendor.fail(TransientVendorError("503", vendor="fake"), times=None)
    rig.source.seed(redemption(1), redemption(2, reward_id=99))
    worker.run_cycle()
    rig.source.empty_polls(2)  # two empty reads, a moment apart
    rig.cycle(worker)
    assert rig.state(1) is State.WAITING and rig.state(2) is State.HELD
    rig.cycle(worker)  # the second empty read, in a separate cycle: gone
    assert rig.state(1) is State.CLOSED_UPSTREAM and rig.state(2) is State.CLOSED_UPSTREAM
    rig.vendor.clear_scripts()
    rig.cycle(worker)  # listed again
    assert rig.state(1) is State.FULFILLED and rig.state(2) is State.HELD
    assert rig.vendor.created[rig.key(1)] == 1


def test_a_decision_that_did_not_take_effect_is_sent_again(rig: SqlRig) -> None:
    worker = rig.worker()
    rig.source.seed(redemption(1))
    rig.source.ignore_next("fulfill")
    worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    rig.cycle(worker)
    assert rig.state(1) is State.ORDERED
    rig.cycle(worker, 3600)
    assert rig.state(1) is State.FULFILLED
    assert len(rig.source.accepted_decisions()) == 1
    assert rig.vendor.created[rig.key(1)] == 1


def test_a_persistent_404_to_a_refusal_is_held_naming_refuse_verb(rig: SqlRig) -> None:
    worker = rig.worker(unmapped="refuse", max_attempts=2)
    rig.source.seed(redemption(1, reward_id=99))
    rig.source.fail_next("refuse", *[AlreadyDecided("already decided (HTTP 404)")] * 4)
    worker.run_cycle()
    assert rig.state(1) is State.PERHAPS_REFUSED
    for _ in range(4):
        rig.cycle(worker, 3600)
    entry = rig.ledger.get("influitive", "1")
    assert entry is not None and entry.state is State.HELD
    assert "refuse_verb" in (entry.hold_reason or "")
    assert rig.source.decided("1") is None


def test_a_perhaps_decided_one_is_confirmed_by_complete_polls(rig: SqlRig) -> None:
    worker = rig.worker()
    rig.source.seed(redemption(1))
    original = rig.source.fulfill

    def admin_first(rid: str, message: str) -> None:
        rig.source.decide_in_ui(rid, "fulfill")
        original(rid, message)

    rig.source.fulfill = admin_first  # type: ignore[method-assign]
    worker.run_cycle()
    assert rig.state(1) is State.PERHAPS_FULFILLED
    rig.cycle(worker)
    assert rig.state(1) is State.PERHAPS_FULFILLED  # one complete poll is not enough
    rig.cycle(worker)
    assert rig.state(1) is State.FULFILLED


def test_an_unknown_look_up_never_closes_nor_orders(rig: SqlRig) -> None:
    worker = rig.worker(max_attempts=20)
    rig.vendor.fail(TransientVendorError("503", vendor="fake"))
    rig.source.seed(redemption(1))
    worker.run_cycle()
    rig.source.decide_in_ui("1")
    rig.vendor.fail(TransientVendorError("connect failed", vendor="fake"), on="lookup",
                    times=None)
    for _ in range(4):
        rig.cycle(worker, 3600)
    assert rig.state(1) is State.WAITING
    assert rig.vendor.created[rig.key(1)] == 0
    rig.vendor.clear_scripts()
    rig.cycle(worker, 3600)
    assert rig.state(1) is State.CLOSED_UPSTREAM


def test_a_config_typo_is_held_at_once(rig: SqlRig) -> None:
    worker = rig.worker(max_attempts=8)
    rig.vendor.fail(ConfigFixable("unknown brand acme", vendor="fake"), times=None)
    rig.source.seed(redemption(1))
    worker.run_cycle()
    entry = rig.ledger.get("influitive", "1")
    assert entry is not None and entry.state is State.HELD
    assert rig.source.decisions == []


def test_a_vendor_call_longer_than_the_lease_is_sent_once(rig: SqlRig) -> None:
    rig.vendor.seconds = 1.5
    first = rig.worker("w1", real_time=True, lease_seconds=0.4)
    second = rig.worker("w2", real_time=True, lease_seconds=0.4)
    rig.source.seed(redemption(1))
    thread = threading.Thread(target=first.run_cycle)
    thread.start()
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:  # the next cycles, while the call is in flight
        second.run_cycle()
        time.sleep(0.2)
    thread.join()
    assert rig.vendor.calls[rig.key(1)] == 1
    assert rig.state(1) is State.FULFILLED


def test_a_step_that_never_finishes_is_held(rig: SqlRig) -> None:
    worker = rig.worker(max_attempts=2)
    rig.vendor.fail(TransientVendorError("503", vendor="fake"))
    rig.source.seed(redemption(1))
    worker.run_cycle()
    entry = rig.ledger.get("influitive", "1")
    assert entry is not None
    for n in range(2):  # two workers took it and died mid-step
        rig.clock.advance(3600)
        assert rig.ledger.claim(entry.pk, f"dead-{n}", rig.clock(), 60) is not None
    rig.cycle(worker, 3600)
    held = rig.ledger.get_pk(entry.pk)
    assert held is not None and held.state is State.HELD
    assert "never finished" in (held.hold_reason or "")
    assert held.unfinished_steps == 0  # that step finished
