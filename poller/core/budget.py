"""A request budget shared by every worker on one ledger: at most ``max_requests`` requests
to one upstream in any rolling window of ``window_seconds``.

Influitive sits behind an AWS WAF rule that blocks an IP address past a fixed number of
requests in any 5-minute window (docs/influitive.md). Workers on one ledger usually share
an egress address, so the count must be shared too: each request first takes a unit from a
``RequestLog`` (a table in the ledger, or the in-memory one below for tests). When the
budget is spent, the caller waits until the oldest unit leaves the window, so nothing is
sent only to be blocked. Each request takes its own unit, as it is about to be sent.

Pure: no SQL or HTTP here. ``poller.ledger.budget`` is the SQL ``RequestLog``.
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
    """``max_requests`` to ``scope`` in any rolling window of ``window_seconds``."""

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
    """What ``RequestLog.try_take`` gave: ``taken`` (False when the budget is spent) and,
    when not, ``free_in`` seconds until the oldest unit in the window frees. ``at``: the
    time the unit was stamped with, on the log's clock (None when none was taken, or the
    log does not say)."""

    taken: bool
    free_in: float = 0.0
    at: datetime | None = field(default=None, compare=False)


class RequestLog(Protocol):
    """Where the units taken are counted. ``try_take`` is atomic across every process that
    shares the log: two callers never both take the last unit."""

    def try_take(self, limit: BudgetLimit, clock: Callable[[], datetime]) -> Grant:
        """Take one unit if fewer than ``limit.max_requests`` were taken in the window
        ending now (and forget units older than the window). ``clock`` is read once the
        log is locked, so a unit is never stamped earlier than one another process took
        meanwhile. A log shared by several hosts keeps one clock of its own
        instead (the database server's, ``poller.ledger.budget``): the window and the stamps
        of every host are then on the same clock, whatever the hosts' clocks say."""
        ...

    def taken(self, limit: BudgetLimit, now: datetime) -> int:
        """Units taken in the window ending at ``now`` (for status output and tests)."""
        ...


class BudgetWaitAborted(PollerError):
    """No unit was taken, so no request may be sent: the worker is stopping, or the budget
    stayed spent for longer than one whole window (other workers keep taking the units)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RequestBudget:
    """Takes one unit per request, waiting while the budget is spent.

    The wait is bounded: one window (plus a little) at most, since every unit in the log
    leaves the window by then; past that, BudgetWaitAborted. ``stop`` (the worker's stop
    event) ends a wait early, with BudgetWaitAborted too.
    """

    def __init__(
        self,
        log: RequestLog,
        limit: BudgetLimit,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = _utcnow,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        """``wait(seconds)`` sleeps and returns True to abort the wait (default: waits on
        ``stop``, so a stop request ends it at once)."""
        self.log = log
        self.limit = limit
        self._stop = stop or threading.Event()
        self._clock = clock
        self._wait = wait if wait is not None else self._stop.wait

    def take(self) -> float:
        """Take one unit; returns the seconds waited for it."""
        started = self._clock()
        give_up = started + timedelta(seconds=self.limit.window_seconds * 1.5 + 1.0)
        while True:
            if self._stop.is_set():
                raise BudgetWaitAborted(
                    f"stopping: no {self.limit.scope} request sent while waiting for the "
                    "request budget"
                )
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
                raise BudgetWaitAborted(
                    f"stopping: no {self.limit.scope} request sent while waiting for the "
                    "request budget"
                )


class MemoryRequestLog:
    """``RequestLog`` in memory, for tests and for a single process with no ledger."""

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
