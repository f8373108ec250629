"""Several worker processes at once on one ledger (PostgreSQL, and one SQLite file): no
redemption is ever ordered by two workers, none is decided twice, none is lost.

Four daemons (the default ``[schedule] concurrency`` threads each) poll the same Influitive
stand-in every 0.3 s while the vendor stand-in answers slowly, so their cycles overlap all
the time: they record the same polls, race for the same rows, and each works rows another
one recorded.
"""

from __future__ import annotations

import signal
import time

import pytest

from poller.domain.states import ACTIVE
from tests.system.faults.harness import Kind, Stage, wait_for

pytestmark = pytest.mark.e2e

WORKERS = 4
REDEMPTIONS = 300


def mix(n: int) -> dict[int, Kind]:
    kinds: dict[int, Kind] = {}
    for rid in range(1, n + 1):
        kinds[rid] = "refused" if rid % 10 == 3 else "held" if rid % 25 == 7 else "good"
    return kinds


@pytest.mark.timeout(240)
def test_four_workers_over_300_redemptions(stage: Stage) -> None:
    stage.influitive.configure(page_size=50)
    stage.seed(mix(REDEMPTIONS))
    stage.tremendous.set_delay(0.05)
    config = stage.config(lease_seconds=30, interval_seconds=0.3)
    workers = [stage.popen("run", config=config) for _ in range(WORKERS)]

    def quiet() -> bool:
        entries = stage.entries()
        return len(entries) == REDEMPTIONS and not any(
            e.state in ACTIVE for e in entries.values())

    wait_for(quiet, timeout=150, what="every redemption worked")
    time.sleep(1.0)  # a few more overlapping cycles with nothing to do
    for w in workers:
        w.popen.send_signal(signal.SIGTERM)
    codes = [w.wait(20) for w in workers]
    assert codes == [0] * WORKERS, [w.stderr[-2000:] for w in workers]

    assert stage.violations() == []
    counts = stage.tremendous.counts()
    routed = [rid for rid, kind in stage.kinds.items() if kind in ("good", "refused")]
    # Not only one order per redemption: one POST, i.e. no two workers ever called the
    # vendor for the same redemption.
    assert all(counts[k]["received"] == 1 for k in counts), {
        k: c for k, c in counts.items() if c["received"] != 1}
    assert len(counts) == len(routed)
    decided = [d for d in stage.influitive.decisions() if d.source == "api"]
    assert len(decided) == len(routed)  # not even a rejected second attempt
