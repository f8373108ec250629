"""A vendor that cannot look an order up, on the SQL ledgers, with the real HTTP vendor and
its receiver stand-in around the worker (Influitive faked).

The case: the receiver hangs on the first order and records nothing; an admin refuses the
redemption in Influitive (the points are refunded); the receiver is down for three cycles,
then back. Before, the look-up repeated the order's POST, so the first cycle with the
receiver back created an order for a refused redemption and the ledger said "fulfilled".
Now the look-up only reads: the identical request goes again only while Influitive still
lists the redemption, and a redemption that left the list is held for a person.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import structlog

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.sql import SqlLedger
from poller.sandbox import http_receiver
from poller.sources.influitive.fake import FakeInfluitive
from poller.transport import RetryPolicy
from poller.vendors.http import HttpVendor
from poller.worker import operator
from poller.worker.cycle import CycleReport, Worker, WorkerPolicy
from tests.adapters.vendors.support import ReceiverStandin, receiver_standin
from tests.unit.test_worker import Clock, redemption

RULES = [RewardRule(reward_id="37", vendor="http", product="HOODIE-M", amount=Decimal("25"),
                    currency="USD")]
QUICK = RetryPolicy(attempts=1, initial_wait=0.001, max_wait=0.002, timeout=0.3)
"""Gives up on a hanging receiver quickly (the first send's outcome is then unknown)."""


class Network(httpx.BaseTransport):
    """The way to the receiver: up, or down (every connection refused). Writes down every
    request that left the worker."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.down = False
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.method)
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class Rig:
    def __init__(self, ledger: SqlLedger, receiver: ReceiverStandin, *,
                 lookup_route: bool = False) -> None:
        self.ledger = ledger
        self.receiver = receiver
        self.source = FakeInfluitive()
        self.network = Network()
        self.clock = Clock()
        self.vendor = HttpVendor(
            receiver.hook_url, receiver.secret, policy=QUICK, cache=ledger,
            transport=self.network, sleep=lambda _s: None,
            lookup_url=receiver.url + http_receiver.LOOKUP_PATH if lookup_route else None)
        self.worker = Worker(
            source=self.source, ledger=ledger, vendors=lambda name: self.vendor,
            vendor_names={"http"}, rules=RULES,
            policy=WorkerPolicy(namespace="org", concurrency=1, heartbeat=False,
                                schedule=RetrySchedule(max_attempts=20, initial_seconds=30,
                                                       max_seconds=600)),
            owner="w1", clock=self.clock,
        )

    def cycle(self) -> CycleReport:
        self.clock.advance(3600)  # past any backoff
        return self.worker.run_cycle()

    def entry(self) -> Any:
        found = self.ledger.get("influitive", "1")
        assert found is not None
        return found


@pytest.fixture
def receiver() -> ReceiverStandin:
    return receiver_standin()


@pytest.fixture
def rig(ledger_url: str, receiver: ReceiverStandin) -> Iterator[Rig]:
    # The rig moves time by hand: PostgreSQL takes it from the test clock, not its own.
    ledger = open_ledger(ledger_url, migrate=True, process_clock=True)
    made = Rig(ledger, receiver)
    try:
        yield made
    finally:
        made.vendor.close()
        ledger.close()


def test_a_refused_redemption_is_never_ordered_when_the_receiver_comes_back(rig: Rig) -> None:
    rig.source.seed(redemption(1))
    rig.receiver.state.ignore(1)  # hangs on the first order, records nothing
    rig.worker.run_cycle()
    assert rig.entry().state is State.WAITING
    assert rig.receiver.state.orders == {}

    rig.source.decide_in_ui("1", "refuse")  # an admin refuses it: the points are refunded
    refused_at = len(rig.network.sent)
    rig.network.down = True
    reports = []
    # With the context the cycle binds for each step, as the configured logger merges it.
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        for _ in range(3):
            reports.append(rig.cycle())
    rig.network.down = False
    for _ in range(3):
        rig.cycle()

    after = rig.network.sent[refused_at:]
    assert "POST" not in after  # nothing was sent as an order after the refusal
    assert rig.receiver.state.orders == {} and rig.receiver.state.posts() == 0
    entry = rig.entry()
    assert entry.state is State.HELD and entry.state is not State.FULFILLED
    assert "left Influitive's outstanding list" in (entry.hold_reason or "")
    assert entry.idempotency_key in (entry.hold_reason or "")
    assert rig.source.accepted_decisions() == []
    # The cycle that held it reported a problem (`run --run-once` exits 1 on it) and logged
    # an error naming the redemption.
    assert any(r.problems for r in reports)
    held = [e for e in logs if e["event"] == "redemption.unconfirmable.held"]
    assert len(held) == 1 and held[0]["redemption_id"] == "1"
    assert held[0]["log_level"] == "error"


def test_while_still_listed_the_identical_request_is_sent_again(rig: Rig) -> None:
    rig.source.seed(redemption(1))
    rig.receiver.state.lose_answers(1)  # taken, answer lost
    rig.worker.run_cycle()
    assert rig.entry().state is State.WAITING
    rig.cycle()
    entry = rig.entry()
    assert entry.state is State.FULFILLED
    key = entry.idempotency_key
    assert rig.receiver.state.counts()[key] == {"received": 2, "created": 1}
    assert [r["outcome"] for r in rig.receiver.state.received] == ["created", "repeat"]


def test_an_operator_retry_releases_without_sending_and_the_worker_holds_again(
    rig: Rig,
) -> None:
    rig.source.seed(redemption(1))
    rig.receiver.state.ignore(1)
    rig.worker.run_cycle()
    rig.source.decide_in_ui("1", "refuse")
    for _ in range(2):
        rig.cycle()
    assert rig.entry().state is State.HELD
    sent = len(rig.network.sent)
    with pytest.raises(operator.OperatorError, match="cannot tell whether an order exists"):
        operator.refuse(rig.ledger, lambda _n: rig.vendor, source="influitive",
                        redemption_id="1", message="sorry", actor="ops", now=rig.clock())
    released = operator.retry(rig.ledger, lambda _n: rig.vendor, source="influitive",
                              redemption_id="1", actor="ops", now=rig.clock())
    assert released.entry.state is State.WAITING
    assert "only while Influitive still lists it" in released.said
    assert rig.network.sent[sent:] == []  # the commands sent nothing
    for _ in range(2):
        rig.cycle()
    assert rig.entry().state is State.HELD
    assert "POST" not in rig.network.sent[sent:]
    assert rig.receiver.state.orders == {}


def test_a_pending_order_is_asked_again_by_repeating_the_request(rig: Rig) -> None:
    rig.source.seed(redemption(1, reward_id=37))
    rig.worker.rules = [RewardRule(reward_id="37", vendor="http", product="PENDING",
                                   amount=Decimal("25"), currency="USD")]
    rig.worker.run_cycle()
    entry = rig.entry()
    assert entry.state is State.PENDING
    sent = len(rig.network.sent)
    stepped = rig.worker.process(entry.pk)  # an operator command's step: sends nothing
    assert stepped is not None and stepped.state is State.PENDING
    assert rig.network.sent[sent:] == []
    rig.cycle()
    assert rig.entry().state is State.PENDING
    rig.receiver.state.approve(entry.idempotency_key)
    rig.cycle()
    assert rig.entry().state is State.FULFILLED
    assert rig.receiver.state.counts()[entry.idempotency_key] == {"received": 3, "created": 1}


def test_with_a_lookup_route_a_refused_redemption_is_closed_by_the_receivers_answer(
    ledger_url: str, receiver: ReceiverStandin,
) -> None:
    # The rig moves time by hand: PostgreSQL takes it from the test clock, not its own.
    ledger = open_ledger(ledger_url, migrate=True, process_clock=True)
    rig = Rig(ledger, receiver, lookup_route=True)
    try:
        rig.source.seed(redemption(1))
        rig.receiver.state.ignore(1)
        rig.worker.run_cycle()
        rig.source.decide_in_ui("1", "refuse")
        rig.network.down = True
        for _ in range(3):
            rig.cycle()
        assert rig.entry().state is State.WAITING  # could not ask: nothing decided
        rig.network.down = False
        refused_at = len(rig.network.sent)
        rig.cycle()
        assert rig.entry().state is State.CLOSED_UPSTREAM
        assert rig.network.sent[refused_at:] == ["GET"]
        assert rig.receiver.state.orders == {}
    finally:
        rig.vendor.close()
        ledger.close()
