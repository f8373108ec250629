"""How many worker threads a cycle runs: ``[schedule] concurrency`` at most, started one at a
time while the ones running leave the interpreter idle.

Threads help while redemptions wait on calls: at a vendor answering in 200 ms, four threads
order about four times as fast as one. They do not help once the process is busy: Python
runs one thread at a time (the GIL), so past that point every thread added only adds the
cost of handing the interpreter from thread to thread (measured against stand-ins answering
at once, on 2 cores: 4 threads used 17% more CPU than 1, and 5% more wall time than 2).

So a cycle starts one thread and starts another while the process used less than
``BUSY_BELOW`` of one CPU over the windows since the last one started (``SETTLE`` windows
at least; an average, so one quiet moment does not count as a trend). A thread once started runs
until the work runs out: the cycle never stops one mid-redemption. A vendor slow to answer
leaves the process idle, so the cycle reaches ``concurrency`` within a fraction of a second
(``SETTLE`` windows a thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable

BUSY_BELOW = 0.65
"""Start another thread while the process used less than this share of one CPU. Measured:
one thread against stand-ins answering at once keeps the process ~55% busy, two ~75%, four
~82%; against a vendor answering in 50 ms, four threads keep it under 40%."""

WINDOW_SECONDS = 0.05
"""How often the share is sampled (and at most one thread started)."""

SMOOTHING = 0.2
"""Weight of the newest window in the average."""

SETTLE = 3
"""Windows measured after a thread is started before the next decision: the average then
describes the process with that thread."""


class ThreadRamp:
    """Says when the dispatcher should start another thread (``grow``), up to ``most``."""

    def __init__(
        self, most: int, *, cpu: Callable[[], float] = time.process_time,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.most = most
        self.running = 0
        self._cpu = cpu
        self._wall = wall
        self._busy: float | None = None
        self._settling = 0
        self._last = (0.0, 0.0)  # (wall, cpu) at the last window; set as the first starts

    def grow(self) -> bool:
        """Called every window by the dispatcher: True when it should start one more thread
        (counted as running from then on)."""
        if self.running == 0:  # the first thread: measured from its start on
            self.running = 1
            self._settling = SETTLE - 1
            self._last = (self._wall(), self._cpu())
            return True
        wall, cpu = self._wall(), self._cpu()
        elapsed = wall - self._last[0]
        if elapsed <= 0:
            return False
        share = (cpu - self._last[1]) / elapsed
        self._last = (wall, cpu)
        self._busy = share if self._busy is None else (
            SMOOTHING * share + (1 - SMOOTHING) * self._busy)
        if self._settling:
            self._settling -= 1
            return False
        if self.running >= self.most or self._busy >= BUSY_BELOW:
            return False
        # The windows before this thread say nothing about the process with it: the
        # average starts again, and is given SETTLE windows before the next decision.
        self.running += 1
        self._busy = None
        self._settling = SETTLE - 1
        return True

    @property
    def busy(self) -> float | None:
        """The averaged share of one CPU the process used (None before a window)."""
        return self._busy
