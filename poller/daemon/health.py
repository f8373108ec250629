"""Is the daemon well? Judged at each ``/healthz`` request: healthy while the last successful
poll is at most two intervals old (so one slow or failed cycle is not an outage; before the
first, for two intervals from the start), and no operator-facing problem is on the board
(docs/cli.md "run": a person must act, however fresh the polls).
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
    """The operator-facing problems recent cycles met, by cause, each until no cycle has met
    it for ``keep_seconds`` (thread-safe: cycles write, ``/healthz`` reads)."""

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
            "last_successful_poll": _iso(last) if last is not None else None,
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
        last = self._last_success()
        age = self._clock() - (self.started_at if last is None else last)
        ok = age <= self.threshold
        late = f"more than 2 intervals ({self.threshold:g}s)"
        if last is not None:
            reason = f"last successful poll {age:.0f}s ago" + ("" if ok else f", {late}")
        elif ok:
            reason = f"starting: no poll finished yet ({age:.0f}s since start)"
        else:
            reason = (f"no successful poll since the daemon started {age:.0f}s ago "
                      f"(more than 2 intervals, {self.threshold:g}s)")
        problems = self.problems.current() if self.problems is not None else []
        if problems:
            ok = False
            reason = "a person must act: " + "; ".join(p["message"] for p in problems)
        return Verdict(ok=ok, reason=reason, last_successful_poll=last,
                       threshold_seconds=self.threshold, problems=problems)
