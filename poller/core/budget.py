"""A request budget shared by every worker on one ledger: at most ``max_requests`` requests
to one upstream in any rolling window of ``window_seconds`` (Influitive's firewall counts per
IP address, which workers on one ledger usually share: docs/influitive.md). Each request
takes a unit from a ``RequestLog`` (``poller.ledger.budget``, or the in-memory one below) as
it is about to be sent; when the budget is spent, the caller waits for the oldest unit to
leave the window, so nothing is sent only to be blocked.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from poller.domain.errors import PollerError


@dataclass(frozen=True, kw_only=True)
class BudgetLimit:
    scope: str
    max_requests: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be positive")


@dataclass(frozen=True)
class Grant:
    """Not ``taken``: ``free_in`` seconds until the oldest unit frees. ``at``: the unit's
    stamp on the log's clock, when the log says."""

    taken: bool
    free_in: float = 0.0
    at: datetime | None = field(default=None, compare=False)


class RequestLog(Protocol):
    """``try_take`` is atomic across every process sharing the log: two callers never both
    take the last unit."""

    def try_take(self, limit: BudgetLimit, clock: Callable[[], datetime]) -> Grant:
        """Take one unit if the window ending now has room, forgetting older units.
        ``clock`` is read once the log is locked, so a unit is never stamped earlier than
        one another process took meanwhile; a log shared by several hosts keeps its own
        clock (the database server's) instead."""
        ...

    def taken(self, limit: BudgetLimit, now: datetime) -> int: ...


class BudgetWaitAborted(PollerError):
    """No unit taken, no request sent: stopping, or the budget stayed spent for longer than
    one whole window (other workers keep taking the units)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RequestBudget:
    """Takes one unit per request, waiting while the budget is spent: one window and a bit
    at most (every unit leaves the window by then), or until ``stop`` is set; then
    BudgetWaitAborted. ``wait(seconds)`` sleeps and returns True to abort (default: waits
    on ``stop``)."""

    def __init__(
        self,
        log: RequestLog,
        limit: BudgetLimit,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = _utcnow,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.log = log
        self.limit = limit
        self._stop = stop or threading.Event()
        self._clock = clock
        self._wait = wait if wait is not None else self._stop.wait

    def take(self) -> float:
        """Returns the seconds waited for the unit."""
        started = self._clock()
        give_up = started + timedelta(seconds=self.limit.window_seconds * 1.5 + 1.0)
        stopping = BudgetWaitAborted(f"stopping: no {self.limit.scope} request sent while "
                                     "waiting for the request budget")
        while True:
            if self._stop.is_set():
                raise stopping
            grant = self.log.try_take(self.limit, self._clock)
            now = self._clock()
            if grant.taken:
                return (now - started).total_seconds()
            if now >= give_up:
                raise BudgetWaitAborted(
                    f"the {self.limit.scope} request budget ({self.limit.max_requests} per "
                    f"{self.limit.window_seconds:g} s) stayed spent for "
                    f"{(now - started).total_seconds():.0f} s; no request sent"
                )
            # A small floor so that a log answering 0 cannot spin; a small cap so that a
            # unit freed by a clock step on another host is noticed soon.
            pause = min(max(grant.free_in, 0.05), 5.0, (give_up - now).total_seconds() + 0.05)
            if self._wait(pause):
                raise stopping


class MemoryRequestLog:
    """For tests and for a single process with no ledger."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: dict[str, deque[datetime]] = {}

    def try_take(self, limit: BudgetLimit, clock: Callable[[], datetime]) -> Grant:
        window = timedelta(seconds=limit.window_seconds)
        with self._lock:
            now = clock()
            times = self._taken.setdefault(limit.scope, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) < limit.max_requests:
                times.append(now)
                return Grant(True, at=now)
            return Grant(False, max(0.0, (times[0] + window - now).total_seconds()))

    def taken(self, limit: BudgetLimit, now: datetime) -> int:
        window = timedelta(seconds=limit.window_seconds)
        with self._lock:
            return sum(1 for t in self._taken.get(limit.scope, ()) if t > now - window)
