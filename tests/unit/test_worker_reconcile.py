"""The worker against the outside world's ambiguous answers (fakes, in-memory ledger).

No single answer may become a final state: an empty list, a decision that did not take
effect, a look-up that could not reach the vendor, a config typo, a call slower than the
lease. The same cases run on SQLite and PostgreSQL in tests/ledger/worker/test_reconcile_sql.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from poller.core.backoff import RetrySchedule
from poller.domain.errors import (
    AlreadyDecided,
    ConfigFixable,
    SourceBlocked,
    TransientVendorError,
)
from poller.domain.model import OrderRequest, OrderResult
from poller.domain.states import State
from poller.ledger.memory import MemoryLedger
from poller.vendors.fake import FakeVendor
from poller.worker.cycle import Worker, WorkerPolicy, utcnow
from tests.unit.test_worker import RULES, Rig, redemption


def key(rig: Rig, rid: int) -> str:
    entry = rig.entry(rid)
    assert entry.idempotency_key
    return str(entry.idempotency_key)


def cycle(rig: Rig, seconds: float = 60) -> None:
    rig.clock.advance(seconds)
    rig.worker.run_cycle()


def test_an_empty_list_never_closes_anything_at_once_and_a_listed_one_reopens() -> None:
    rig = Rig(max_attempts=50)
    rig.vendor.fail(TransientVendorError("503", vendor="fake"), times=None)
    rig.source.seed(redemption(1), redemption(2, reward_id=99))
    rig.worker.run_cycle()
    assert rig.state(1) is State.WAITING and rig.state(2) is State.HELD
    # Missing from one complete poll, seen again, missing again: never twice in a row.
    for _ in range(2):
        rig.source.empty_polls(1)
        cycle(rig)
        cycle(rig)
    assert rig.state(1) is State.WAITING and rig.state(2) is State.HELD
    # The list comes back empty for two reads a moment apart: this cycle reads it once,
    # and absence from one complete poll is not "gone".
    rig.source.empty_polls(2)
    cycle(rig)
    assert rig.state(1) is State.WAITING and rig.state(2) is State.HELD
    # Missing again in the next cycle: two complete polls in separate cycles, closed as
    # decided elsewhere.
    cycle(rig)
    assert rig.state(1) is State.CLOSED_UPSTREAM and rig.state(2) is State.CLOSED_UPSTREAM
    # Influitive lists them again: the poll is the truth, both are reopened and worked.
    rig.vendor.clear_scripts()
    cycle(rig)
    assert rig.state(1) is State.FULFILLED
    assert rig.state(2) is State.HELD
    details = [e.detail for e in rig.ledger.events(rig.entry(1).pk)]
    assert any("lists it again" in d for d in details)
    assert rig.vendor.created[key(rig, 1)] == 1
    assert [d.redemption_id for d in rig.source.accepted_decisions()] == ["1"]


def test_a_fulfilment_that_did_not_take_effect_is_sent_again() -> None:
    rig = Rig()
    rig.source.seed(redemption(1))
    rig.source.ignore_next("fulfill")  # answered 2xx, applied nothing
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED  # what the answer said
    # The next complete poll still lists it: a discrepancy, acted on and recorded.
    cycle(rig)
    entry = rig.entry(1)
    assert entry.state is State.ORDERED
    assert any("still lists it" in e.detail for e in rig.ledger.events(entry.pk))
    rig.clock.advance(3600)  # past the retry schedule
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    assert len(rig.source.accepted_decisions()) == 1
    assert rig.vendor.created[key(rig, 1)] == 1  # the decision again, never the order
    cycle(rig)
    assert rig.state(1) is State.FULFILLED


def test_a_firewall_challenge_is_retried_on_the_schedule() -> None:
    rig = Rig()
    rig.source.seed(redemption(1))
    rig.source.fail_next("fulfill", SourceBlocked("Influitive firewall challenge (HTTP 202)"))
    rig.worker.run_cycle()
    entry = rig.entry(1)
    assert entry.state is State.ORDERED and entry.next_attempt_at is not None
    assert "firewall" in (entry.last_error or "")
    rig.clock.advance(3600)
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    assert len(rig.source.accepted_decisions()) == 1


def test_a_persistent_404_to_a_refusal_is_held_naming_the_refuse_verb() -> None:
    rig = Rig(max_attempts=3)
    rig.source.seed(redemption(1, reward_id=99))
    worker = rig.make(unmapped="refuse", max_attempts=3)
    rig.source.fail_next("refuse", *[AlreadyDecided(
        "Influitive refuse of redemption 1: already decided (HTTP 404)") for _ in range(5)])
    worker.run_cycle()
    assert rig.state(1) is State.PERHAPS_REFUSED
    for _ in range(8):
        rig.clock.advance(3600)
        worker.run_cycle()
        if rig.state(1) is State.HELD:
            break
    entry = rig.entry(1)
    assert entry.state is State.HELD
    assert "refuse_verb" in (entry.hold_reason or "")
    assert rig.source.decided("1") is None  # never took effect, never recorded as refused
    states = [e.to_state for e in rig.ledger.events(entry.pk)]
    assert State.REFUSED not in states and states.count(State.PERHAPS_REFUSED) == 3


def test_perhaps_decided_is_reverted_to_a_retry_when_still_listed() -> None:
    rig = Rig()
    rig.source.seed(redemption(1))
    rig.source.fail_next("fulfill", AlreadyDecided("already decided (HTTP 422)"))
    rig.worker.run_cycle()
    assert rig.state(1) is State.PERHAPS_FULFILLED
    cycle(rig)
    assert rig.state(1) is State.ORDERED
    rig.clock.advance(3600)
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    assert len(rig.source.accepted_decisions()) == 1


def test_an_unknown_look_up_waits_and_never_closes_nor_orders() -> None:
    rig = Rig(max_attempts=20)
    rig.vendor.fail(TransientVendorError("503", vendor="fake"))
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert rig.state(1) is State.WAITING and rig.entry(1).idempotency_key
    rig.source.decide_in_ui("1", "fulfill")
    rig.vendor.fail(TransientVendorError("look-up failed to connect", vendor="fake"),
                    on="lookup", times=None)
    for _ in range(6):
        cycle(rig, 3600)
    entry = rig.entry(1)
    assert entry.state is State.WAITING  # "unknown": it waits
    assert rig.vendor.lookups[key(rig, 1)] >= 2
    assert rig.vendor.created[key(rig, 1)] == 0 and rig.vendor.calls[key(rig, 1)] == 1
    # The vendor answers "not found": now, and only now, it closes without an order.
    rig.vendor.clear_scripts()
    cycle(rig, 3600)
    assert rig.state(1) is State.CLOSED_UPSTREAM
    assert rig.vendor.created[key(rig, 1)] == 0


def test_a_config_the_operator_must_fix_is_held_at_once_never_refused() -> None:
    rig = Rig(max_attempts=8)
    rig.vendor.fail(ConfigFixable("tango: unknown UTID U999", vendor="fake"), times=None)
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    entry = rig.entry(1)
    assert entry.state is State.HELD
    assert "U999" in (entry.hold_reason or "") and "[[rewards]]" in (entry.hold_reason or "")
    assert rig.vendor.calls[key(rig, 1)] == 1
    cycle(rig, 3600)
    assert rig.vendor.calls[key(rig, 1)] == 1  # held: no retries
    assert rig.source.decisions == []  # the advocate sees nothing, keeps the points


class SlowVendor(FakeVendor):
    def __init__(self, seconds: float) -> None:
        super().__init__("fake")
        self.seconds = seconds

    def place_order(self, request: OrderRequest) -> OrderResult:
        time.sleep(self.seconds)
        return super().place_order(request)


def real_time_worker(rig: Rig, vendor: FakeVendor, owner: str, **kw: Any) -> Worker:
    return Worker(
        source=rig.source, ledger=rig.ledger, vendors=lambda name: vendor,
        vendor_names={"fake"}, rules=RULES,
        policy=WorkerPolicy(namespace="org", lease_seconds=0.3,
                            schedule=RetrySchedule(max_attempts=3, initial_seconds=30),
                            concurrency=1, **kw),
        owner=owner, clock=utcnow,
    )


def test_a_vendor_call_longer_than_the_lease_is_not_sent_twice() -> None:
    rig = Rig()
    vendor = SlowVendor(seconds=1.2)
    first = real_time_worker(rig, vendor, "w1")
    second = real_time_worker(rig, vendor, "w2")
    rig.source.seed(redemption(1))
    done = threading.Event()

    def run_first() -> None:
        first.run_cycle()
        done.set()

    thread = threading.Thread(target=run_first)
    thread.start()
    time.sleep(0.6)  # twice the lease: without a heartbeat it ran out long ago
    assert not done.is_set()
    second.run_cycle()
    thread.join()
    entry = rig.entry(1)
    assert vendor.calls[key(rig, 1)] == 1
    assert entry.state is State.FULFILLED
    assert len(rig.source.accepted_decisions()) == 1


def test_a_step_that_keeps_failing_to_finish_is_held_after_max_attempts() -> None:
    rig = Rig(max_attempts=3)
    rig.vendor.fail(TransientVendorError("503", vendor="fake"))
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    pk = rig.entry(1).pk
    # Three workers in a row took the row and died mid-step (or lost the lease mid-call).
    for n in range(3):
        rig.clock.advance(3600)
        assert rig.ledger.claim(pk, f"dead-{n}", rig.clock(), 60) is not None
    rig.clock.advance(3600)
    rig.worker.run_cycle()
    entry = rig.entry(1)
    assert entry.state is State.HELD
    assert "never finished" in (entry.hold_reason or "")
    assert "lease_seconds" in (entry.hold_reason or "")
    assert rig.vendor.calls[key(rig, 1)] == 1
    # A step that finishes clears the count.
    assert isinstance(rig.ledger, MemoryLedger)
    assert rig.ledger.claim(pk, "w9", rig.clock() + timedelta(hours=1), 60) is not None
    rig.ledger.release(pk, "w9")
    assert rig.ledger.get_pk(pk) is not None
    assert rig.ledger.get_pk(pk).unfinished_steps == 0  # type: ignore[union-attr]


def test_gone_after_polls_is_configurable_and_never_below_two() -> None:
    import pydantic

    from poller.config.sections import LedgerSettings

    assert LedgerSettings().gone_after_polls == 2
    assert LedgerSettings(gone_after_polls=3).gone_after_polls == 3
    for bad in (0, 1):
        try:
            LedgerSettings(gone_after_polls=bad)
        except pydantic.ValidationError as exc:
            assert "gone_after_polls" in str(exc)
        else:
            raise AssertionError(f"gone_after_polls={bad} was accepted")


def test_three_polls_are_asked_for_when_configured() -> None:
    rig = Rig(max_attempts=50)
    worker = Worker(
        source=rig.source, ledger=rig.ledger, vendors=lambda name: rig.vendor,
        vendor_names={"fake"}, rules=RULES,
        policy=WorkerPolicy(namespace="org", lease_seconds=60, gone_after_polls=3),
        owner="w1", clock=rig.clock,
    )
    rig.source.seed(redemption(1, reward_id=99))
    worker.run_cycle()
    rig.source.empty_polls(3)
    for expected in (State.HELD, State.HELD, State.CLOSED_UPSTREAM):
        rig.clock.advance(60)
        worker.run_cycle()
        assert rig.state(1) is expected
