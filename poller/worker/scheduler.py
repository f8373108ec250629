"""The daemon: APScheduler 3 runs the cycle on an interval, never two at once.

The first SIGTERM/SIGINT lets the redemption in hand finish (the cycle checks the stop flag
between redemptions), then exits 0; a second one exits at once (the ledger makes that safe:
leases expire and the next start resumes).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog

from poller.core.errors import SourceAuthError
from poller.worker.cycle import CycleReport

log = structlog.get_logger("poller.scheduler")


class Daemon:
    def __init__(
        self,
        cycle: Callable[[], CycleReport],
        *,
        interval_seconds: float,
        stop: threading.Event,
        on_cycle: Callable[[CycleReport | None, BaseException | None], None] | None = None,
    ) -> None:
        from apscheduler.schedulers.blocking import BlockingScheduler

        self._cycle = cycle
        self.interval = interval_seconds
        self.stop = stop
        self.on_cycle = on_cycle
        self.failures_in_a_row = 0
        self.scheduler = BlockingScheduler(timezone=UTC)
        self.scheduler.add_job(
            self._run, "interval", seconds=interval_seconds, id="cycle",
            next_run_time=datetime.now(UTC), max_instances=1, coalesce=True,
            misfire_grace_time=None,
        )

    def _run(self) -> None:
        if self.stop.is_set():
            return
        report: CycleReport | None = None
        error: BaseException | None = None
        try:
            report = self._cycle()
        except SourceAuthError as exc:
            error = exc
            log.error("cycle failed: Influitive rejected the credentials", error=str(exc))
        except Exception as exc:  # the daemon keeps running; the next interval tries again
            error = exc
            log.error("cycle failed", error=f"{type(exc).__name__}: {exc}", exc_info=True)
        ok = error is None and report is not None and report.ok
        self.failures_in_a_row = 0 if ok else self.failures_in_a_row + 1
        if not ok:
            log.warning("cycle did not do its job", failures_in_a_row=self.failures_in_a_row)
        if self.on_cycle is not None:
            self.on_cycle(report, error)

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            log.warning("second signal: exiting now", signal=signum)
            os._exit(1)
        log.info("stopping: finishing the redemption in hand", signal=signum)
        self.stop.set()
        threading.Thread(target=self._shutdown, daemon=True).start()

    def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=True)

    def run(self) -> int:
        previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._signal)
        log.info("daemon started", interval_seconds=self.interval)
        try:
            self.scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("daemon stopped")
        return 0
