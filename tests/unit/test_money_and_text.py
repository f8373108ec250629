"""Money and text from outside: one ISO 4217 list, amounts in the currency's minor units
before a vendor sees them, a currency the spending guard does not name held, and e-mail
addresses with control characters held as malformed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from poller.config.sections import FulfillmentSettings, RewardSettings
from poller.core.decide import Hold, Order, RewardRule, SpendPolicy, plan_intake
from poller.domain.money import CurrencyProblem, normalise_amount, parse_currency
from poller.domain.states import State
from poller.sources.influitive.wire import parse_redemption
from tests.unit.test_spend_guard import guarded
from tests.unit.test_worker import redemption


def meta(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"vendor": "fake", "product": "AMZN", "amount": "25",
                            "currency": "USD"}
    data.update(over)
    return data


def intake(item: dict[str, Any], rules: tuple[RewardRule, ...] = ()) -> Any:
    return plan_intake(parse_redemption(item), rules, unmapped="hold", unmapped_reason="",
                       vendors={"fake"})


# --- the ISO 4217 list --------------------------------------------------------------------


@pytest.mark.parametrize(("given", "code"), [("usd", "USD"), (" eur ", "EUR"), ("JPY", "JPY"),
                                              ("bhd", "BHD")])
def test_codes_are_upper_cased_once_at_parsing(given: str, code: str) -> None:
    assert parse_currency(given) == code
    parsed = parse_redemption(redemption(1, reward_metadata=meta(currency=given)))
    assert parsed.metadata["currency"] == code and not parsed.problems


@pytest.mark.parametrize("bad", ["US$", "XYZ", "DOLLARS", "", "XAU", 840, None])
def test_a_code_that_is_not_iso_4217_makes_the_redemption_malformed(bad: Any) -> None:
    with pytest.raises(CurrencyProblem):
        parse_currency(bad)
    decision = intake(redemption(1, reward_metadata=meta(currency=bad)))
    assert isinstance(decision, Hold)
    assert decision.reason.startswith("malformed redemption")
    assert repr(bad) in decision.reason


def test_us_dollar_sign_never_reaches_a_vendor() -> None:
    rig = guarded()
    rig.source.seed(redemption(1, reward_metadata=meta(currency="US$")))
    rig.worker.run_cycle()
    assert rig.state(1) is State.HELD
    assert "'US$'" in rig.entry(1).hold_reason
    assert rig.vendor.requests == []


def test_the_config_takes_only_iso_codes() -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        RewardSettings(reward_id="1", vendor="fake", amount=Decimal(5), currency="ABC")
    assert RewardSettings(reward_id="1", vendor="fake", amount=Decimal(5),
                          currency="cad").currency == "CAD"
    with pytest.raises(ValueError, match="ISO 4217"):
        FulfillmentSettings(max_order_amount={"US$": Decimal(10)})


# --- amounts --------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "currency", "text"), [
    ("1e3", "USD", "1000.00"), ("1E+3", "USD", "1000.00"), ("25", "USD", "25.00"),
    ("25.5", "EUR", "25.50"), ("1000", "JPY", "1000"), ("1e3", "JPY", "1000"),
    ("1.5", "BHD", "1.500"),
])
def test_amounts_are_plain_decimals_with_the_currency_minor_units(
    amount: str, currency: str, text: str
) -> None:
    assert f"{normalise_amount(Decimal(amount), currency):f}" == text
    decision = intake(redemption(1, reward_metadata=meta(amount=amount, currency=currency)))
    assert isinstance(decision, Order)
    assert str(decision.route.amount) == text


@pytest.mark.parametrize(("amount", "currency"), [("10.005", "USD"), ("100.5", "JPY")])
def test_more_decimals_than_the_currency_has_is_held_not_rounded(
    amount: str, currency: str
) -> None:
    with pytest.raises(CurrencyProblem):
        normalise_amount(Decimal(amount), currency)
    decision = intake(redemption(1, reward_metadata=meta(amount=amount, currency=currency)))
    assert isinstance(decision, Hold) and currency in decision.reason


def test_a_config_rule_amount_reaches_the_vendor_normalised() -> None:
    rule = RewardRule(vendor="fake", product="AMZN", amount=Decimal("2E+1"), currency="USD",
                      reward_id="37")
    decision = intake(redemption(1), (rule,))
    assert isinstance(decision, Order) and str(decision.route.amount) == "20.00"


def test_the_vendor_receives_1000_00_not_1e3() -> None:
    rig = guarded()
    rig.source.seed(redemption(1, reward_metadata=meta(amount="1e3")))
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
    [sent] = rig.vendor.requests
    assert str(sent.amount) == "1000.00"


# --- the spending guard ---------------------------------------------------------------------


def test_a_currency_max_order_amount_does_not_name_is_held() -> None:
    policy = SpendPolicy(max_order={"USD": Decimal(100)})
    reason = policy.precheck(Decimal(9000), "CAD")
    assert reason is not None and "no max_order_amount is set for CAD" in reason
    assert policy.precheck(Decimal(50), "USD") is None
    assert SpendPolicy().precheck(Decimal(9000), "CAD") is None  # no guard: no opinion


def test_cad_9000_is_held_when_only_usd_is_capped() -> None:
    rig = guarded(max_order={"USD": "100"})
    rig.source.seed(redemption(1, reward_metadata=meta(amount="9000", currency="CAD")))
    rig.worker.run_cycle()
    assert rig.state(1) is State.HELD
    assert "CAD" in rig.entry(1).hold_reason
    assert rig.vendor.requests == []


def test_a_currency_named_by_every_guard_passes() -> None:
    rig = guarded(daily={"CAD": "100"}, max_order={"CAD": "50"})
    rig.source.seed(redemption(1, reward_metadata=meta(amount="25", currency="cad")))
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED


# --- e-mail addresses -----------------------------------------------------------------------


@pytest.mark.parametrize("email", ["a@example.com\r\nBcc: x@example.com", "a@exa\nmple.com",
                                   "a@example.com\r\n", "a\x1b[31m@example.com",
                                   "a@example.com\u2028"])
def test_an_email_with_control_characters_is_malformed_and_held(email: str) -> None:
    item = redemption(1)
    item["contact"]["email"] = email
    decision = intake(item)
    assert isinstance(decision, Hold)
    assert "control characters" in decision.reason


def test_an_ordinary_email_is_accepted() -> None:
    assert isinstance(intake(redemption(1, reward_metadata=meta())), Order)
