"""The operator commands through the real CLI: each asks the vendor by key first."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from poller.domain.keys import idempotency_key
from tests.system.cli.conftest import ORG, SECRETS, Standins, cli_env, run_cli

PENDING_RULE = '''
[[rewards]]
reward_id = "38"
vendor = "tremendous"
product = "PENDING"
amount = "10.00"
currency = "USD"
'''


def key_of(rid: str, generation: int = 0) -> str:
    return idempotency_key(namespace=ORG, source="influitive", redemption_id=rid,
                           generation=generation)


def run_dying(config: Path, failpoint: str) -> None:
    env = cli_env()
    env["REWARD_POLLER_FAILPOINT"] = failpoint
    done = subprocess.run(
        [sys.executable, "-m", "poller", "--log-format", "json", "--config", str(config),
         "run", "--run-once"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 137, done.stderr
    for secret in SECRETS:
        assert secret not in done.stdout and secret not in done.stderr


def run_until(state: str, rid: str, config: Path, runs: int = 10) -> None:
    """``run --run-once`` until the redemption is in ``state`` (a pending order is checked
    again once ``interval_seconds`` has passed)."""
    for _ in range(runs):
        run_cli("run", "--run-once", config=config)
        if show(rid, config)["state"] == state:
            return
        time.sleep(0.5)
    raise AssertionError(f"redemption {rid} never reached {state}: {show(rid, config)}")


def show(rid: str, config: Path) -> dict[str, object]:
    out = run_cli("ledger", "show", rid, "--json", config=config)
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_ledger_refuse_asks_the_vendor_and_will_not_refund_a_sent_reward(
    standins: Standins,
) -> None:
    standins.seed(1)
    config = standins.config(lease_seconds="1")
    # The vendor created the order; the worker died before saving its answer.
    run_dying(config, "after_vendor_answer")
    assert standins.tremendous.created_for(key_of("1")) == 1
    time.sleep(1.2)  # the dead worker's lease runs out
    refused = run_cli("ledger", "refuse", "1", "-m", "Sorry", "--by", "ana", config=config)
    assert refused.returncode == 1
    order = standins.tremendous.find(key_of("1"))
    assert order is not None and order["id"] in refused.stderr
    assert standins.accepted() == {}  # no refund of a reward that was sent
    entry = show("1", config)
    assert entry["vendor_order_id"] == order["id"]
    # The worker finishes it: the advocate is told the reward is on its way.
    assert run_cli("run", "--run-once", config=config).returncode == 0
    assert standins.accepted() == {"1": ["fulfill"]}


def test_ledger_retry_does_not_announce_a_failed_order(standins: Standins) -> None:
    standins.seed(2, reward_id=38, reward_name="$10 card")
    config = standins.config(extra=PENDING_RULE)
    assert run_cli("run", "--run-once", config=config).returncode == 0
    standins.tremendous.set_status(key_of("2"), "FAILED")
    run_until("held", "2", config)
    retry = run_cli("ledger", "retry", "2", "--by", "ana", config=config)
    assert retry.returncode == 1 and "reorder" in retry.stderr
    assert show("2", config)["state"] == "held"
    assert standins.accepted() == {}


def test_ledger_reorder_places_a_new_order_for_a_failed_one(standins: Standins) -> None:
    standins.seed(3, reward_id=38, reward_name="$10 card")
    config = standins.config(extra=PENDING_RULE)
    assert run_cli("run", "--run-once", config=config).returncode == 0
    standins.tremendous.set_status(key_of("3"), "FAILED")
    run_until("held", "3", config)
    reorder = run_cli("ledger", "reorder", "3", "--by", "ana", config=config)
    assert reorder.returncode == 0, reorder.stderr
    assert "held -> waiting" in reorder.stdout and key_of("3", 1) in reorder.stdout
    assert run_cli("run", "--run-once", config=config).returncode == 0
    assert standins.tremendous.created_for(key_of("3", 1)) == 1
    standins.tremendous.approve(key_of("3", 1))
    run_until("fulfilled", "3", config)
    assert standins.accepted() == {"3": ["fulfill"]}
    assert standins.tremendous.created_for(key_of("3")) == 1  # the failed one, untouched
