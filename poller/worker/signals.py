"""SIGINT/SIGTERM for one cycle (``run --run-once``): stop as the daemon does.

The first signal sets the stop event the worker checks between redemptions and before each
vendor order (``poller.worker.cycle``): no new redemption is claimed, one whose order is not
sent yet gives its lease back, one already sent is finished. The command then says so once
and exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM), the shell's convention for a
process ended by that signal. A second signal ends the process at once, with the same code,
after ``on_second`` (the command's one line about it) has run.

Without this, SIGINT surfaced as a KeyboardInterrupt (click's "Aborted!", exit 1) and SIGTERM
killed the process mid-call: either way the redemption in hand kept its lease, and the next
run skipped it in silence until the lease ran out.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """Installs the handlers while in its ``with`` block (main thread only); restores the
    previous ones on leaving it."""

    def __init__(
        self, stop: threading.Event | None = None,
        on_second: Callable[[signal.Signals], None] | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.received: signal.Signals | None = None
        self._on_second = on_second
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def exit_code(self) -> int | None:
        """``128 + signal`` once a signal was received, else None."""
        return None if self.received is None else 128 + int(self.received)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.received is not None:
            try:
                if self._on_second is not None:
                    self._on_second(sig)
            finally:
                # At once: no cleanup, no finally blocks; the leases of calls still in flight
                # run out on their own ([ledger] lease_seconds).
                os._exit(128 + int(sig))
        self.received = sig
        self.stop.set()

    def __enter__(self) -> StopOnSignal:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
