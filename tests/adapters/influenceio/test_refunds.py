"""The Influence.io decider with a Platform API key: a refusal refunds the points once,
recorded before the call, looked up after an unknown outcome, never repeated blind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from poller.domain.errors import SourceUnavailable
from poller.domain.states import State
from poller.ledger.memory import MemoryLedger
from poller.ports import LeaseLost
from poller.sources.influenceio.refunds import InfluenceioRefunds, plan_refund
from poller.sources.influenceio.wire import parse_redeemed

from .conftest import MakePoints, Platform, redeemed

OWNER = "worker-1"
NOW = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)


class Rig:
    def __init__(self, make_points: MakePoints, **points: Any) -> None:
        self.ledger = MemoryLedger()
        self.refunds = InfluenceioRefunds(make_points(**points), self.ledger, owner=OWNER,
                                          clock=lambda: NOW)

    def refusing(self, body: dict[str, Any]) -> int:
        """Record the event and move it to REFUSING under the worker's lease, as the worker
        does before it calls the decider."""
        self.ledger.record(0, [parse_redeemed(body)], NOW)
        entry = self.ledger.get("influenceio", str(body["id"]))
        assert entry is not None
        self.ledger.claim(entry.pk, OWNER, NOW, 60)
        self.ledger.transition(entry.pk, OWNER, State.REFUSING, "refusing: test", NOW)
        return entry.pk

    def details(self, pk: int) -> list[str]:
        return [e.detail for e in self.ledger.events(pk)]


def test_a_refusal_refunds_the_points_once_and_says_so_first(
    platform: Platform, make_points: MakePoints
) -> None:
    rig = Rig(make_points)
    pk = rig.refusing(redeemed("evt-1", points=500))

    rig.refunds.refuse("evt-1", "sorry")
    rig.refunds.refuse("evt-1", "sorry")  # a replay after a crash before REFUSED

    [award] = platform.state.awards()
    assert award.points == 500 and "evt-1" in (award.reason or "")
    assert rig.details(pk)[-1] == ("refunding: refund of 500 points to Influence.io customer "
                                   "c-1 (reason 'Refund: reward redemption evt-1 was refused')")


def test_a_lost_answer_is_looked_up_not_repeated(
    platform: Platform, make_points: MakePoints
) -> None:
    rig = Rig(make_points)
    rig.refusing(redeemed("evt-1"))
    platform.state.lose_answers(1, "drop")

    with pytest.raises(SourceUnavailable, match="outcome unknown"):
        rig.refunds.refuse("evt-1", "sorry")
    rig.refunds.refuse("evt-1", "sorry")

    assert len(platform.state.awards()) == 1
    assert platform.state.balance("c-1") == 600


def test_an_unknown_outcome_that_did_not_apply_is_repeated_after_the_look_up(
    platform: Platform, make_points: MakePoints
) -> None:
    rig = Rig(make_points)
    rig.refusing(redeemed("evt-1"))
    platform.state.fail(503)

    with pytest.raises(SourceUnavailable, match="outcome unknown"):
        rig.refunds.refuse("evt-1", "sorry")
    rig.refunds.refuse("evt-1", "sorry")

    assert len(platform.state.awards()) == 1


def test_without_a_history_an_unknown_outcome_is_never_repeated(
    platform: Platform, make_points: MakePoints
) -> None:
    rig = Rig(make_points, history_path="")
    rig.refusing(redeemed("evt-1"))
    platform.state.lose_answers(1, "drop")

    with pytest.raises(SourceUnavailable):
        rig.refunds.refuse("evt-1", "sorry")
    for _ in range(3):
        with pytest.raises(SourceUnavailable, match="not repeated"):
            rig.refunds.refuse("evt-1", "sorry")

    assert len(platform.state.awards()) == 1


def test_a_refund_that_surely_failed_is_sent_again_without_a_look_up(
    platform: Platform, make_points: MakePoints
) -> None:
    rig = Rig(make_points, history_path="")
    rig.refusing(redeemed("evt-1", customer="c-2"))

    with pytest.raises(SourceUnavailable, match="does not know the customer"):
        rig.refunds.refuse("evt-1", "sorry")
    platform.state.seed_customer("c-2", 0)
    rig.refunds.refuse("evt-1", "sorry")

    assert [a.customer_id for a in platform.state.awards()] == ["c-2"]


def test_an_event_without_points_is_left_for_a_person(
    platform: Platform, make_points: MakePoints
) -> None:
    rig = Rig(make_points)
    rig.refusing(redeemed("evt-1", points=None))

    rig.refunds.refuse("evt-1", "sorry")

    assert platform.state.awards() == []


def test_fulfil_tells_influenceio_nothing(platform: Platform, make_points: MakePoints) -> None:
    Rig(make_points).refunds.fulfill("evt-1", "sent")
    assert platform.state.requests == 0


@pytest.mark.parametrize(("body", "field", "expected"), [
    (redeemed(points=-750), "id", ("c-1", 750)),
    (redeemed(points="250"), "externalId", ("ext-c-1", 250)),
    (redeemed(points=2.5), "id", None),
    (redeemed(points=0), "id", None),
    (redeemed(customer=""), "id", None),
])
def test_plan_refund(body: dict[str, Any], field: str, expected: Any) -> None:
    plan = plan_refund(body, "evt-1", customer_id_field=field)
    if expected is None:
        assert isinstance(plan, str)
    else:
        assert not isinstance(plan, str)
        assert (plan.customer_id, plan.points) == expected


def test_the_lease_must_be_ours(platform: Platform, make_points: MakePoints) -> None:
    rig = Rig(make_points)
    pk = rig.refusing(redeemed("evt-1"))
    rig.ledger.release(pk, OWNER)
    rig.ledger.claim(pk, "someone-else", NOW + timedelta(seconds=1), 60)

    with pytest.raises(LeaseLost):
        rig.refunds.refuse("evt-1", "sorry")
    assert platform.state.awards() == []
