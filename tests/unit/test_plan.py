"""The dry-run planner against the in-memory ledger: the same decisions as the worker, for
every state, and not one write."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from poller.core.decide import RewardRule, SpendPolicy
from poller.core.plan import EmptyLedger, Planner
from poller.domain.model import PollResult, Redemption
from poller.domain.states import State
from poller.ledger.memory import MemoryLedger
from poller.ports import Changes
from poller.sources.influitive.wire import parse_redemption

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = [RewardRule(vendor="tremendous", product="AMZN", amount=Decimal("25.00"),
                    currency="USD", reward_id="37")]


def redemption(rid: str, reward_id: str = "37") -> Redemption:
    return parse_redemption({"id": rid, "reward_id": reward_id, "reward_name": "Gift",
                             "contact": {"email": f"a{rid}@example.com", "name": "A"}})


def poll(*items: Redemption, complete: bool = True) -> PollResult:
    return PollResult(redemptions=items, complete=complete, pages=1, requests=1)


def planner(**kw: object) -> Planner:
    options: dict[str, object] = {"rules": RULES, "vendors": {"tremendous"},
                                  "unmapped": "hold", "unmapped_reason": "not automatic"}
    options.update(kw)
    return Planner(**options)  # type: ignore[arg-type]


def at(ledger: MemoryLedger, rid: str, *moves: tuple[State, Changes]) -> None:
    pid = ledger.start_poll(NOW)
    ledger.record(pid, [redemption(rid)], NOW)
    entry = ledger.get("influitive", rid)
    assert entry is not None and ledger.claim(entry.pk, "t", NOW, 60)
    for state, changes in moves:
        if changes.idempotency_key:  # keys are unique per redemption
            changes = replace(changes, idempotency_key=f"key-{rid}")
        ledger.transition(entry.pk, "t", state, "test", NOW, changes)
    ledger.release(entry.pk, "t")


KEYED = Changes(idempotency_key="k", vendor="tremendous", product="AMZN",
                amount=Decimal("25.00"), currency="USD", ordered_at=NOW)


def snapshot(ledger: MemoryLedger) -> object:
    entries = ledger.list(limit=1000)
    return [(e, ledger.events(e.pk)) for e in entries], ledger.counts()


def test_new_redemptions_are_routed_like_the_worker_would() -> None:
    plan = planner().plan(poll(redemption("1"), redemption("2", "99")), EmptyLedger(), NOW)
    assert [(s.redemption_id, s.state, s.action) for s in plan.steps] == [
        ("1", None, "order"), ("2", None, "hold")]
    assert plan.steps[0].detail.startswith("25.00 USD from tremendous (product AMZN")
    assert plan.spend() == {"USD": Decimal("25.00")}
    refusing = planner(unmapped="refuse").plan(poll(redemption("2", "99")), EmptyLedger(), NOW)
    assert refusing.steps[0].action == "refuse"
    assert "not automatic" in refusing.steps[0].detail


def test_every_ledger_state_and_not_one_write() -> None:
    ledger = MemoryLedger()
    at(ledger, "new")
    at(ledger, "held", (State.HELD, Changes(hold_reason="needs a person")))
    at(ledger, "ordering", (State.ORDERING, KEYED))
    at(ledger, "pending", (State.ORDERING, KEYED),
       (State.PENDING, Changes(vendor_order_id="O1")))
    at(ledger, "ordered", (State.ORDERING, KEYED), (State.ORDERED, Changes(vendor_order_id="O2")))
    at(ledger, "later", (State.ORDERING, KEYED),
       (State.WAITING, Changes(next_attempt_at=NOW + timedelta(hours=1), last_error="503")))
    at(ledger, "done", (State.ORDERING, KEYED), (State.ORDERED, Changes(vendor_order_id="O3")),
       (State.FULFILLED, Changes()))
    at(ledger, "closed", (State.CLOSED_UPSTREAM, Changes()))
    at(ledger, "perhaps", (State.ORDERING, KEYED), (State.ORDERED, Changes(vendor_order_id="O5")),
       (State.PERHAPS_FULFILLED, Changes()))
    at(ledger, "perhaps-gone", (State.REFUSING, Changes()), (State.PERHAPS_REFUSED, Changes()))
    at(ledger, "gone")  # in the ledger, no longer outstanding
    at(ledger, "gone-keyed", (State.ORDERING, KEYED))
    at(ledger, "gone-ordered", (State.ORDERING, KEYED),
       (State.ORDERED, Changes(vendor_order_id="O4")))
    before = snapshot(ledger)

    outstanding = [redemption(r) for r in
                   ("new", "held", "ordering", "pending", "ordered", "later", "done", "closed",
                    "perhaps")]
    plan = planner().plan(poll(*outstanding), ledger, NOW)
    actions = {s.redemption_id: s.action for s in plan.steps}
    assert actions == {
        "new": "order", "held": "wait", "ordering": "reconcile", "pending": "recheck",
        "ordered": "fulfill", "later": "wait", "gone": "close",
        "gone-keyed": "reconcile", "gone-ordered": "fulfill",
        # The poll is the truth: finished or perhaps-decided rows still listed are reopened;
        # a perhaps-decided one missing from a complete poll is on its way to confirmed.
        "done": "reopen", "closed": "reopen", "perhaps": "reopen", "perhaps-gone": "confirm",
    }
    details = {s.redemption_id: s.detail for s in plan.steps}
    assert details["held"] == "held for a person: needs a person"
    assert "last error: 503" in details["later"]
    assert details["done"] == ("fulfilled, yet Influitive still lists it: send the fulfilment "
                               "to Influitive again")
    assert "work it like a new redemption" in details["closed"]
    assert "gone_after_polls" in details["perhaps-gone"]
    assert snapshot(ledger) == before

    # An incomplete poll proves nothing about absence: nothing is closed.
    partial = planner().plan(poll(*outstanding, complete=False), ledger, NOW)
    partial_actions = {s.redemption_id: s.action for s in partial.steps}
    assert "gone" not in partial_actions and "gone-keyed" not in partial_actions
    assert "perhaps-gone" not in partial_actions
    assert partial_actions["gone-ordered"] == "fulfill"


def test_the_spending_guard_is_planned_too() -> None:
    ledger = MemoryLedger()
    at(ledger, "spent", (State.ORDERING, KEYED))  # 25.00 USD ordered today
    guard = SpendPolicy(daily_limit={"USD": Decimal("60")})
    plan = planner(spend=guard).plan(poll(redemption("a"), redemption("b")), ledger, NOW)
    assert [s.action for s in plan.steps[:2]] == ["order", "hold"]  # 25 + 25 + 25 > 60
    assert "daily spend limit for USD" in plan.steps[1].detail
    eur_only = planner(spend=SpendPolicy(daily_limit={"EUR": Decimal("100")}))
    assert eur_only.plan(poll(redemption("c")), ledger, NOW).steps[0].action == "hold"


def test_a_row_a_live_run_holds_is_skipped_not_looked_up() -> None:
    """A run stopped without giving its lease back (killed, or a run still going): the next
    run's ``due`` leaves the row out, so the plan says skip, not reconcile."""
    ledger = MemoryLedger()
    at(ledger, "in-flight", (State.ORDERING, KEYED))
    at(ledger, "in-flight-gone", (State.ORDERING, KEYED))
    at(ledger, "free", (State.ORDERING, KEYED))
    for rid in ("in-flight", "in-flight-gone"):
        entry = ledger.get("influitive", rid)
        assert entry is not None and ledger.claim(entry.pk, "other-run", NOW, 300)
    plan = planner().plan(poll(redemption("in-flight"), redemption("free")), ledger, NOW)
    steps = {s.redemption_id: s for s in plan.steps}
    assert {rid: s.action for rid, s in steps.items()} == {
        "in-flight": "skip", "in-flight-gone": "skip", "free": "reconcile"}
    assert "leased by a run in progress" in steps["in-flight"].detail
    assert "lease_seconds" in steps["in-flight"].detail
    # Once the lease has run out, the run would look it up again, and the plan says so.
    later = planner().plan(poll(redemption("in-flight")), ledger, NOW + timedelta(seconds=301))
    assert {s.redemption_id: s.action for s in later.steps}["in-flight"] == "reconcile"
