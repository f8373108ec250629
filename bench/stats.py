"""Pure arithmetic of the figures: percentiles, a rate from timestamps, a process's CPU
time from ``/proc/<pid>/stat``, and the drain target's verdict."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

DRAIN_SHARE = 0.9
"""A drain must reach this share of its binding limit."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, interpolated linearly between the two
    nearest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rate_per_second(times: Sequence[float]) -> float:
    """Events a second from the first to the last of ``times`` (n events, n - 1 gaps);
    nan for fewer than two events or no time between them."""
    if len(times) < 2:
        return math.nan
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else math.nan


def proc_cpu_seconds(stat: str, ticks_per_second: int | None = None) -> float:
    """User + system CPU seconds of a process from the text of its ``/proc/<pid>/stat``
    (fields 14 and 15, counted in clock ticks). The command name, field 2, is in
    parentheses and may hold spaces: the fields are counted after its closing one."""
    ticks = ticks_per_second or os.sysconf("SC_CLK_TCK")
    rest = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / ticks


def drain_met(share: float, blocked: int, throttled: int, left: int) -> bool:
    """The drain target: at least ``DRAIN_SHARE`` of the binding limit, no request blocked
    by Influitive's budget, no 429 from the vendor, nothing left outstanding."""
    return share >= DRAIN_SHARE and blocked == 0 and throttled == 0 and left == 0
