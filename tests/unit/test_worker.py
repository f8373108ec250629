"""The worker cycle against the fakes and the in-memory ledger: every branch, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule
from poller.domain.errors import (
    AdvocateFacingError,
    OperatorFacingError,
    SourceAuthError,
    SourceUnavailable,
    TransientVendorError,
)
from poller.domain.model import OrderStatus, PollResult
from poller.domain.states import State
from poller.ledger.memory import MemoryLedger
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.fake import FakeVendor
from poller.worker.cycle import Worker, WorkerPolicy

RULES = [RewardRule(reward_id="37", vendor="fake", product="CARD25", amount=Decimal("25"),
                    currency="USD")]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def redemption(rid: int, **over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": rid, "reward_id": 37, "reward_name": "$25 gift card",
        "contact": {"id": rid, "email": f"a{rid}@example.com", "name": f"Advocate {rid}"},
    }
    item.update(over)
    return item


class Rig:
    def __init__(self, unmapped: str = "hold", max_attempts: int = 3) -> None:
        self.source = FakeInfluitive()
        self.ledger = MemoryLedger()
        self.vendor = FakeVendor("fake")
        self.clock = Clock()
        self.worker = self.make(unmapped=unmapped, max_attempts=max_attempts)

    def make(self, owner: str = "w1", **kw: Any) -> Worker:
        return Worker(
            source=self.source, ledger=self.ledger, vendors=lambda name: self.vendor,
            vendor_names={"fake"}, rules=RULES,
            policy=WorkerPolicy(
                namespace="org", lease_seconds=60, unmapped=kw.get("unmapped", "hold"),
                schedule=RetrySchedule(max_attempts=kw.get("max_attempts", 3),
                                       initial_seconds=30, max_seconds=600),
                pending_recheck_seconds=300,
            ),
            owner=owner, clock=self.clock,
        )

    def state(self, rid: int) -> State:
        entry = self.ledger.get("influitive", str(rid))
        assert entry is not None
        return entry.state

    def entry(self, rid: int) -> Any:
        return self.ledger.get("influitive", str(rid))


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_happy_path_orders_once_and_fulfills(rig: Rig) -> None:
    rig.source.seed(redemption(1), redemption(2))
    report = rig.worker.run_cycle()
    assert report.ok and report.new == 2
    assert rig.state(1) is State.FULFILLED and rig.state(2) is State.FULFILLED
    assert sum(rig.vendor.created.values()) == 2
    decisions = rig.source.accepted_decisions()
    assert {d.redemption_id for d in decisions} == {"1", "2"}
    assert all(d.verb == "fulfill" for d in decisions)
    assert "$25 gift card" in decisions[0].message
    # A second cycle does nothing: nothing is outstanding, nothing is due.
    again = rig.worker.run_cycle()
    assert again.steps == 0 and sum(rig.vendor.calls.values()) == 2


class WriteCounter(MemoryLedger):
    """The in-memory ledger, counting the per-redemption writes (each one transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def claim(self, *args: Any, **kw: Any) -> Any:
        self.writes.append("claim")
        return super().claim(*args, **kw)

    def claim_transition(self, *args: Any, **kw: Any) -> Any:
        self.writes.append("claim_transition")
        return super().claim_transition(*args, **kw)

    def transition(self, *args: Any, **kw: Any) -> Any:
        self.writes.append("transition+release" if kw.get("release") else "transition")
        return super().transition(*args, **kw)

    def release(self, *args: Any, **kw: Any) -> None:
        self.writes.append("release")
        super().release(*args, **kw)

    def renew(self, *args: Any, **kw: Any) -> bool:
        self.writes.append("renew")
        return super().renew(*args, **kw)


def test_a_new_redemption_is_fulfilled_in_three_writes(rig: Rig) -> None:
    rig.ledger = WriteCounter()
    worker = rig.make()
    rig.source.seed(redemption(1))
    worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    # The key saved with the lease taken, the vendor's answer, the decision with the lease
    # given back: the three commits the delivery guarantee needs, no more.
    assert rig.ledger.writes == ["claim_transition", "transition", "transition+release"]
    entry = rig.entry(1)
    assert entry.unfinished_steps == 0
    assert rig.ledger.claim(entry.pk, "w2", rig.clock(), 60) is not None


def test_a_step_that_ends_waiting_still_gives_the_lease_back(rig: Rig) -> None:
    rig.ledger = WriteCounter()
    worker = rig.make()
    rig.vendor.fail(TransientVendorError("503", vendor="fake", status=503))
    rig.source.seed(redemption(1))
    worker.run_cycle()
    assert rig.state(1) is State.WAITING
    assert rig.ledger.writes[-1] == "release" and rig.entry(1).unfinished_steps == 0


class PagedFake(FakeInfluitive):
    """The fake, read page by page as the real client is, then cut short."""

    page_size = 2
    recorded_before_next: list[int]

    def poll_pages(self, on_page: Any) -> PollResult:
        listed = self.poll().redemptions
        for start in range(0, len(listed), self.page_size):
            on_page(listed[start:start + self.page_size])
            self.recorded_before_next.append(self.ledger_rows())
        return PollResult(redemptions=(), streamed=len(listed), complete=False,
                          pages=-(-len(listed) // self.page_size), requests=1)

    def ledger_rows(self) -> int:
        raise NotImplementedError


def test_pages_are_recorded_as_read_and_an_incomplete_poll_is_still_worked(rig: Rig) -> None:
    ledger = rig.ledger

    class Source(PagedFake):
        def ledger_rows(self) -> int:
            return sum(ledger.counts().values())

    source = Source()
    source.recorded_before_next = []
    source.seed(*(redemption(i) for i in range(1, 6)))
    rig.source = source
    report = rig.make().run_cycle()
    # Each page was in the ledger before the next one was read.
    assert source.recorded_before_next == [2, 4, 5]
    assert (report.seen, report.new, report.poll_complete) == (5, 5, False)
    assert all(rig.state(i) is State.FULFILLED for i in range(1, 6))
    last = rig.ledger.last_successful_poll()
    assert last is not None and (last.seen, last.complete) == (5, False)


def test_the_story_is_in_the_events(rig: Rig) -> None:
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    story = [(e.from_state, e.to_state) for e in rig.ledger.events(rig.entry(1).pk)]
    assert story == [(None, State.NEW), (State.NEW, State.ORDERING),
                     (State.ORDERING, State.ORDERED), (State.ORDERED, State.FULFILLED)]


def test_key_is_saved_before_the_vendor_call(rig: Rig) -> None:
    seen: list[Any] = []
    original = rig.vendor.place_order

    def spy(request: Any) -> Any:
        entry = rig.entry(1)
        seen.append((entry.state, entry.idempotency_key))
        return original(request)

    rig.vendor.place_order = spy  # type: ignore[method-assign]
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert seen == [(State.ORDERING, rig.entry(1).idempotency_key)]
    assert seen[0][1] is not None


def test_duplicate_in_one_poll_and_across_polls_is_recorded_once(rig: Rig) -> None:
    rig.source.seed(redemption(1))
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert len(rig.ledger.list()) == 1
    assert rig.vendor.created[rig.entry(1).idempotency_key] == 1


def test_unmapped_is_held_by_default_and_refused_when_configured() -> None:
    held = Rig()
    held.source.seed(redemption(5, reward_id=99, reward_name="Swag box"))
    held.worker.run_cycle()
    assert held.state(5) is State.HELD
    assert "reward_id='99'" in held.entry(5).hold_reason
    assert held.source.accepted_decisions() == []

    refused = Rig(unmapped="refuse")
    refused.source.seed(redemption(5, reward_id=99))
    refused.worker.run_cycle()
    assert refused.state(5) is State.REFUSED
    assert [d.verb for d in refused.source.accepted_decisions()] == ["refuse"]
    assert refused.vendor.calls == {}


def test_advocate_facing_vendor_error_refuses(rig: Rig) -> None:
    rig.vendor.fail(AdvocateFacingError("fake: product X9 unavailable (HTTP 422)",
                                        vendor="fake", status=422))
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert rig.state(1) is State.REFUSED
    decision = rig.source.accepted_decisions()[0]
    # The advocate reads plain words; the operator's detail stays in the ledger.
    assert decision.verb == "refuse" and "not available at the moment" in decision.message
    assert "HTTP 422" not in decision.message
    assert "HTTP 422" in rig.ledger.events(rig.entry(1).pk)[-2].detail


def test_operator_facing_error_waits_and_goes_through_after_a_top_up(rig: Rig) -> None:
    rig.vendor.fail(OperatorFacingError("not enough funds", vendor="fake", status=402))
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert rig.state(1) is State.WAITING
    assert rig.entry(1).attempts == 1
    # Not due yet: the next cycle leaves it alone.
    rig.worker.run_cycle()
    assert rig.entry(1).attempts == 1
    rig.clock.advance(31)
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    assert sum(rig.vendor.created.values()) == 1
    assert rig.source.accepted_decisions()[0].verb == "fulfill"


def test_transient_errors_back_off_then_hold_after_max_attempts(rig: Rig) -> None:
    rig.vendor.fail(TransientVendorError("503", vendor="fake", status=503), times=None)
    rig.source.seed(redemption(1))
    waits = []
    for _ in range(3):
        rig.worker.run_cycle()
        entry = rig.entry(1)
        if entry.next_attempt_at:
            waits.append((entry.next_attempt_at - rig.clock.now).total_seconds())
        rig.clock.advance(10_000)
    assert rig.state(1) is State.HELD
    assert "gave up after 3 attempts" in rig.entry(1).hold_reason
    assert waits == [30, 60]
    assert rig.source.accepted_decisions() == []  # never refused


def test_retry_after_is_honoured(rig: Rig) -> None:
    rig.vendor.fail(TransientVendorError("429", vendor="fake", status=429, retry_after=900))
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert rig.entry(1).next_attempt_at == rig.clock.now + timedelta(seconds=900)


def test_one_attempt_per_cycle(rig: Rig) -> None:
    rig.vendor.fail(TransientVendorError("503", vendor="fake"), times=None)
    rig.source.seed(redemption(1))
    rig.clock.now += timedelta(0)
    rig.worker.run_cycle()
    assert sum(rig.vendor.calls.values()) == 1


def test_lost_answer_is_reconciled_by_key_without_a_second_order(rig: Rig) -> None:
    rig.vendor.lose_answer()
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    entry = rig.entry(1)
    assert entry.state is State.WAITING and entry.idempotency_key
    rig.clock.advance(60)
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    assert rig.vendor.created[entry.idempotency_key] == 1
    assert rig.vendor.lookups[entry.idempotency_key] >= 1


def test_redemption_decided_in_the_ui_is_never_ordered(rig: Rig) -> None:
    rig.vendor.fail(TransientVendorError("503", vendor="fake"))
    rig.source.seed(redemption(1), redemption(2, reward_id=99))
    rig.worker.run_cycle()
    assert rig.state(1) is State.WAITING and rig.state(2) is State.HELD
    rig.source.decide_in_ui("1", "refuse")
    rig.source.decide_in_ui("2", "fulfill")
    rig.clock.advance(1000)
    rig.worker.run_cycle()
    # Missing from one complete poll: not gone yet, and not ordered either (not listed).
    assert rig.state(1) is State.WAITING and rig.state(2) is State.HELD
    rig.clock.advance(1000)
    rig.worker.run_cycle()
    assert rig.state(1) is State.CLOSED_UPSTREAM
    assert rig.state(2) is State.CLOSED_UPSTREAM
    assert sum(rig.vendor.created.values()) == 0


def test_nothing_is_closed_or_ordered_from_an_incomplete_poll(rig: Rig) -> None:
    rig.vendor.fail(TransientVendorError("503", vendor="fake"))
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    rig.source.decide_in_ui("1")
    rig.source.complete = False
    rig.clock.advance(1000)
    rig.worker.run_cycle()
    assert rig.state(1) is State.WAITING  # not closed: the poll did not read every page
    assert sum(rig.vendor.created.values()) == 0  # and not ordered: it was not seen


def test_poll_failure_orders_nothing_but_still_decides(rig: Rig) -> None:
    rig.source.seed(redemption(1))
    rig.source.fail_next("fulfill", SourceUnavailable("Influitive 503"))
    rig.worker.run_cycle()
    assert rig.state(1) is State.ORDERED
    rig.source.seed(redemption(2))
    rig.source.fail_next("poll", SourceUnavailable("down"))
    rig.clock.advance(1000)
    report = rig.worker.run_cycle()
    assert not report.ok
    assert rig.state(1) is State.FULFILLED
    assert rig.entry(2) is None


def test_auth_failure_aborts_the_cycle(rig: Rig) -> None:
    rig.source.fail_next("poll", SourceAuthError("HTTP 401"))
    with pytest.raises(SourceAuthError):
        rig.worker.run_cycle()
    assert rig.ledger.last_successful_poll() is None


def test_already_decided_is_perhaps_decided_until_complete_polls_confirm_it(rig: Rig) -> None:
    rig.source.seed(redemption(1))
    original = rig.source.fulfill

    def admin_first(rid: str, message: str) -> None:
        rig.source.decide_in_ui(rid, "fulfill")
        original(rid, message)

    rig.source.fulfill = admin_first  # type: ignore[method-assign]
    rig.worker.run_cycle()
    entry = rig.entry(1)
    assert entry.state is State.PERHAPS_FULFILLED
    assert "perhaps already decided" in rig.ledger.events(entry.pk)[-1].detail
    for _ in range(2):  # absent from two complete polls: confirmed
        rig.clock.advance(60)
        rig.worker.run_cycle()
    entry = rig.entry(1)
    assert entry.state is State.FULFILLED
    assert "confirmed" in rig.ledger.events(entry.pk)[-1].detail
    assert len([d for d in rig.source.decisions if d.by == "worker"]) == 1


def test_pending_orders_are_rechecked_then_fulfilled(rig: Rig) -> None:
    rig.vendor.pending(polls=1)
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert rig.state(1) is State.PENDING
    rig.clock.advance(301)
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    assert sum(rig.vendor.created.values()) == 1


def test_failed_vendor_order_is_held_not_refused(rig: Rig) -> None:
    rig.vendor.pending(polls=1, final=OrderStatus.FAILED)
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    rig.clock.advance(301)
    rig.worker.run_cycle()
    assert rig.state(1) is State.HELD
    assert rig.source.accepted_decisions() == []


def test_malformed_redemptions_are_held_and_the_good_ones_go_through(rig: Rig) -> None:
    rig.source.seed(
        redemption(1),
        redemption(2, contact={"id": 2}),
        redemption(3, reward_metadata={"vendor": "fake", "product": "X", "amount": "-5"}),
        {"reward_id": 37},  # no id: cannot be recorded
    )
    report = rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    assert rig.state(2) is State.HELD and "no email" in rig.entry(2).hold_reason
    assert rig.state(3) is State.HELD and "amount" in rig.entry(3).hold_reason
    assert report.rejected == 1


def test_two_workers_never_order_the_same_redemption(rig: Rig) -> None:
    other = rig.make(owner="w2")
    rig.source.seed(*(redemption(i) for i in range(1, 21)))
    rig.worker.run_cycle()
    other.run_cycle()
    assert all(count == 1 for count in rig.vendor.created.values())
    assert len(rig.source.accepted_decisions()) == 20


def test_stop_finishes_the_redemption_in_hand_and_stops(rig: Rig) -> None:
    """The vendor call in flight is finished and its answer recorded; nothing new leaves
    after the stop (not even the fulfilment, which Influitive's request budget would not
    send), and the lease goes back, so the next cycle fulfils it at once."""
    rig.source.seed(*(redemption(i) for i in range(1, 4)))
    original = rig.vendor.place_order

    def stop_after_first(request: Any) -> Any:
        rig.worker.stop.set()
        return original(request)

    rig.vendor.place_order = stop_after_first  # type: ignore[method-assign]
    report = rig.worker.run_cycle()
    assert report.stopped_early and report.not_started == 2
    states = sorted(rig.state(i).value for i in range(1, 4))
    assert states == ["new", "new", "ordered"]
    assert rig.source.accepted_decisions() == []
    ordered = next(e for e in rig.ledger.list(limit=10) if e.state is State.ORDERED)
    assert ordered.attempts == 0 and ordered.next_attempt_at is None  # no attempt counted
    rig.vendor.place_order = original  # type: ignore[method-assign]
    rig.worker.stop.clear()
    rig.worker.run_cycle()
    assert {rig.state(i) for i in range(1, 4)} == {State.FULFILLED}
    assert rig.vendor.order_count == 3


def test_a_stop_before_the_order_is_sent_releases_the_redemption(rig: Rig) -> None:
    """A redemption whose key is saved (a run was interrupted after it) is looked up first;
    a stop that comes during the look-up sends no order: the lease goes back at once and the
    next cycle takes it, looks it up again and orders it once."""
    rig.source.seed(redemption(1))
    rig.vendor.fail(TransientVendorError("503", vendor="fake"))
    rig.worker.run_cycle()
    assert rig.state(1) is State.WAITING and rig.entry(1).idempotency_key
    rig.clock.advance(3600)
    original = rig.vendor.lookup

    def stop_during_lookup(key: str) -> Any:
        rig.worker.stop.set()
        return original(key)

    rig.vendor.lookup = stop_during_lookup  # type: ignore[method-assign]
    report = rig.worker.run_cycle()
    assert report.released == 1 and report.steps == 0
    assert rig.state(1) is State.WAITING
    assert rig.vendor.order_count == 0
    assert [e.redemption_id for e in rig.ledger.due(rig.clock(), 10)] == ["1"]  # lease free
    rig.vendor.lookup = original  # type: ignore[method-assign]
    rig.worker.stop.clear()
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    assert rig.vendor.order_count == 1


def test_an_unexpected_error_holds_that_redemption_and_the_rest_go_through(rig: Rig) -> None:
    rig.source.seed(redemption(1), redemption(2), redemption(3))
    original = rig.vendor.place_order

    def broken_for_two(request: Any) -> Any:
        if request.redemption_id == "2":
            raise KeyError("a bug nobody foresaw")
        return original(request)

    rig.vendor.place_order = broken_for_two  # type: ignore[method-assign]
    report = rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED and rig.state(3) is State.FULFILLED
    assert rig.state(2) is State.HELD
    assert "KeyError" in rig.entry(2).hold_reason
    assert any("redemption 2" in e for e in report.errors)
