"""``run --dry-run`` announces what the run then does: the planner and the worker, over the
same ledger rows and the same poll, agree on the action for a row in every state."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from poller.core.nextstep import Action, Kind
from poller.core.plan import Planner
from poller.domain.model import LedgerEntry
from poller.domain.states import State
from poller.ports import Changes
from poller.sources.influitive.wire import parse_redemption
from tests.unit.test_worker import RULES, Rig, redemption

KEYED = Changes(idempotency_key="k", vendor="fake", product="CARD25", amount=Decimal("25"),
                currency="USD")

# How to bring a freshly recorded row to each state (moves the state machine allows).
PATHS: dict[State, list[tuple[State, Changes]]] = {
    State.NEW: [],
    State.WAITING: [(State.WAITING, Changes())],
    State.HELD: [(State.HELD, Changes(hold_reason="check the reward"))],
    State.ORDERING: [(State.ORDERING, KEYED)],
    State.PENDING: [(State.ORDERING, KEYED), (State.PENDING, Changes(vendor_order_id="V"))],
    State.ORDERED: [(State.ORDERING, KEYED), (State.ORDERED, Changes(vendor_order_id="V"))],
    State.REFUSING: [(State.REFUSING, Changes(message="no"))],
    State.FULFILLED: [(State.ORDERING, KEYED), (State.ORDERED, Changes(vendor_order_id="V")),
                      (State.FULFILLED, Changes())],
    State.REFUSED: [(State.REFUSING, Changes()), (State.REFUSED, Changes())],
    State.CLOSED_UPSTREAM: [(State.CLOSED_UPSTREAM, Changes())],
    State.PERHAPS_FULFILLED: [(State.ORDERING, KEYED),
                              (State.ORDERED, Changes(vendor_order_id="V")),
                              (State.PERHAPS_FULFILLED, Changes())],
    State.PERHAPS_REFUSED: [(State.REFUSING, Changes()), (State.PERHAPS_REFUSED, Changes())],
}

# The dry run's word for each action the worker takes.
SAID = {
    Kind.START_ORDER: "order", Kind.LOOK_UP: "reconcile", Kind.RECHECK: "recheck",
    Kind.FULFILL: "fulfill", Kind.SEND_REFUSAL: "refuse", Kind.REFUSE: "refuse",
    Kind.REOPEN: "reopen", Kind.CLOSE: "close", Kind.CONFIRM: "confirm",
    Kind.HOLD: "hold", Kind.HOLD_SPEND: "hold", Kind.HOLD_UNREADABLE: "hold",
    Kind.HOLD_UNFINISHED: "hold", Kind.HOLD_DISCREPANCY: "hold", Kind.WAIT: "wait",
}


def build(listed: bool) -> tuple[Rig, dict[str, State]]:
    """A ledger with one row in every state; the source lists them all, or none."""
    rig = Rig()
    rid_of = {state: str(100 + i) for i, state in enumerate(State)}
    pid = rig.ledger.start_poll(rig.clock())
    items = [redemption(int(rid)) for rid in rid_of.values()]
    rig.ledger.record(pid, [parse_redemption(i) for i in items], rig.clock())
    rig.ledger.finish_poll(pid, rig.clock(), ok=True, complete=True, seen=len(items))
    for state, rid in rid_of.items():
        entry = rig.ledger.get("influitive", rid)
        assert entry is not None and rig.ledger.claim(entry.pk, "t", rig.clock(), 60)
        for to, changes in PATHS[state]:
            if changes.idempotency_key:
                changes = replace(changes, idempotency_key=f"key-{rid}")
            rig.ledger.transition(entry.pk, "t", to, "test", rig.clock(), changes)
        rig.ledger.release(entry.pk, "t")
    if listed:
        rig.source.seed(*items)
    return rig, {rid: state for state, rid in rid_of.items()}


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "gone"])
def test_the_dry_run_and_the_run_agree_on_every_state(listed: bool) -> None:
    rig, state_of = build(listed)
    rig.clock.advance(60)
    # Gone from one complete poll is gone here, so that the run acts on what the dry run
    # (which cannot know the polls to come) announces for a row missing from the list.
    rig.worker.policy = replace(rig.worker.policy, gone_after_polls=1)
    planner = Planner(rules=RULES, vendors={"fake"}, unmapped="hold",
                      unmapped_reason="not automatic")
    plan = planner.plan(rig.source.poll(), rig.ledger, rig.clock())
    announced = {s.redemption_id: s.action for s in plan.steps}

    taken: dict[str, Kind] = {}

    def note(entry: LedgerEntry, action: Action) -> None:
        taken.setdefault(entry.redemption_id, action.kind)

    rig.worker.on_action = note
    rig.worker.run_cycle()

    compared: dict[State, str | None] = {}
    for rid, state in state_of.items():
        did = SAID.get(taken[rid], "nothing") if rid in taken else None
        said = announced.get(rid)
        # A row the run leaves alone is one the dry run says waits, or does not list.
        assert did == said or (did in (None, "nothing") and said in (None, "wait")), (
            state, did, said)
        compared[state] = said
    # Every state was compared, and the run did something about the rows it should.
    assert set(compared) == set(State)
    if listed:
        assert compared[State.NEW] == "order" and compared[State.FULFILLED] == "reopen"
    else:
        assert compared[State.NEW] == "close" and compared[State.PERHAPS_REFUSED] == "confirm"


def test_a_row_not_due_waits_in_both() -> None:
    rig, state_of = build(listed=True)
    rid = next(r for r, s in state_of.items() if s is State.WAITING)
    entry = rig.ledger.get("influitive", rid)
    assert entry is not None and rig.ledger.claim(entry.pk, "t", rig.clock(), 60)
    later = rig.clock() + timedelta(hours=1)
    rig.ledger.transition(entry.pk, "t", State.WAITING, "test", rig.clock(),
                          Changes(next_attempt_at=later, last_error="503"))
    rig.ledger.release(entry.pk, "t")
    planner = Planner(rules=RULES, vendors={"fake"}, unmapped="hold",
                      unmapped_reason="not automatic")
    step = next(s for s in planner.plan(rig.source.poll(), rig.ledger, rig.clock()).steps
                if s.redemption_id == rid)
    assert step.action == "wait" and "last error: 503" in step.detail
    taken: list[str] = []
    rig.worker.on_action = lambda e, a: taken.append(e.redemption_id)
    rig.worker.run_cycle()
    assert rid not in taken and rig.state(int(rid)) is State.WAITING
