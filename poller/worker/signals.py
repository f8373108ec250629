"""SIGINT/SIGTERM for ``run --run-once``: stop as the daemon does. The first signal sets the
stop event the worker checks between redemptions and before each call, so no redemption is
left holding its lease; the command then exits ``128 + signal``. A second signal ends the
process at once, with the same code, after ``on_second`` has said so.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class StopOnSignal:
    """Installs the handlers inside its ``with`` block (main thread only)."""

    def __init__(self, on_second: Callable[[signal.Signals], None]) -> None:
        self.stop = threading.Event()
        self.received: signal.Signals | None = None
        self._on_second = on_second
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.received is not None:
            try:
                self._on_second(sig)
            finally:
                # At once: no cleanup; the leases of calls in flight run out on their own.
                os._exit(128 + int(sig))
        self.received = sig
        self.stop.set()

    def __enter__(self) -> StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
