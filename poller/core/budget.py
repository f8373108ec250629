"""A request budget shared by every worker on one ledger: at most ``max_requests`` requests
to one upstream in any rolling window of ``window_seconds``.

Influitive sits behind an AWS WAF rule that blocks an IP address past a fixed number of
requests in any 5-minute window (docs/influitive.md). Workers on one ledger usually share
an egress address, so the count must be shared too: each request first takes a unit from a
``RequestLog`` (a table in the ledger, or the in-memory one below for tests). When the
budget is spent, the caller waits until the oldest unit leaves the window, so nothing is
sent only to be blocked.

Taking a unit is a write to the ledger. Under load the budget takes several at once (a
batch that doubles while every unit of the last one was used in time, halves when the
last one ran out of time just now, and is back to one after a quiet spell) and hands them
to the next requests; a unit taken ahead is used within
``hold_seconds`` of being taken or dropped, still counted. That is safe because the window
the log counts in is wider than the firewall's by a margin (``budget_window``): a unit held
for part of that margin is still in the log's window whenever its request is in the
firewall's, the rest of the margin covering the request's way there.

Pure: no SQL or HTTP here. ``poller.ledger.budget`` is the SQL ``RequestLog``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from poller.core.errors import PollerError


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
    """What ``RequestLog.try_take`` gave: ``units`` taken (0 when the budget is spent) and,
    when none, ``free_in`` seconds until the oldest unit in the window frees. ``at``: the
    time the units were stamped with, on the log's clock (None when none were taken, or the
    log does not say)."""

    units: int
    free_in: float = 0.0
    at: datetime | None = field(default=None, compare=False)


class RequestLog(Protocol):
    """Where the units taken are counted. ``try_take`` is atomic across every process that
    shares the log: two callers never both take the last unit."""

    def try_take(
        self, limit: BudgetLimit, clock: Callable[[], datetime], units: int = 1
    ) -> Grant:
        """Take up to ``units`` units, as many as fewer than ``limit.max_requests`` taken
        in the window ending now allow (and forget units older than the window). ``clock``
        is read once the log is locked, so a unit is never stamped earlier than one another
        process took meanwhile. A log shared by several hosts keeps one clock of its own
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
        hold_seconds: float = 0.0,
    ) -> None:
        """``wait(seconds)`` sleeps and returns True to abort the wait (default: waits on
        ``stop``, so a stop request ends it at once). ``hold_seconds``: how long a unit
        taken ahead may wait for its request (0: one unit at a time)."""
        self.log = log
        self.limit = limit
        self._stop = stop or threading.Event()
        self._clock = clock
        self._wait = wait if wait is not None else self._stop.wait
        self._hold = timedelta(seconds=max(hold_seconds, 0.0))
        # At most a tenth of the budget ahead: what a batch leaves unused (the end of a
        # backlog) stays counted until it leaves the window.
        self._most = (1 if hold_seconds <= 0
                      else max(1, min(32, limit.max_requests // 10)))
        self._batch = 1
        self._spare = 0
        self._spare_until = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def _try_take(self) -> float | None:
        """One unit, from those taken ahead or from the log: None when taken, else the
        seconds until the log may have one."""
        with self._lock:
            now = self._clock()
            in_time = now <= self._spare_until
            if self._spare and in_time:
                self._spare -= 1
                return None
            # Every unit of the last batch went to a request in time: ask for twice as
            # many. The last batch ran out of time just now (units left over, dropped but
            # still counted, or used up a little late): the requests come a little slower
            # than it assumed, so half as many. A quiet spell since: one at a time again.
            if in_time:
                self._batch = min(self._batch * 2, self._most)
            elif now - self._spare_until <= self._hold:
                self._batch = max(1, self._batch // 2)
            else:
                self._batch = 1
            self._spare = 0
            grant = self.log.try_take(self.limit, self._clock, self._batch)
            if not grant.units:
                return grant.free_in
            # From before the log stamped them: a unit is never used later than
            # hold_seconds after its stamp.
            self._spare, self._spare_until = grant.units - 1, now + self._hold
            return None

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
            free_in = self._try_take()
            now = self._clock()
            if free_in is None:
                return (now - started).total_seconds()
            if now >= give_up:
                raise BudgetWaitAborted(
                    f"the {self.limit.scope} request budget ({self.limit.max_requests} per "
                    f"{self.limit.window_seconds:g} s) stayed spent for "
                    f"{(now - started).total_seconds():.0f} s; no request sent"
                )
            # A small floor so that a log answering 0 cannot spin; a small cap so that a
            # unit freed by a clock step on another host is noticed soon.
            pause = min(max(free_in, 0.05), 5.0, (give_up - now).total_seconds() + 0.05)
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

    def try_take(
        self, limit: BudgetLimit, clock: Callable[[], datetime], units: int = 1
    ) -> Grant:
        window = timedelta(seconds=limit.window_seconds)
        with self._lock:
            now = clock()
            times = self._taken.setdefault(limit.scope, deque())
            while times and times[0] <= now - window:
                times.popleft()
            free = min(units, limit.max_requests - len(times))
            if free > 0:
                times.extend([now] * free)
                return Grant(free, at=now)
            return Grant(0, max(0.0, (times[0] + window - now).total_seconds()))

    def taken(self, limit: BudgetLimit, now: datetime) -> int:
        window = timedelta(seconds=limit.window_seconds)
        with self._lock:
            return sum(1 for t in self._taken.get(limit.scope, ()) if t > now - window)
