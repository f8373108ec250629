"""The daemon: APScheduler 3 runs the cycle on an interval, never two at once.

The first SIGTERM/SIGINT lets the redemption in hand finish (the cycle checks the stop flag
between redemptions), then exits 0; a second one exits at once (the ledger makes that safe:
leases expire and the next start resumes).

Under systemd (``Type=notify``) it says READY=1 when the scheduler starts, WATCHDOG=1 after
every cycle that returns (and, while idle between cycles, every half ``WatchdogSec``, so only a
hung cycle trips the watchdog, whatever the interval) and STOPPING=1 on the first signal.

A cycle that fails is logged once, as ``cycle.failed`` (error): its cause, the failures in a
row and, when the service explains it, the operator-facing cause and fix.

A cycle that runs longer than the interval makes APScheduler skip the runs that fell due
meanwhile: that is logged once per skipped run as our own ``scheduler.run.skipped`` event
(APScheduler's own text for it is silenced, so the log has one line per happening).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.schedulers.blocking import BlockingScheduler

from poller.daemon.notify import Notifier
from poller.domain.errors import PollerError
from poller.worker.cycle import CycleReport

log = structlog.get_logger("poller.scheduler")

NUDGE_DELAY = 0.25
"""Seconds between the first webhook of a burst and the cycle it triggers."""


class Daemon:
    def __init__(
        self,
        cycle: Callable[[], CycleReport],
        *,
        interval_seconds: float,
        stop: threading.Event,
        on_cycle: Callable[[CycleReport | None, BaseException | None], None] | None = None,
        notifier: Notifier | None = None,
        explain: Callable[[CycleReport | None, BaseException | None],
                          Mapping[str, Any]] | None = None,
    ) -> None:
        self._cycle = cycle
        self.interval = interval_seconds
        self.stop = stop
        self.on_cycle = on_cycle
        self.explain = explain
        """Fields to add to a failed cycle's ``cycle.failed`` line (the cause and fix of an
        operator-facing error)."""
        self.failures_in_a_row = 0
        self.notifier = notifier or Notifier()
        self.cycles = 0
        self._in_cycle = threading.Event()
        self._nudge_lock = threading.Lock()
        self._nudged_during_cycle = False
        self._nudge_pending = False
        self.nudges = 0
        self.scheduler = BlockingScheduler(timezone=UTC)
        self.skipped = 0
        self._quiet_apscheduler()
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self.scheduler.add_job(
            self._run, "interval", seconds=interval_seconds, id="cycle",
            next_run_time=datetime.now(UTC), max_instances=1, coalesce=True,
            misfire_grace_time=None,
        )
        if self.notifier.watchdog_interval:
            self.scheduler.add_job(
                self._keepalive, "interval", seconds=self.notifier.watchdog_interval / 2,
                id="watchdog", max_instances=1, coalesce=True, misfire_grace_time=None,
            )

    @staticmethod
    def _quiet_apscheduler() -> None:
        """APScheduler logs a skipped run as a WARNING in its own words; ``_skipped`` logs it
        as our event instead. Its errors still come through (as ``library.message``)."""
        for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.ERROR))

    def _skipped(self, event: Any) -> None:
        if getattr(event, "job_id", None) != "cycle":
            return
        self.skipped += 1
        log.warning("scheduler.run.skipped", reason="the previous cycle is still running",
                    interval_seconds=self.interval, skipped=self.skipped)

    def _run(self) -> None:
        # Extra cycles asked for by webhooks during a cycle run here, in the same job
        # execution, so two cycles never overlap.
        while self._one_cycle():
            pass

    def _one_cycle(self) -> bool:
        """Run one cycle; True when another should follow at once."""
        if self.stop.is_set():
            return False
        report: CycleReport | None = None
        error: BaseException | None = None
        with self._nudge_lock:
            self._in_cycle.set()
            self._nudged_during_cycle = False
            self._nudge_pending = False
        try:
            report = self._cycle()
        except Exception as exc:  # the daemon keeps running; the next interval tries again
            error = exc
        finally:
            with self._nudge_lock:
                self._in_cycle.clear()
                again = self._nudged_during_cycle
        self.cycles += 1
        ok = error is None and report is not None and report.ok
        self.failures_in_a_row = 0 if ok else self.failures_in_a_row + 1
        if not ok:
            self._failed(report, error)
        if self.on_cycle is not None:
            try:
                self.on_cycle(report, error)
            except Exception as exc:  # metrics/alerts must not stop the daemon nor its pings
                log.error("cycle.hook.failed", error=f"{type(exc).__name__}: {exc}")
        self.notifier.watchdog(
            f"cycle {self.cycles} {'ok' if ok else 'failed'}"
            + (f" ({self.failures_in_a_row} failed in a row)" if not ok else "")
        )
        # A webhook arrived while this cycle ran: its redemption may not have been in this
        # poll, so one more cycle follows at once (however many webhooks came).
        return again and not self.stop.is_set()

    def _failed(self, report: CycleReport | None, error: BaseException | None) -> None:
        """The one line about a cycle that could not do its job: the cause, the failures
        in a row, what ``explain`` adds (the fix), and the traceback of an unexpected
        error (our own errors say all there is in their message)."""
        if error is None:
            cause = "; ".join(report.errors) if report is not None and report.errors else \
                "the cycle could not do its job"
        else:
            cause = str(error) if isinstance(error, PollerError) else \
                f"{type(error).__name__}: {error}"
        fields: dict[str, Any] = {}
        if self.explain is not None:
            try:
                fields = dict(self.explain(report, error))
            except Exception as exc:  # the line is written without what it would add
                log.debug("cycle.explain.failed", error=type(exc).__name__)
        unexpected = error is not None and not isinstance(error, PollerError)
        log.error("cycle.failed", error=cause, failures_in_a_row=self.failures_in_a_row,
                  **fields, exc_info=error if unexpected else None)

    def nudge(self) -> None:
        """Run a cycle now (a webhook said something happened). Coalesced: nudges while
        idle move the next run to now, which runs once; nudges during a cycle ask for one
        more cycle after it, however many there were."""
        self.nudges += 1
        with self._nudge_lock:
            if self._in_cycle.is_set():
                self._nudged_during_cycle = True
                return
            if self._nudge_pending:
                return
            self._nudge_pending = True
        try:
            # A short delay gathers a burst (one webhook per redemption of a bulk redeem)
            # into one cycle.
            self.scheduler.modify_job(
                "cycle", next_run_time=datetime.now(UTC) + timedelta(seconds=NUDGE_DELAY))
        except Exception as exc:  # stopping, or not started yet: the interval still runs
            log.debug("scheduler.nudge.unscheduled", error=type(exc).__name__)

    def _keepalive(self) -> None:
        if not self._in_cycle.is_set() and not self.stop.is_set():
            self.notifier.watchdog()

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            log.warning("daemon.exiting_now", reason="second signal", signal=signum)
            os._exit(1)
        log.info("daemon.stopping", reason="finishing the redemption in hand", signal=signum)
        self.notifier.stopping("finishing the redemption in hand")
        self.stop.set()
        threading.Thread(target=self._shutdown, daemon=True).start()

    def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=True)

    def run(self) -> int:
        previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._signal)
        log.info("daemon.started", interval_seconds=self.interval)
        self.notifier.ready(f"polling every {self.interval:g}s")
        try:
            self.scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("daemon.stopped", cycles=self.cycles, skipped=self.skipped)
        return 0
