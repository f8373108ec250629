"""Random kills: many trials, each seeding a few redemptions (some the vendor refuses, some
unmapped and held), then killing the worker again and again at random moments or at a
random failpoint, then restarting it until nothing is open, and checking the delivery
guarantee from the stand-ins' records.

The ambiguous-answers variant does the same while Influitive answers decisions at random
with AWS WAF's 202 challenge (an HTML page, nothing applied), 404 or 422 (nothing applied
either), and the list comes back empty at random. Its invariant: every redemption ends with
exactly one accepted decision at the Influitive stand-in (none for the held ones) and at
most one vendor order, and none is left finished in the ledger while the stand-in still
lists it. Between kills, the order-of-writes check leaves out "the ledger says fulfilled
only once Influitive has it": a client that takes a 202 challenge for done makes the
ledger say so until the next complete poll lists the redemption again.

Quick by default (CI): 10 trials on SQLite and 5 on PostgreSQL, run three at a time. The
long variant is ``make faults`` (``REWARD_POLLER_FAULT_TRIALS=200``, per ledger). A failing
trial prints its seed; ``REWARD_POLLER_FAULT_SEED=<seed> REWARD_POLLER_FAULT_TRIALS=1``
replays it.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from poller.worker.failpoints import POINTS
from tests.system.faults.conftest import SUMMARY
from tests.system.faults.harness import Kind, LedgerKind, Ledgers, Stage, standins

pytestmark = pytest.mark.e2e

QUICK: dict[str, int] = {"sqlite": 10, "postgresql": 5}
TRIALS = int(os.environ.get("REWARD_POLLER_FAULT_TRIALS", "0"))
JOBS = int(os.environ.get("REWARD_POLLER_FAULT_JOBS", "3"))
SEED = os.environ.get("REWARD_POLLER_FAULT_SEED")


def trials(kind: str) -> int:
    return TRIALS or QUICK[kind]


def one_trial(stage: Stage, rng: random.Random, base: int,
              ambiguous: bool = False) -> tuple[list[str], list[str]]:
    """One trial on a fresh stage: (what was done, violations found). ``ambiguous``: the
    Influitive stand-in also answers decisions and reads of the list ambiguously."""
    choices: list[Kind] = ["good", "refused", "held"]
    kinds: dict[int, Kind] = {
        base + i: rng.choices(choices, weights=[7, 2, 1])[0]
        for i in range(rng.randint(3, 10))
    }
    stage.seed(kinds)
    stage.influitive.configure(page_size=rng.choice([2, 3, 50]))
    stage.tremendous.set_delay(rng.choice([0.0, 0.0, 0.01, 0.05]))
    done: list[str] = [f"{len(kinds)} redemptions"]
    if ambiguous:
        empty, wrong = rng.choice([0.1, 0.2, 0.3]), rng.choice([0.1, 0.2, 0.3])
        stage.influitive.configure(empty_list_rate=empty, decision_fault_rate=wrong,
                                   decision_faults=["challenge", "404", "422"],
                                   random_seed=rng.randrange(2**31))
        done.append(f"empty lists {empty:.0%}, decisions answered ambiguously {wrong:.0%}")
    config = stage.config(concurrency=rng.choice([None, None, 1]),
                          max_attempts=16 if ambiguous else 8)
    problems: list[str] = []
    for n in range(rng.randint(1, 3)):
        fault = rng.choice(["", "", "drop", "garbage", "503", "429"])
        if fault == "drop":
            stage.tremendous.lose_answers(1, mode="drop")
        elif fault == "garbage":
            stage.tremendous.garbage(1)
        elif fault == "503":
            stage.tremendous.fail(503, 2, path="/orders")
        elif fault == "429":
            stage.tremendous.fail(429, 1, retry_after="0", path="/orders")
        args = rng.choice([("run", "--run-once"), ("run",)])
        if rng.random() < 0.5:
            failpoint = f"{rng.choice(POINTS)}:{rng.randint(1, 4)}"
            proc = stage.popen(*args, config=config, failpoint=failpoint)
            proc.wait(3.0 if args == ("run",) else 30.0)
            how = f"failpoint {failpoint}"
        else:
            delay = rng.uniform(0.3, 1.4)
            proc = stage.popen(*args, config=config)
            proc.wait(delay)
            how = f"SIGKILL after {delay:.2f}s"
        code = proc.kill()
        done.append(f"{' '.join(args)} {how} {fault or 'no fault'}: exit {code}")
        problems += [f"after round {n + 1}: {v}"
                     for v in stage.crash_violations(answers_trusted=not ambiguous)]
        stage.wait_lease()
    stage.tremendous.clear_faults()
    runs = stage.settle(config, max_runs=40 if ambiguous else 12)
    done.append(f"{len(runs)} clean restarts")
    problems += stage.violations()
    time.sleep(0.1)  # requests of the last killed worker still in the stand-ins
    return done, problems


def run_trials(kind: LedgerKind, tmp: Path, ledgers: Ledgers, *,
               ambiguous: bool = False) -> None:
    count = trials(kind)
    seed0 = int(SEED) if SEED is not None else random.randrange(2**31)
    jobs = max(1, min(JOBS, count))

    def lane(lane_no: int) -> list[tuple[int, list[str], list[str]]]:
        found = []
        with standins(tmp / f"lane-{lane_no}", ledgers.new(kind)) as stage:
            for t in range(lane_no, count, jobs):
                if t != lane_no:
                    stage.fresh(ledgers.new(kind))
                done, problems = one_trial(stage, random.Random(seed0 + t),
                                           base=1000 * (t + 1), ambiguous=ambiguous)
                found.append((seed0 + t, done, problems))
        return found

    for lane_no in range(jobs):
        (tmp / f"lane-{lane_no}").mkdir()
    with ThreadPoolExecutor(jobs) as pool:
        results = [r for lane_results in pool.map(lane, range(jobs)) for r in lane_results]
    bad = [(seed, done, problems) for seed, done, problems in results if problems]
    what = "random kills with ambiguous answers" if ambiguous else "random kills"
    SUMMARY.append(f"{what} on {kind}: {len(results)} trials, {len(bad)} with "
                   f"violations (seeds {seed0}..{seed0 + count - 1})")
    assert len(results) == count
    assert not bad, "\n".join(
        f"seed {seed}: {'; '.join(done)}\n  " + "\n  ".join(problems)
        for seed, done, problems in bad
    )


@pytest.mark.timeout(max(180, 20 * max(TRIALS, 10)))
def test_random_kills(tmp_path: Path, ledgers: Ledgers, ledger_kind: LedgerKind) -> None:
    run_trials(ledger_kind, tmp_path, ledgers)


@pytest.mark.timeout(max(240, 30 * max(TRIALS, 10)))
def test_random_kills_with_ambiguous_answers(
    tmp_path: Path, ledgers: Ledgers, ledger_kind: LedgerKind
) -> None:
    run_trials(ledger_kind, tmp_path, ledgers, ambiguous=True)
