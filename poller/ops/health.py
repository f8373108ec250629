"""Is the daemon well? Judged when asked (each ``/healthz`` request), from the time of its
last successful poll: healthy while that is at most two polling intervals old.

Two intervals, not one, so a single slow or failed cycle is not an outage; and before the
first cycle has finished, the daemon counts as healthy for two intervals from its start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Verdict:
    ok: bool
    reason: str
    last_successful_poll: float | None
    threshold_seconds: float

    def as_json(self, now: float) -> dict[str, Any]:
        last = self.last_successful_poll
        return {
            "status": "ok" if self.ok else "unhealthy",
            "reason": self.reason,
            "last_successful_poll": (
                datetime.fromtimestamp(last, UTC).isoformat() if last is not None else None
            ),
            "seconds_since_last_successful_poll": (
                round(now - last, 3) if last is not None else None
            ),
            "threshold_seconds": self.threshold_seconds,
        }


class Health:
    def __init__(
        self, *, interval_seconds: float, last_success: Callable[[], float | None],
        started_at: float | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self.threshold = 2 * interval_seconds
        self._last_success = last_success
        self._clock = clock
        self.started_at = clock() if started_at is None else started_at

    def now(self) -> float:
        return self._clock()

    def judge(self) -> Verdict:
        now = self._clock()
        last = self._last_success()
        if last is None:
            waited = now - self.started_at
            if waited <= self.threshold:
                reason = f"starting: no poll finished yet ({waited:.0f}s since start)"
                return Verdict(ok=True, reason=reason, last_successful_poll=None,
                               threshold_seconds=self.threshold)
            reason = (f"no successful poll since the daemon started {waited:.0f}s ago "
                      f"(more than 2 intervals, {self.threshold:g}s)")
            return Verdict(ok=False, reason=reason, last_successful_poll=None,
                           threshold_seconds=self.threshold)
        age = now - last
        if age <= self.threshold:
            return Verdict(ok=True, reason=f"last successful poll {age:.0f}s ago",
                           last_successful_poll=last, threshold_seconds=self.threshold)
        return Verdict(
            ok=False,
            reason=(f"last successful poll {age:.0f}s ago, more than 2 intervals "
                    f"({self.threshold:g}s)"),
            last_successful_poll=last, threshold_seconds=self.threshold,
        )
