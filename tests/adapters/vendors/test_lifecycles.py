"""Each vendor's documented lifecycle end to end: the worker (memory ledger, fake
Influitive) with the real adapter against its stand-in.

* Giftbit: a funded create answers ``API_CREATING``; the campaign becomes
  ``CAMPAIGN_CREATED`` and its gift ``DELIVERED`` (fulfilled), or ``UNDELIVERABLE`` (held for
  a person, never fulfilled).
* Tango: 402 ``402.001`` waits for the operator's top-up, then the same externalRefID goes
  through once.
* Tremendous: an ``EXECUTED`` order whose e-mail bounced is held, never fulfilled.
* HTTP: a receiver URL with credentials and a secret path never reaches the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from poller.domain.states import State
from poller.vendors.giftbit import GiftbitVendor, campaign_id
from poller.vendors.http import HttpVendor
from poller.vendors.tango import TangoVendor
from poller.vendors.tremendous import TremendousVendor

from .support import FAST, Standin, giftbit_standin, receiver_standin, tango_standin
from .test_pending_flows import RECHECK, Rig


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    made: list[Any] = []
    yield lambda v: made.append(v) or v
    for vendor in made:
        vendor.close()


def _story(rig: Rig, rid: int) -> str:
    return " ".join(e.detail for e in rig.ledger.events(rig.entry(rid).pk))


def test_giftbit_api_creating_then_campaign_created_is_fulfilled(
    closing: Callable[[Any], Any],
) -> None:
    standin = giftbit_standin()
    rig = Rig(closing(GiftbitVendor(standin.base_url, standin.api_key, policy=FAST)),
              "PENDING")  # the stand-in keeps this brand in API_CREATING until approved
    rig.seed(1)
    rig.cycle()
    entry = rig.entry(1)
    assert entry.state is State.PENDING and "API_CREATING" in _story(rig, 1)
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.PENDING
    assert rig.decided() == {}
    standin.state.approve(campaign_id(entry.idempotency_key))  # CAMPAIGN_CREATED, delivered
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.FULFILLED
    assert rig.decided() == {"1": "fulfill"}
    assert standin.state.created_for(campaign_id(entry.idempotency_key)) == 1


def test_giftbit_funded_create_is_fulfilled_once_its_gift_is_delivered(
    closing: Callable[[Any], Any],
) -> None:
    standin = giftbit_standin()
    rig = Rig(closing(GiftbitVendor(standin.base_url, standin.api_key, policy=FAST)),
              "amazonus")
    rig.seed(1)
    rig.cycle()
    ident = campaign_id(rig.entry(1).idempotency_key)
    assert rig.entry(1).state is State.PENDING  # the create answered API_CREATING
    standin.state.set_delivery(ident, "UNSENT")
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.PENDING  # sent, not delivered yet
    standin.state.set_delivery(ident, "DELIVERED")
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.FULFILLED
    assert rig.decided() == {"1": "fulfill"}


def test_giftbit_undeliverable_gift_is_held_not_fulfilled(
    closing: Callable[[Any], Any],
) -> None:
    standin = giftbit_standin()
    rig = Rig(closing(GiftbitVendor(standin.base_url, standin.api_key, policy=FAST)),
              "amazonus")
    rig.seed(1, contact={"id": 1, "email": "ghost@bounce.example", "name": "Ghost"})
    rig.cycle()
    rig.cycle(later=RECHECK)
    entry = rig.entry(1)
    assert entry.state is State.HELD
    assert "UNDELIVERABLE" in (entry.hold_reason or "")
    assert "g***@bounce.example" in (entry.hold_reason or "")
    assert "ghost@bounce.example" not in _story(rig, 1)
    for _ in range(2):
        rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.HELD
    assert rig.decided() == {}


def test_tango_402_waits_for_funds_then_is_fulfilled_once(
    closing: Callable[[Any], Any],
) -> None:
    standin = tango_standin()
    standin.state.set_balance("1.00")
    rig = Rig(closing(TangoVendor(standin.base_url, standin.platform_name,
                                  standin.platform_key, standin.customer, standin.account,
                                  policy=FAST, min_order_interval=0.0)), "U561593")
    rig.seed(1)
    rig.cycle()
    entry = rig.entry(1)
    assert entry.state is State.WAITING
    assert "402.001" in (entry.last_error or "") and "top it up" in (entry.last_error or "")
    assert rig.decided() == {}
    standin.state.set_balance("1000.00")  # the operator tops the account up
    rig.cycle(later=600)
    assert rig.entry(1).state is State.FULFILLED
    assert rig.decided() == {"1": "fulfill"}
    assert standin.state.created_for(entry.idempotency_key) == 1


def test_tremendous_bounced_delivery_is_held_not_fulfilled(
    closing: Callable[[Any], Any], standin: Standin,
) -> None:
    rig = Rig(closing(TremendousVendor(standin.base_url, standin.api_key, policy=FAST)),
              "AMZN-US")
    rig.seed(1, contact={"id": 1, "email": "bob@bounce.example", "name": "Bob"})
    rig.cycle()
    entry = rig.entry(1)
    assert entry.state is State.HELD
    assert "bounced" in (entry.hold_reason or "")
    assert "b***@bounce.example" in (entry.hold_reason or "")
    assert entry.vendor_order_id
    rig.cycle(later=RECHECK)
    assert rig.entry(1).state is State.HELD
    assert rig.decided() == {}
    assert standin.state.created_for(entry.idempotency_key) == 1


def test_http_receiver_url_secrets_stay_out_of_the_ledger(
    closing: Callable[[Any], Any],
) -> None:
    receiver = receiver_standin()
    parts = urlsplit(receiver.hook_url)
    url = f"{parts.scheme}://hookuser:hookp4ss-77@{parts.netloc}{parts.path}"
    rig = Rig(closing(HttpVendor(url, receiver.secret, policy=FAST)), None)
    rig.seed(1)
    receiver.state.fail(503, None)
    rig.cycle()
    receiver.state.clear_faults()
    rig.cycle(later=600)
    assert rig.entry(1).state is State.FULFILLED
    story = _story(rig, 1) + " " + (rig.entry(1).last_error or "") + " " + \
        " ".join(d.message for d in rig.source.accepted_decisions())
    assert "503" in _story(rig, 1)
    for secret in ("hookuser", "hookp4ss-77", "/hooks/orders"):
        assert secret not in story
    assert parts.netloc not in rig.source.accepted_decisions()[0].message
