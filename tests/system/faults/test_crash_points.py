"""kill -9 at every step boundary of the cycle, then restarts: each redemption still ends
fulfilled or refused exactly once, with exactly one vendor order, none stuck.

For each crash point the test first checks what the ledger says right after the crash (the
README's "the ledger says" column) and the order of writes (``Stage.crash_violations``), then
restarts the worker once the dead worker's lease ran out and checks what the restart did
(the "on restart" column) and the whole guarantee from the stand-ins' own records. Every
scenario runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time

import pytest

from poller.domain.model import Event, LedgerEntry
from poller.domain.states import State
from poller.sandbox.influitive import Fault
from poller.worker.failpoints import EXIT_CODE, POINTS
from tests.system.faults.harness import Kind, Stage, wait_for

pytestmark = pytest.mark.e2e

MIX: dict[int, Kind] = {1: "good", 2: "refused", 3: "good", 4: "held", 5: "good", 6: "good"}


def _ordering_without_post(stage: Stage, entries: dict[str, LedgerEntry]) -> str:
    """after_key_saved: the key is committed (ORDERING) and the vendor never heard of it."""
    found = [rid for rid, e in entries.items()
             if e.state is State.ORDERING and stage.posts(rid) == 0]
    assert found, {rid: e.state.value for rid, e in entries.items()}
    return found[0]


def _ordering_with_post(stage: Stage, entries: dict[str, LedgerEntry]) -> str:
    """after_vendor_answer: the vendor answered, the ledger still says ORDERING."""
    found = [rid for rid, e in entries.items()
             if e.state is State.ORDERING and stage.posts(rid) == 1]
    assert found, {rid: e.state.value for rid, e in entries.items()}
    return found[0]


def _ordered_undecided(stage: Stage, entries: dict[str, LedgerEntry]) -> str:
    """after_ordered: ORDERED committed, Influitive not told."""
    accepted = stage.accepted()
    found = [rid for rid, e in entries.items()
             if e.state is State.ORDERED and rid not in accepted]
    assert found, {rid: e.state.value for rid, e in entries.items()}
    return found[0]


def _decided_not_saved(stage: Stage, entries: dict[str, LedgerEntry]) -> str:
    """after_decision: Influitive accepted, the ledger still says ORDERED/REFUSING."""
    accepted = stage.accepted()
    found = [rid for rid, e in entries.items()
             if e.state in (State.ORDERED, State.REFUSING) and rid in accepted]
    assert found, {rid: e.state.value for rid, e in entries.items()}
    return found[0]


def _all_new(stage: Stage, entries: dict[str, LedgerEntry]) -> str:
    """after_record: every redemption recorded, nothing else happened."""
    assert sorted(entries) == sorted(stage.kinds)
    assert {e.state for e in entries.values()} == {State.NEW}
    assert stage.tremendous.received == [] and stage.influitive.decisions() == []
    return "1"


AFTER_CRASH = {
    "after_record": _all_new,
    "after_key_saved": _ordering_without_post,
    "after_vendor_answer": _ordering_with_post,
    "after_ordered": _ordered_undecided,
    "after_decision": _decided_not_saved,
}


def test_every_failpoint_has_a_scenario() -> None:
    assert set(AFTER_CRASH) == set(POINTS)


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_each_step_boundary(stage: Stage, point: str) -> None:
    stage.seed(MIX)
    config = stage.config()

    first = stage.run_once(config, failpoint=f"{point}:1")
    assert first.returncode == EXIT_CODE, first.stderr
    entries = stage.entries()
    assert stage.crash_violations(entries) == []
    victim = AFTER_CRASH[point](stage, entries)
    posts_at_crash = stage.posts(victim)

    # A second crash at the next occurrence of the same point, on the restart.
    stage.wait_lease()
    second = stage.run_once(config, failpoint=f"{point}:2")
    assert second.returncode in (0, EXIT_CODE), second.stderr
    assert stage.crash_violations() == []

    stage.wait_lease()
    stage.settle(config)
    assert stage.violations() == []

    final = stage.entries()[victim]
    story = [ev.detail for ev in _events(stage, final)]
    if point == "after_vendor_answer" and stage.kinds[victim] == "refused":
        # The vendor had refused it (no order): the look-up by key finds nothing, the
        # identical request is sent again and refused again. Still no order.
        assert stage.created(victim) == 0 and final.state is State.REFUSED, story
    elif point in ("after_vendor_answer", "after_ordered"):
        # Reconciled by key (after_vendor_answer) or not asked again at all (after_ordered):
        # the vendor never got a second POST for it.
        assert stage.posts(victim) == posts_at_crash == 1, story
    elif point == "after_key_saved":
        assert stage.posts(victim) == 1, story  # ordered on restart, once
    elif point == "after_decision":
        # Sent again; Influitive answered "already decided" and the ledger says so.
        assert any("already decided" in d for d in story), story
        assert final.state in (State.FULFILLED, State.REFUSED)


def test_kill_9_during_the_vendor_call(stage: Stage) -> None:
    """The vendor created the order but its answer never arrives (the connection hangs);
    the worker is killed mid-call. The restart finds the order by its key."""
    # No vendor-refused one here: the stand-in would hang the answer of whichever POST
    # comes first, and a refused one creates no order to find.
    stage.seed({1: "good", 2: "good", 3: "held", 4: "good", 5: "good"})
    stage.tremendous.lose_answers(1, mode="hang", hang_seconds=30)
    config = stage.config(timeout_seconds=20)
    worker = stage.popen("run", "--run-once", config=config)
    # The stand-in takes the loss after it created the order: the answer now hangs.
    wait_for(lambda: stage.tremendous.losses[0].remaining == 0, what="the hung vendor call")
    assert worker.kill() == -9
    entries = stage.entries()
    assert stage.crash_violations(entries) == []
    # The hung one (and any other thread's call in flight): ordered, answer not saved.
    hung = [rid for rid, e in entries.items()
            if e.state is State.ORDERING and stage.created(rid) == 1]
    assert hung, {rid: e.state.value for rid, e in entries.items()}

    stage.wait_lease()
    stage.settle(config)
    assert stage.violations() == []
    for rid in hung:
        assert stage.posts(rid) == 1  # looked up by key, never POSTed again
        assert stage.entries()[rid].state is State.FULFILLED


def test_kill_9_during_the_influitive_decision(stage: Stage) -> None:
    """The decision request is in flight (Influitive slow) when the worker is killed; it
    takes effect at Influitive after the worker died. The restart decides again: whichever
    lands first wins, the other is "already decided", and exactly one is accepted."""
    stage.seed({1: "good", 2: "refused", 3: "good"})
    stage.influitive.add_faults(Fault(delay=2.5, match="/decision/"))
    config = stage.config(timeout_seconds=20)
    worker = stage.popen("run", "--run-once", config=config)
    wait_for(lambda: stage.influitive.knobs()["queue"] == [], what="the slow decision")
    time.sleep(0.2)
    assert worker.kill() == -9
    entries = stage.entries()
    assert stage.crash_violations(entries) == []
    in_flight = [rid for rid, e in entries.items()
                 if e.state in (State.ORDERED, State.REFUSING) and rid not in stage.accepted()]
    assert in_flight, {rid: e.state.value for rid, e in entries.items()}

    stage.wait_lease()
    stage.settle(config)
    time.sleep(2.5)  # the dead worker's decision lands late
    assert stage.violations() == []
    late = [d for d in stage.influitive.decisions() if d.id == in_flight[0]]
    assert len(late) == 2 and sum(d.accepted for d in late) == 1


def test_decision_lost_on_the_way_back(stage: Stage) -> None:
    """Influitive applies the decision but the answer is lost (502 after the fact, then the
    worker dies before it can try again): the restart sends it again, Influitive says
    "already decided", and the ledger records the redemption as decided, once."""
    stage.seed({1: "good", 2: "refused"})
    stage.influitive.add_faults(
        Fault(status=502, after=True, match="/1/decision/"),
        Fault(status=502, after=True, match="/2/decision/"),
    )
    config = stage.config(http_attempts=1)
    first = stage.run_once(config)
    assert first.returncode == 0, first.stderr
    entries = stage.entries()
    assert entries["1"].state is State.ORDERED and entries["2"].state is State.REFUSING
    assert stage.accepted() == {"1": ["fulfill"], "2": ["refuse"]}
    assert stage.crash_violations(entries) == []
    stage.wait_lease()
    stage.settle(config)
    assert stage.violations() == []
    for rid in ("1", "2"):
        story = [ev.detail for ev in _events(stage, stage.entries()[rid])]
        assert "already decided" in story[-1], story


def _events(stage: Stage, entry: LedgerEntry) -> list[Event]:
    ledger = stage.open_ledger()
    try:
        return ledger.events(entry.pk)
    finally:
        ledger.close()
