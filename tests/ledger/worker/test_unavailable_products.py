"""A product the vendor will not sell, decided by its catalog, through the worker: each
catalog vendor's real adapter against its stand-in, the SQL ledgers, Influitive faked.

* listed with the route's currency and value, yet refused as unavailable: refused at
  Influitive with the plain, configurable message; the vendor's answer recorded;
* not in the catalog, or the value outside what it takes: held (configuration);
* ``[fulfillment] unavailable_reward = "hold"``: the first case held too;
* the catalog cannot be read: nothing decided, the redemption waits.

The vendor's wording plays no part: the Tremendous stand-in says only "Product UNAVAILABLE
is not available", Tango ``422.097``, Giftbit ``ERROR_CAMPAIGN_INVALID_BRAND``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pytest

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule
from poller.domain.messages import DEFAULT_REFUSED, MessageTemplates
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.sql import SqlLedger
from poller.ports import Vendor
from poller.sandbox import giftbit as giftbit_standin
from poller.sandbox import tango as tango_standin
from poller.sandbox import tremendous as tremendous_standin
from poller.sandbox.server import ServerThread
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.giftbit import GiftbitVendor
from poller.vendors.tango import TangoVendor
from poller.vendors.tremendous import TremendousVendor
from poller.worker.cycle import CycleReport, Worker, WorkerPolicy
from tests.adapters.vendors.support import FAST
from tests.adapters.vendors.support import giftbit_standin as giftbit_served
from tests.adapters.vendors.support import tango_standin as tango_served
from tests.unit.test_worker import Clock, redemption

UNAVAILABLE_MESSAGE = "{reward_name} has run out, sorry"


@dataclass
class Case:
    """One vendor on its stand-in: products for each case, how to break its catalog."""

    vendor: Callable[[], Vendor]
    state: Any
    listed: tuple[str, str]
    """(product, amount) the catalog lists, yet every order for it is refused."""
    unknown: tuple[str, str]
    outside: tuple[str, str]
    """A listed product at an amount it does not take."""
    catalog_path: str


@pytest.fixture(scope="module")
def _tremendous() -> Iterator[tuple[str, tremendous_standin.TremendousState]]:
    state = tremendous_standin.TremendousState()
    with ServerThread(tremendous_standin.create_app(state, api_key="tk_unavailable_1")) as url:
        yield url, state


def tremendous(served: tuple[str, tremendous_standin.TremendousState]) -> Case:
    url, state = served
    state.reset()
    return Case(
        vendor=lambda: TremendousVendor(url + tremendous_standin.API_PREFIX, "tk_unavailable_1",
                                        policy=FAST, sleep=lambda _s: None),
        state=state, listed=("UNAVAILABLE", "25"), unknown=("UNKNOWN-GIFT", "25"),
        outside=("AMZN-US", "5000"), catalog_path="/products",
    )


def tango(_served: object) -> Case:
    standin = tango_served()
    return Case(
        vendor=lambda: TangoVendor(standin.base_url, standin.platform_name,
                                   standin.platform_key, standin.customer, standin.account,
                                   policy=FAST, sleep=lambda _s: None, min_order_interval=0),
        state=standin.state, listed=(tango_standin.UNAVAILABLE_UTID, "25"),
        unknown=("U000000", "25"), outside=("U561593", "5000"), catalog_path="/catalogs",
    )


def giftbit(_served: object) -> Case:
    standin = giftbit_served()
    return Case(
        vendor=lambda: GiftbitVendor(standin.base_url, standin.api_key, policy=FAST,
                                     sleep=lambda _s: None),
        state=standin.state, listed=(giftbit_standin.SOLD_OUT_BRAND, "25"),
        unknown=("UNAVAILABLE", "25"), outside=("amazonus", "600"), catalog_path="/brands",
    )


CASES = {"tremendous": tremendous, "tango": tango, "giftbit": giftbit}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest,
         _tremendous: tuple[str, tremendous_standin.TremendousState]) -> Case:
    return CASES[request.param](_tremendous)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[SqlLedger]:
    made = open_ledger(ledger_url, migrate=True)
    try:
        yield made
    finally:
        made.close()


@dataclass
class Run:
    source: FakeInfluitive
    ledger: SqlLedger
    report: CycleReport

    def entry(self) -> Any:
        found = self.ledger.get("influitive", "1")
        assert found is not None
        return found


def run(case: Case, ledger: SqlLedger, product: tuple[str, str], *,
        unavailable: Literal["refuse", "hold"] = "refuse") -> Run:
    vendor = case.vendor()
    source = FakeInfluitive()
    source.seed(redemption(1))
    rule = RewardRule(reward_id="37", vendor=vendor.name, product=product[0],
                      amount=Decimal(product[1]), currency="USD")
    worker = Worker(
        source=source, ledger=ledger, vendors=lambda _name: vendor, vendor_names={vendor.name},
        rules=[rule],
        policy=WorkerPolicy(namespace="org", concurrency=1, unavailable=unavailable,
                            schedule=RetrySchedule(max_attempts=5)),
        messages=MessageTemplates(unavailable_reason=UNAVAILABLE_MESSAGE),
        owner="w1", clock=Clock(),
    )
    try:
        report = worker.run_cycle()
    finally:
        vendor.close()
    return Run(source, ledger, report)


def test_a_listed_product_refused_as_unavailable_is_refused(case: Case,
                                                             ledger: SqlLedger) -> None:
    done = run(case, ledger, case.listed)
    entry = done.entry()
    assert entry.state is State.REFUSED
    [decision] = done.source.accepted_decisions()
    assert decision.verb == "refuse"
    assert decision.message == DEFAULT_REFUSED.format(
        reward_name="$25 gift card", reason="$25 gift card has run out, sorry")
    assert "catalog lists it" in (entry.last_error or "")  # the vendor's answer, recorded
    events = " ".join(e.detail for e in ledger.events(entry.pk))
    assert "would not sell product" in events


def test_an_unknown_product_is_held_as_configuration(case: Case, ledger: SqlLedger) -> None:
    done = run(case, ledger, case.unknown)
    entry = done.entry()
    assert entry.state is State.HELD
    assert "does not list product" in (entry.hold_reason or "")
    assert done.source.decisions == []


def test_a_value_outside_the_product_is_held_as_configuration(case: Case,
                                                              ledger: SqlLedger) -> None:
    done = run(case, ledger, case.outside)
    entry = done.entry()
    assert entry.state is State.HELD
    assert "lists product" in (entry.hold_reason or "")
    assert "not at" in (entry.hold_reason or "")
    assert done.source.decisions == []


def test_with_unavailable_reward_hold_it_is_held(case: Case, ledger: SqlLedger) -> None:
    done = run(case, ledger, case.listed, unavailable="hold")
    entry = done.entry()
    assert entry.state is State.HELD
    assert "unavailable_reward" in (entry.hold_reason or "")
    assert done.source.decisions == []
    assert done.report.problems  # `run --run-once` exits 1: a person decides


def test_an_unreadable_catalog_decides_nothing(case: Case, ledger: SqlLedger) -> None:
    case.state.fail(503, None, method="GET", path=case.catalog_path)
    done = run(case, ledger, case.listed)
    entry = done.entry()
    assert entry.state is State.WAITING
    assert "nothing is decided" in (entry.last_error or "")
    assert done.source.decisions == []
    case.state.clear_faults()
