"""Ambiguous answers from Influitive, through the real worker and the stand-in: an empty list
that closes nothing at once, decisions answered by AWS WAF's challenge or by a 404/422 that
applied nothing, a vendor slower than the lease. Each ends with one order and one accepted
decision, and nothing finished in the ledger while the stand-in still lists it."""

from __future__ import annotations

import time

import httpx
import pytest

from poller.domain.states import State
from poller.sandbox.influitive import Fault
from tests.system.faults.harness import TOKEN, Stage, key_of

pytestmark = pytest.mark.e2e


def test_the_stand_in_answers_like_the_waf_and_applies_nothing(stage: Stage) -> None:
    stage.seed({1: "good"})
    stage.influitive.add_faults(Fault(waf="challenge"), Fault(empty_list=True))
    headers = {"Authorization": f"Token {TOKEN}", "X_ORG_ID": "x"}
    with httpx.Client(base_url=stage.influitive_url) as client:
        answer = client.post("/reward_redemptions/1/decision/fulfill", headers=headers,
                             json={"message": "m"})
        assert answer.status_code == 202
        assert answer.headers["x-amzn-waf-action"] == "challenge"
        assert answer.text.lstrip().startswith("<!DOCTYPE html>")
        listed = client.get("/reward_redemptions", headers=headers)
        assert listed.status_code == 200
        assert listed.json()["reward_redemptions"] == [] and listed.json()["links"]["next"] is None
    assert stage.influitive.outstanding_ids() == ["1"]  # nothing applied
    assert stage.accepted() == {}


def test_an_empty_list_closes_nothing_at_once_and_a_listed_one_comes_back(
    stage: Stage,
) -> None:
    stage.seed({1: "held", 2: "good"})
    config = stage.config()
    assert stage.run_once(config).returncode == 0
    assert stage.accepted() == {"2": ["fulfill"]}
    # The list answers empty twice in a row: one run reads it once.
    stage.influitive.add_faults(Fault(empty_list=True, match="GET /reward_redemptions"),
                                Fault(empty_list=True, match="GET /reward_redemptions"))
    assert stage.run_once(config).returncode == 0
    assert stage.entries()["1"].state is State.HELD
    assert stage.run_once(config).returncode == 0  # missing in a second cycle: gone
    assert stage.entries()["1"].state is State.CLOSED_UPSTREAM
    assert stage.run_once(config).returncode == 0  # listed again: reopened, held again
    assert stage.entries()["1"].state is State.HELD
    assert stage.violations() == []


@pytest.mark.parametrize("answer", [Fault(waf="challenge"), Fault(status=404),
                                    Fault(status=422)], ids=["challenge", "404", "422"])
def test_a_decision_that_applied_nothing_is_sent_again(stage: Stage, answer: Fault) -> None:
    stage.seed({1: "good", 2: "refused"})
    stage.influitive.add_faults(Fault(waf=answer.waf, status=answer.status,
                                      match="/1/decision/"),
                                Fault(waf=answer.waf, status=answer.status,
                                      match="/2/decision/"))
    config = stage.config()
    first = stage.run_once(config)
    if answer.waf is not None:
        # A firewall answer is the operator's to know about at once: exit 1, named.
        assert first.returncode == 1 and "firewall" in first.stderr
    else:
        assert first.returncode == 0, first.stderr
    assert stage.accepted() == {}
    # Whatever the client made of the answer, the complete polls that still list both
    # bring them back until the decision takes effect.
    stage.settle(config, max_runs=20)
    assert stage.violations() == []
    assert stage.accepted() == {"1": ["fulfill"], "2": ["refuse"]}
    assert stage.created("1") == 1


def test_a_vendor_slower_than_the_lease_is_posted_once(stage: Stage) -> None:
    stage.seed({1: "good", 2: "good"})
    stage.tremendous.set_delay(2.0)
    config = stage.config(lease_seconds=0.6, concurrency=1, interval_seconds=0.2,
                          timeout_seconds=5)
    daemon = stage.popen("run", config=config)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not stage.finished():
        time.sleep(0.2)
    daemon.kill()
    assert stage.finished()
    for rid in ("1", "2"):
        assert stage.posts(rid) == 1, rid
        assert stage.tremendous.created_for(key_of(rid)) == 1
    assert stage.violations() == []
