"""The worker with the new adapters and their stand-ins: an order the vendor has not finished
waits as ``pending`` and is fulfilled at Influitive only once the vendor says it is done;
the manual vendor waits for a person; refusals refund. In-memory ledger and fake Influitive,
real HTTP to the stand-ins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule
from poller.domain.model import Shipping
from poller.domain.states import State
from poller.ledger.memory import MemoryLedger
from poller.ports import Vendor
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.giftbit import GiftbitVendor, campaign_id
from poller.vendors.http import HttpVendor
from poller.vendors.manual import ManualVendor
from poller.vendors.tango import TangoVendor
from poller.worker.cycle import Worker, WorkerPolicy

from .support import FAST, giftbit_standin, make_request, receiver_standin, tango_standin

RECHECK = 300.0


class Rig:
    def __init__(self, vendor: Vendor, product: str | None, amount: str = "25") -> None:
        self.source = FakeInfluitive()
        self.ledger = MemoryLedger()
        self.vendor = vendor
        self.now = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
        self.worker = Worker(
            source=self.source, ledger=self.ledger, vendors=lambda name: vendor,
            vendor_names={vendor.name},
            rules=[RewardRule(reward_id="37", vendor=vendor.name, product=product,
                              amount=Decimal(amount), currency="USD")],
            policy=WorkerPolicy(namespace="org", lease_seconds=60,
                                schedule=RetrySchedule(max_attempts=3, initial_seconds=30,
                                                       max_seconds=600),
                                pending_recheck_seconds=RECHECK),
            owner="w1", clock=lambda: self.now,
        )

    def seed(self, rid: int, **over: Any) -> None:
        item: dict[str, Any] = {
            "id": rid, "reward_id": 37, "reward_name": "$25 gift card",
            "contact": {"id": rid, "email": f"a{rid}@example.com", "name": f"Advocate {rid}"},
        }
        item.update(over)
        self.source.seed(item)

    def cycle(self, later: float = 0.0) -> None:
        self.now += timedelta(seconds=later)
        assert self.worker.run_cycle().ok

    def entry(self, rid: int) -> Any:
        return self.ledger.get("influitive", str(rid))

    def decided(self) -> dict[str, str]:
        return {d.redemption_id: d.verb for d in self.source.accepted_decisions()}


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    made: list[Any] = []
    yield lambda v: made.append(v) or v
    for vendor in made:
        vendor.close()


def test_giftbit_awaiting_funds_waits_then_is_fulfilled(closing: Callable[[Any], Any]) -> None:
    standin = giftbit_standin()
    standin.state.set_funds("USD", 0)
    rig = Rig(closing(GiftbitVendor(standin.base_url, standin.api_key, policy=FAST)),
              "amazonus")
    rig.seed(1)
    rig.cycle()
    entry = rig.entry(1)
    assert entry.state is State.PENDING
    assert entry.vendor_order_id == campaign_id(entry.idempotency_key)
    assert rig.decided() == {}
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.PENDING  # still awaiting funds
    standin.state.set_funds("USD", 100_000)  # Giftbit sends it once funded
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.FULFILLED
    assert rig.decided() == {"1": "fulfill"}
    assert standin.state.created_for(entry.vendor_order_id) == 1


def test_tango_pending_review_then_complete(closing: Callable[[Any], Any]) -> None:
    standin = tango_standin()
    rig = Rig(closing(TangoVendor(standin.base_url, standin.platform_name, standin.platform_key,
                                  standin.customer, standin.account, policy=FAST,
                                  min_order_interval=0.0)), "PENDING")
    rig.seed(1)
    rig.cycle()
    assert rig.entry(1).state is State.PENDING
    standin.state.approve(rig.entry(1).idempotency_key)
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.FULFILLED
    assert len(standin.state.orders) == 1


def test_tango_failed_after_review_is_held(closing: Callable[[Any], Any]) -> None:
    standin = tango_standin()
    rig = Rig(closing(TangoVendor(standin.base_url, standin.platform_name, standin.platform_key,
                                  standin.customer, standin.account, policy=FAST,
                                  min_order_interval=0.0)), "PENDING")
    rig.seed(1)
    rig.cycle()
    standin.state.set_status(rig.entry(1).idempotency_key, "FAILED")
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.HELD
    assert rig.decided() == {}


def test_http_pending_is_re_asked_then_refused_refunds(closing: Callable[[Any], Any]) -> None:
    receiver = receiver_standin()
    rig = Rig(closing(HttpVendor(receiver.hook_url, receiver.secret, policy=FAST)), "PENDING")
    rig.seed(1)
    rig.seed(2)
    rig.cycle()
    assert rig.entry(1).state is State.PENDING and rig.entry(2).state is State.PENDING
    receiver.state.approve(rig.entry(1).idempotency_key)
    receiver.state.set_status(rig.entry(2).idempotency_key, "refused", "Out of hoodies")
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.FULFILLED
    assert rig.entry(2).state is State.REFUSED
    assert rig.decided() == {"1": "fulfill", "2": "refuse"}
    refusal = next(d for d in rig.source.accepted_decisions() if d.redemption_id == "2")
    assert "Out of hoodies" in refusal.message


def test_manual_waits_for_a_person_with_the_address_in_the_ledger() -> None:
    rig = Rig(ManualVendor(), None)
    rig.seed(1, shipping={"address": "1 Main St", "city": "Springfield", "state": "IL",
                          "zip": "62701", "country": "US"})
    rig.cycle()
    for _ in range(3):
        rig.cycle(later=RECHECK)
    entry = rig.entry(1)
    assert entry.state is State.PENDING
    assert rig.decided() == {}
    story = " ".join(e.detail for e in rig.ledger.events(entry.pk))
    assert "ship to: 1 Main St, Springfield, IL 62701, US" in story
    assert "ledger fulfill 1" in story


def test_manual_request_carries_the_shipping_address() -> None:
    shipping = Shipping(address="1 Main St", country="US")
    request = make_request("x", vendor="manual", shipping=shipping)
    assert "1 Main St, US" in ManualVendor().place_order(request).delivery
