"""The manual vendor: nothing is ordered; the redemption waits for a person."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from poller import vendors
from poller.domain.model import OrderStatus, Shipping
from poller.vendors.manual import ManualVendor, Settings, shipping_summary

from .support import FAST, make_request


def test_place_order_is_pending_with_what_to_send_and_where() -> None:
    shipping = Shipping(address="1 Main St", address_2="Apt 2", city="Springfield",
                        state="IL", zip="62701", country="US", phone_number="555-0100")
    request = make_request("m-1", vendor="manual", product="HOODIE-M", shipping=shipping,
                           reward_name="Advocate hoodie")
    result = ManualVendor().place_order(request)
    assert result.status is OrderStatus.PENDING
    assert result.vendor_order_id == f"manual-{request.idempotency_key}"
    assert result.link is None
    assert result.delivery == (
        "send Advocate hoodie by hand to Alice Example <alice@example.com>, ship to: "
        "1 Main St, Apt 2, Springfield, IL 62701, US; then run "
        "`reward-poller ledger fulfill m-1 --message ...`"
    )
    assert result.detail == result.delivery  # the worker records the detail in the ledger
    assert "555-0100" not in result.delivery


def test_without_an_address_it_says_so() -> None:
    result = ManualVendor().place_order(make_request("m-2", vendor="manual", product=None,
                                                     reward_name=None))
    assert "send the reward by hand" in result.delivery
    assert "(no shipping address given)" in result.delivery


def test_lookup_is_pending_for_ever_and_repeats_are_the_same() -> None:
    vendor = ManualVendor()
    request = make_request("m-3", vendor="manual")
    placed = vendor.place_order(request)
    for _ in range(3):
        found = vendor.lookup(request.idempotency_key)
        assert found is not None
        assert found.status is OrderStatus.PENDING
        assert found.vendor_order_id == placed.vendor_order_id
    assert vendor.place_order(request) == placed


def test_shipping_summary() -> None:
    assert shipping_summary(None) == ""
    assert shipping_summary(Shipping()) == ""
    assert shipping_summary(Shipping(city=" Paris ", country="FR")) == "Paris, FR"


def test_check_settings_and_registry() -> None:
    assert ManualVendor().check([(None, Decimal("1"), "USD")]).ok
    with pytest.raises(ValidationError):
        Settings.model_validate({"anything": 1})
    settings = vendors.validate_settings("manual", {})
    vendor = vendors.build_vendor("manual", settings, vendors.BuildContext(policy=FAST))
    assert vendor.name == "manual" and isinstance(vendor, ManualVendor)
    vendor.close()
