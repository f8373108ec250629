"""End to end through the worker: an Influence.io redemption the worker refuses has its
points refunded through the Platform API stand-in exactly once, even when the answer is lost;
without a key it is refused and left for a person, as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from poller.config import Config
from poller.core.backoff import RetrySchedule
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.sql import SqlLedger
from poller.ports import Decider
from poller.sources.influenceio.refunds import InfluenceioDecisions, InfluenceioRefunds
from poller.sources.influenceio.wire import parse_redeemed
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.fake import FakeVendor
from poller.worker.cycle import Worker, WorkerPolicy

from .conftest import API_KEY, MakePoints, Platform, redeemed

OWNER = "host:1:abc"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _worker(ledger: SqlLedger, decider: Decider, clock: Clock) -> Worker:
    vendor = FakeVendor("fake")
    return Worker(
        source=FakeInfluitive(), ledger=ledger, vendors=lambda name: vendor,
        vendor_names={"fake"}, rules=[],
        policy=WorkerPolicy(namespace="org", lease_seconds=60, unmapped="refuse",
                            schedule=RetrySchedule(max_attempts=3, initial_seconds=30,
                                                   max_seconds=60),
                            pending_recheck_seconds=60),
        owner=OWNER, clock=clock, deciders={"influenceio": decider},
    )


@pytest.fixture
def ledger(tmp_path: Any) -> Any:
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def test_a_refused_redemption_is_refunded_once_through_the_worker(
    platform: Platform, make_points: MakePoints, ledger: SqlLedger
) -> None:
    clock = Clock()
    worker = _worker(ledger, InfluenceioRefunds(make_points(), ledger, owner=OWNER,
                                                clock=clock), clock)
    ledger.record(0, [parse_redeemed(redeemed("evt-7", points=800))], clock())
    platform.state.lose_answers(1, "drop")

    worker.run_cycle()  # refusing; the refund's answer is lost
    entry = ledger.get("influenceio", "evt-7")
    assert entry is not None and entry.state is State.REFUSING
    clock.now += timedelta(minutes=5)
    worker.run_cycle()  # looked up, found: refused without a second award
    worker.run_cycle()

    entry = ledger.get("influenceio", "evt-7")
    assert entry is not None and entry.state is State.REFUSED
    assert [(a.customer_id, a.points) for a in platform.state.awards()] == [("c-1", 800)]
    details = [e.detail for e in ledger.events(entry.pk)]
    refunding = [d for d in details if d.startswith("refunding: refund of 800 points")]
    assert refunding and details.index(refunding[0]) < len(details) - 1


def test_without_a_key_the_refusal_is_left_for_a_person(
    platform: Platform, ledger: SqlLedger
) -> None:
    clock = Clock()
    worker = _worker(ledger, InfluenceioDecisions(), clock)
    ledger.record(0, [parse_redeemed(redeemed("evt-8"))], clock())

    worker.run_cycle()

    entry = ledger.get("influenceio", "evt-8")
    assert entry is not None and entry.state is State.REFUSED
    assert platform.state.awards() == []


def test_the_app_wires_the_refund_only_with_a_key(tmp_path: Any, platform: Platform) -> None:
    from poller.compose import Runtime

    base = {"influitive": {"api_token": "t" * 20, "org_id": "org"},
            "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"}}
    with Runtime(Config(**base)) as runtime:
        assert isinstance(runtime.deciders["influenceio"], InfluenceioDecisions)
    keyed = {**base, "influenceio": {"api_key": API_KEY, "base_url": platform.url}}
    with Runtime(Config(**keyed)) as runtime:
        assert isinstance(runtime.deciders["influenceio"], InfluenceioRefunds)
        assert runtime.worker.deciders["influenceio"] is runtime.deciders["influenceio"]
