"""The spending guard end to end: ``[fulfillment] daily_spend_limit`` and
``max_order_amount`` in a real config, the real CLI. An order that would pass a limit is
held (never refused) and the log says why; several worker processes on one ledger never
exceed the limit together."""

from __future__ import annotations

from decimal import Decimal

import pytest

from poller.domain.states import State
from tests.system.faults.harness import Kind, Stage, item, wait_for

pytestmark = pytest.mark.e2e

GUARD = """
[fulfillment]
daily_spend_limit = {{ USD = "{limit}" }}
max_order_amount = {{ USD = "50.00" }}
"""


def metadata_item(rid: int, amount: str, currency: str = "USD") -> dict[str, object]:
    raw = item(rid)
    raw["reward_metadata"] = {"vendor": "tremendous", "product": "VISA-US", "amount": amount,
                              "currency": currency}
    return raw


def test_the_order_that_would_pass_the_limit_is_held_and_the_log_says_why(
    sqlite_stage: Stage,
) -> None:
    stage = sqlite_stage
    stage.seed({1: "good", 2: "good", 3: "guarded", 4: "guarded"})  # 25 USD each
    stage.seed_raw([metadata_item(5, "100.00"), metadata_item(6, "5.00", "EUR")],
                   {"5": "guarded", "6": "guarded"})
    config = stage.config(concurrency=1, extra=GUARD.format(limit="60.00"))
    run = stage.run_once(config)
    assert run.returncode == 0, run.stderr
    entries = stage.entries()
    assert [entries[r].state for r in "1234"] == [State.FULFILLED, State.FULFILLED,
                                                  State.HELD, State.HELD]
    assert "daily spend limit for USD reached" in (entries["3"].hold_reason or "")
    assert "more than max_order_amount 50.00 USD" in (entries["5"].hold_reason or "")
    assert "no daily_spend_limit is set for EUR" in (entries["6"].hold_reason or "")
    said = {str(ln["redemption_id"]): ln["reason"] for ln in run.lines()
            if ln.get("event") == "redemption.spend_guard.held"}
    assert said.keys() == {"3", "4", "5", "6"}
    assert "would pass 60.00" in said["3"]
    assert all(ln.get("level") == "warning" for ln in run.lines()
               if ln.get("event") == "redemption.spend_guard.held")
    # Never refused, never sent to the vendor; a second run changes nothing.
    assert stage.accepted() == {"1": ["fulfill"], "2": ["fulfill"]}
    assert stage.run_once(config).returncode == 0
    assert stage.entries()["3"].state is State.HELD
    assert len(stage.tremendous.orders) == 2
    assert stage.violations() == []


@pytest.mark.timeout(180)
def test_several_workers_never_exceed_the_limit_together(stage: Stage) -> None:
    kinds: dict[int, Kind] = dict.fromkeys(range(1, 41), "guarded")
    stage.influitive.configure(page_size=50)
    stage.seed(kinds)
    stage.tremendous.set_delay(0.02)
    config = stage.config(lease_seconds=30, extra=GUARD.format(limit="500.00"))
    workers = [stage.popen("run", config=config) for _ in range(4)]
    wait_for(lambda: stage.finished() and len(stage.accepted()) >= 20, timeout=90,
             what="the limit reached")
    for w in workers:
        w.kill()
    spent = sum(Decimal(str(o["payment"]["total"])) for o in stage.tremendous.orders.values())
    assert spent == Decimal("500")  # 20 orders of 25: up to the limit, never past it
    entries = stage.entries()
    held = [e for e in entries.values() if e.state is State.HELD]
    assert len(held) == 20
    assert all("daily spend limit" in (e.hold_reason or "") for e in held)
    assert all(verbs == ["fulfill"] for verbs in stage.accepted().values())
    assert stage.violations() == []
