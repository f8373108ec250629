"""Worker threads started one at a time while the process is idle (poller.worker.ramp): up
to ``concurrency`` against a slow vendor, one while the work keeps the interpreter busy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import pytest

from poller.worker.cycle import Worker
from poller.worker.ramp import BUSY_BELOW, SETTLE, WINDOW_SECONDS, ThreadRamp
from tests.unit.test_worker_concurrency import Rig, SlowVendor


class Clocks:
    """Wall and CPU clocks moved by hand: ``tick(share)`` is one window in which the process
    used ``share`` of one CPU."""

    def __init__(self) -> None:
        self.wall = 100.0
        self.cpu = 10.0

    def tick(self, share: float, seconds: float = WINDOW_SECONDS) -> None:
        self.wall += seconds
        self.cpu += share * seconds

    def ramp(self, most: int) -> ThreadRamp:
        return ThreadRamp(most, cpu=lambda: self.cpu, wall=lambda: self.wall)


def test_the_first_thread_starts_at_once() -> None:
    ramp = Clocks().ramp(4)
    assert ramp.grow() and ramp.running == 1


def test_an_idle_process_grows_one_thread_every_few_windows_up_to_the_most() -> None:
    clocks = Clocks()
    ramp = clocks.ramp(3)
    started = [ramp.grow()]
    for _ in range(4 * SETTLE):
        clocks.tick(0.05)  # threads waiting on a vendor
        started.append(ramp.grow())
    assert [i for i, yes in enumerate(started) if yes] == [0, SETTLE, 2 * SETTLE]
    assert ramp.running == 3


def test_a_busy_process_stays_on_one_thread() -> None:
    clocks = Clocks()
    ramp = clocks.ramp(4)
    ramp.grow()
    for _ in range(40):
        clocks.tick(0.95)
        assert not ramp.grow()
    assert ramp.running == 1
    assert ramp.busy == pytest.approx(0.95)


def test_one_quiet_window_in_a_busy_run_starts_nothing() -> None:
    clocks = Clocks()
    ramp = clocks.ramp(4)
    ramp.grow()
    for share in (0.9, 0.9, 0.9, 0.2, 0.9, 0.9):
        clocks.tick(share)
        assert not ramp.grow()
    assert ramp.running == 1


def test_threads_are_added_while_the_share_stays_below_the_bound() -> None:
    clocks = Clocks()
    ramp = clocks.ramp(4)
    ramp.grow()
    shares = {1: BUSY_BELOW - 0.1, 2: BUSY_BELOW + 0.1}  # one thread idle enough, two not
    for _ in range(10 * SETTLE):
        clocks.tick(shares[ramp.running])
        ramp.grow()
    assert ramp.running == 2


def test_windows_before_a_thread_started_do_not_count_after() -> None:
    clocks = Clocks()
    ramp = clocks.ramp(4)
    ramp.grow()
    grown = []
    for _ in range(SETTLE):
        clocks.tick(0.1)
        grown.append(ramp.grow())
    assert grown[-1] and ramp.running == 2
    for _ in range(2 * SETTLE):
        clocks.tick(0.9)  # with two the process is busy: the idle past is forgotten
        assert not ramp.grow()
    assert ramp.running == 2 and ramp.busy == pytest.approx(0.9)


def test_no_time_passed_starts_nothing() -> None:
    clocks = Clocks()
    ramp = clocks.ramp(4)
    ramp.grow()
    assert not ramp.grow()


class SpinVendor(SlowVendor):
    """Calls that keep the interpreter busy instead of waiting."""

    def place_order(self, request):  # type: ignore[no-untyped-def]
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        self.seconds, spun = 0.0, self.seconds
        try:
            return super().place_order(request)
        finally:
            self.seconds = spun


def _always(share: float) -> partial[ThreadRamp]:
    """A ramp whose CPU clock says the process used ``share`` of one CPU, whatever else runs
    on the machine running the tests."""
    began = time.monotonic()
    return partial(ThreadRamp, cpu=lambda: (time.monotonic() - began) * share)


@pytest.mark.parametrize(("vendor", "share", "threads"), [
    # Steps that keep the interpreter busy: more threads would only hand it to each other.
    (lambda: SpinVendor(seconds=0.003), 0.95, 1),
    # Steps waiting on a slow vendor: the cycle reaches its concurrency.
    (lambda: SlowVendor(seconds=0.02), 0.05, 4),
], ids=["busy", "waiting"])
def test_a_cycle_runs_as_many_threads_as_keep_the_process_busy(
    vendor: Callable[[], SlowVendor], share: float, threads: int,
) -> None:
    rig = Rig(concurrency=4, vendor=vendor())
    rig.worker.ramp = _always(share)
    rig.seed(60)
    report = rig.worker.run_cycle()
    assert report.outcomes == {"fulfilled": 60}
    assert isinstance(rig.vendor, SlowVendor)
    assert len(rig.vendor.threads) == threads and rig.vendor.most_in_flight == threads
    rig.assert_exactly_once(60)


def test_no_thread_is_started_once_the_work_has_run_out() -> None:
    clocks = Clocks()
    ramp = clocks.ramp(8)
    ran_out = threading.Event()
    names: list[str] = []

    def work() -> None:  # takes the last redemption there is
        names.append(threading.current_thread().name)
        ran_out.set()

    def grow() -> bool:  # as idle as can be: every window says "start one more"
        clocks.tick(0.0)
        return ThreadRamp.grow(ramp)

    ramp.grow = grow  # type: ignore[method-assign]
    Worker._run_threads(ramp, work, ran_out)
    assert names == ["poller-worker-0"]
