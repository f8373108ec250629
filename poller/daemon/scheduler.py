"""The daemon: APScheduler 3 runs the cycle on an interval, never two at once, and tells
systemd how it is (docs/deployment.md "The units", docs/logging.md for its events).

The first SIGTERM/SIGINT lets the redemption in hand finish, then exits 0; a second one exits
at once (the ledger makes that safe: leases expire and the next start resumes). WATCHDOG=1
follows every cycle that returns and, while idle, every half ``WatchdogSec``, so only a hung
cycle trips the watchdog, whatever the interval.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.schedulers.blocking import BlockingScheduler

from poller.domain.errors import PollerError
from poller.worker.cycle import CycleReport

log = structlog.get_logger("poller.scheduler")

# Seconds between the first webhook of a burst and the cycle it triggers: the burst (one
# webhook per redemption of a bulk redeem) is then one cycle.
NUDGE_DELAY = 0.25


def socket_address(value: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as an address: a path, or (``@name``) an abstract socket, whose name
    starts with a NUL byte on the wire; None for any other (vsock is never used here)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value if value.startswith("/") else None


def watchdog_seconds(environ: Mapping[str, str], pid: int) -> float | None:
    """``WatchdogSec=`` as systemd passed it, when meant for this process; else None."""
    usec = environ.get("WATCHDOG_USEC", "")
    target = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if target and (not target.isdigit() or int(target) != pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """systemd's notify protocol (sd_notify(3)), spoken directly: it is one datagram, and the
    maintained bindings need libsystemd. Without ``$NOTIFY_SOCKET`` every call is a no-op; a
    notification that cannot be delivered is logged and dropped (should the watchdog stop
    hearing from us, systemd restarts us, which is its point)."""

    def __init__(self, address: str | None = None, *, watchdog: float | None = None) -> None:
        self._address = socket_address(address or "")
        self.watchdog_interval = watchdog

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"), watchdog=watchdog_seconds(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """Send one notification (``ready="1"`` becomes ``READY=1``). True if delivered."""
        if self._address is None:
            return False
        # One line per field: a newline in a status text would start a new KEY=value.
        text = "\n".join(f"{key.upper()}={' '.join(value.split())}"
                         for key, value in fields.items() if value)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(text.encode(), self._address)
        except OSError as exc:
            log.warning("systemd.notify.failed", error=str(exc))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(ready="1", status=status)

    def watchdog(self, status: str = "") -> bool:
        return self.send(watchdog="1", status=status)

    def stopping(self, status: str = "") -> bool:
        return self.send(stopping="1", status=status)


def every(scheduler: Any, job: Callable[[], object], seconds: float, job_id: str,
          first: datetime | None = None) -> None:
    """``job`` every ``seconds`` on ``scheduler``, never two runs at once; the first at
    ``first``, or after one interval."""
    when = {} if first is None else {"next_run_time": first}  # None would pause the job
    scheduler.add_job(job, "interval", seconds=seconds, id=job_id, max_instances=1,
                      coalesce=True, misfire_grace_time=None, **when)


def schedule_audit(scheduler: Any, job: Callable[[], object], interval_seconds: float, *,
                   first_after: float = 60.0) -> bool:
    """The books audit every ``interval_seconds``, the first ``first_after`` seconds from now;
    False (nothing added) when ``interval_seconds`` is 0."""
    if interval_seconds <= 0:
        return False
    every(scheduler, job, interval_seconds, "audit",
          datetime.now(UTC) + timedelta(seconds=first_after))
    return True


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
        """``explain``: fields to add to a failed cycle's ``cycle.failed`` line (the cause
        and fix of an operator-facing error)."""
        self._cycle = cycle
        self.interval = interval_seconds
        self.stop = stop
        self.on_cycle = on_cycle
        self.explain = explain
        self.failures_in_a_row = 0
        self.notifier = notifier or Notifier()
        self.cycles = 0
        self.skipped = 0
        self._nudge_lock = threading.Lock()
        self._in_cycle = False
        self._nudged_during_cycle = False
        self._nudge_pending = False
        self.scheduler = BlockingScheduler(timezone=UTC)
        # APScheduler logs a skipped run as a WARNING in its own words; ``_skipped`` logs it
        # as our event instead. Its errors still come through (as ``library.message``).
        for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.ERROR))
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        every(self.scheduler, self._run, interval_seconds, "cycle", datetime.now(UTC))
        if self.notifier.watchdog_interval:
            every(self.scheduler, self._keepalive, self.notifier.watchdog_interval / 2,
                  "watchdog")

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
            self._in_cycle = True
            self._nudged_during_cycle = self._nudge_pending = False
        try:
            report = self._cycle()
        except Exception as exc:  # the daemon keeps running; the next interval tries again
            error = exc
        finally:
            with self._nudge_lock:
                self._in_cycle = False
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
        """The one ``cycle.failed`` line, with the traceback of an unexpected error only
        (our own errors say all there is in their message)."""
        if error is None:
            cause = "; ".join(report.errors if report else []) or "the cycle could not do its job"
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
        with self._nudge_lock:
            if self._in_cycle:
                self._nudged_during_cycle = True
                return
            if self._nudge_pending:
                return
            self._nudge_pending = True
        try:
            self.scheduler.modify_job(
                "cycle", next_run_time=datetime.now(UTC) + timedelta(seconds=NUDGE_DELAY))
        except Exception as exc:  # stopping, or not started yet: the interval still runs
            log.debug("scheduler.nudge.unscheduled", error=type(exc).__name__)

    def _keepalive(self) -> None:
        if not self._in_cycle and not self.stop.is_set():
            self.notifier.watchdog()

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            log.warning("daemon.exiting_now", reason="second signal", signal=signum)
            os._exit(1)
        log.info("daemon.stopping", reason="finishing the redemption in hand", signal=signum)
        self.notifier.stopping("finishing the redemption in hand")
        self.stop.set()
        threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True},
                         daemon=True).start()

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        log.info("daemon.started", interval_seconds=self.interval)
        self.notifier.ready(f"polling every {self.interval:g}s")
        try:
            self.scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("daemon.stopped", cycles=self.cycles, skipped=self.skipped)
        return 0
