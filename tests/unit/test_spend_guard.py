"""The spending guard: held, never refused, and released only by a person."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from poller.core.decide import SpendPolicy
from poller.domain.states import State
from poller.ports import Changes
from tests.unit.test_worker import Rig, redemption


def guarded(daily: dict[str, str] | None = None, max_order: dict[str, str] | None = None) -> Rig:
    rig = Rig()
    rig.worker = rig.make()
    policy = rig.worker.policy
    from dataclasses import replace

    rig.worker.policy = replace(policy, spend=SpendPolicy(
        daily_limit={k: Decimal(v) for k, v in (daily or {}).items()} if daily is not None
        else None,
        max_order={k: Decimal(v) for k, v in (max_order or {}).items()} if max_order is not None
        else None,
    ))
    return rig


def test_daily_limit_holds_the_order_that_would_pass_it() -> None:
    rig = guarded(daily={"USD": "60"})  # each redemption is 25 USD
    rig.source.seed(redemption(1), redemption(2), redemption(3))
    rig.worker.run_cycle()
    assert [rig.state(i) for i in (1, 2, 3)] == [State.FULFILLED, State.FULFILLED, State.HELD]
    reason = rig.entry(3).hold_reason
    assert "daily spend limit for USD" in reason and "50" in reason
    assert sum(rig.vendor.created.values()) == 2
    assert [d.verb for d in rig.source.accepted_decisions()] == ["fulfill", "fulfill"]


def test_refused_orders_do_not_count_and_a_new_day_starts_afresh() -> None:
    rig = guarded(daily={"USD": "30"})
    rig.source.seed(redemption(1), redemption(2))
    rig.worker.run_cycle()
    assert rig.state(2) is State.HELD
    rig.clock.advance(24 * 3600)
    rig.source.seed(redemption(3))
    rig.worker.run_cycle()
    assert rig.state(3) is State.FULFILLED


def test_a_currency_without_a_limit_is_held_once_limits_are_set() -> None:
    rig = guarded(daily={"EUR": "1000"})
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert rig.state(1) is State.HELD
    assert "no daily_spend_limit is set for USD" in rig.entry(1).hold_reason


def test_max_order_amount_holds_large_orders() -> None:
    rig = guarded(max_order={"USD": "20"})
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert rig.state(1) is State.HELD
    assert "max_order_amount" in rig.entry(1).hold_reason
    assert rig.vendor.calls == {}


def test_an_approved_redemption_passes_the_guard() -> None:
    rig = guarded(daily={"USD": "10"})
    rig.source.seed(redemption(1))
    rig.worker.run_cycle()
    assert rig.state(1) is State.HELD
    # What `ledger approve` does.
    rig.ledger.admin_transition(rig.entry(1).pk, State.NEW, "approved", rig.clock(),
                                Changes(approved=True, clear=frozenset({"hold_reason"})))
    rig.clock.advance(timedelta(minutes=1).total_seconds())
    rig.worker.run_cycle()
    assert rig.state(1) is State.FULFILLED
