"""The figures' arithmetic: percentiles, rates, a process's CPU time, the drain verdict."""

from __future__ import annotations

import math

import pytest

from bench.report import Figure
from bench.stats import drain_met, percentile, proc_cpu_seconds, rate_per_second


def test_percentile_interpolates_between_the_nearest_ranks() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # unordered on purpose
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 5.0
    assert percentile(values, 0.99) == pytest.approx(4.96)
    assert percentile([7.0], 0.99) == 7.0


def test_percentile_refuses_no_values_and_a_quantile_outside_zero_to_one() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 99)


def test_rate_counts_the_gaps_between_the_first_and_last_event() -> None:
    # 11 orders 0.1 s apart: 10 a second, whatever the order they are listed in.
    times = [100.0 + i / 10 for i in range(11)][::-1]
    assert rate_per_second(times) == pytest.approx(10.0)
    assert math.isnan(rate_per_second([1.0]))
    assert math.isnan(rate_per_second([2.0, 2.0]))


def test_proc_cpu_seconds_adds_user_and_system_ticks_after_the_command_name() -> None:
    # A command name with a space and a parenthesis, as /proc allows.
    stat = ("4242 (python (x) y) S 1 4242 4242 0 -1 4194304 1500 0 0 0 "
            "250 50 0 0 20 0 3 0 12345 123456789 4000 18446744073709551615")
    assert proc_cpu_seconds(stat, ticks_per_second=100) == pytest.approx(3.0)


def test_proc_cpu_seconds_reads_this_process() -> None:
    with open("/proc/self/stat") as f:
        first = proc_cpu_seconds(f.read())
    sum(i * i for i in range(2_000_000))  # some CPU
    with open("/proc/self/stat") as f:
        assert proc_cpu_seconds(f.read()) >= first > 0


@pytest.mark.parametrize(("share", "blocked", "throttled", "left", "met"), [
    (0.95, 0, 0, 0, True),
    (0.90, 0, 0, 0, True),
    (0.89, 0, 0, 0, False),
    (0.99, 1, 0, 0, False),
    (0.99, 0, 1, 0, False),
    (0.99, 0, 0, 1, False),
])
def test_drain_is_met_at_ninety_percent_with_nothing_blocked_throttled_or_left(
    share: float, blocked: int, throttled: int, left: int, met: bool
) -> None:
    assert drain_met(share, blocked, throttled, left) is met


def test_a_figure_without_a_target_is_a_note() -> None:
    note = Figure(number=7, title="t", measured="m", target="none (note)", met=None)
    assert note.verdict == "note"
    assert Figure(number=1, title="t", measured="m", target="x", met=False).verdict == "NOT MET"
    assert Figure(number=1, title="t", measured="m", target="x", met=True).verdict == "met"
