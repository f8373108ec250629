"""Is the daemon well? Judged when asked (each ``/healthz`` request), from the time of its
last successful poll: healthy while that is at most two polling intervals old.

Two intervals, not one, so a single slow or failed cycle is not an outage; and before the
first cycle has finished, the daemon counts as healthy for two intervals from its start.

An operator-facing problem (a vendor rejecting the credentials, no funds, a configuration
the vendor does not accept, Influitive's firewall, the poll stopping at ``max_pages``) makes
the daemon unhealthy at once, however fresh its polls: redemptions wait on a person. It is
listed under ``problems`` (cause, who, kind, redemptions waiting, the fix, when first and
last seen) until no cycle has met it for ``keep_seconds`` (the longest retry backoff, at
least two intervals: long enough for the waiting redemptions to be tried again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from poller.worker.cycle import OperatorProblem


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat()


class ProblemBoard:
    """The operator-facing problems recent cycles met, by cause (thread-safe: cycles write,
    ``/healthz`` reads)."""

    def __init__(self, *, keep_seconds: float, describe: Callable[[OperatorProblem], str],
                 clock: Callable[[], float] = time.time) -> None:
        self.keep_seconds = keep_seconds
        self._describe = describe
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[OperatorProblem, float, float]] = {}

    def update(self, problems: Sequence[OperatorProblem]) -> None:
        now = self._clock()
        with self._lock:
            for problem in problems:
                first = self._seen.get(problem.cause, (problem, now, now))[1]
                self._seen[problem.cause] = (problem, first, now)

    def current(self) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            for cause in [c for c, (_, _, last) in self._seen.items()
                          if now - last > self.keep_seconds]:
                del self._seen[cause]
            return [
                {"cause": cause, "who": p.who, "kind": p.kind, "redemptions": p.redemptions,
                 "message": self._describe(p), "first_seen": _iso(first),
                 "last_seen": _iso(last)}
                for cause, (p, first, last) in sorted(self._seen.items())
            ]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    ok: bool
    reason: str
    last_successful_poll: float | None
    threshold_seconds: float
    problems: list[dict[str, Any]] = field(default_factory=list)

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
            "problems": self.problems,
        }


class Health:
    def __init__(
        self, *, interval_seconds: float, last_success: Callable[[], float | None],
        started_at: float | None = None, clock: Callable[[], float] = time.time,
        problems: ProblemBoard | None = None,
    ) -> None:
        self.threshold = 2 * interval_seconds
        self.problems = problems
        self._last_success = last_success
        self._clock = clock
        self.started_at = clock() if started_at is None else started_at

    def now(self) -> float:
        return self._clock()

    def judge(self) -> Verdict:
        verdict = self._judge_polls()
        problems = self.problems.current() if self.problems is not None else []
        if not problems:
            return verdict
        reason = "; ".join(p["message"] for p in problems)
        return Verdict(ok=False, reason=f"a person must act: {reason}",
                       last_successful_poll=verdict.last_successful_poll,
                       threshold_seconds=self.threshold, problems=problems)

    def _judge_polls(self) -> Verdict:
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
