"""The lease keeper: one thread renews the lease of every call in flight, every third of
``lease_seconds`` (docs/delivery.md, "Leases and heartbeats"). One shared thread, not one
per call: starting and joining a thread for each call cost more than the rest of the
worker's bookkeeping at a few hundred redemptions a second. It leaves after one idle
interval; the next call starts it again."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("poller.worker")


@dataclass
class _Call:
    pk: int
    context: dict[str, Any]  # the step's structlog context (it names the redemption)
    due: float  # time.monotonic() of the next renewal


class LeaseKeeper:
    """``renew(pk)`` extends the lease on ``pk`` and says whether it was still held."""

    def __init__(self, renew: Callable[[int], bool], interval: float) -> None:
        self._renew = renew
        self.interval = max(interval, 0.01)
        self._calls: dict[int, _Call] = {}
        self._tokens = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def held(self, pk: int) -> Iterator[None]:
        token = next(self._tokens)
        context = structlog.contextvars.get_contextvars()
        with self._wake:
            self._calls[token] = _Call(pk, context, time.monotonic() + self.interval)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-keeper",
                                                daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._wake:
                del self._calls[token]

    def _run(self) -> None:
        while True:
            with self._wake:
                due = self._due_or_leave()
                if due is None:
                    return
            for token, call in due:
                self._renew_one(token, call)

    def _due_or_leave(self) -> list[tuple[int, _Call]] | None:
        """Wait until some call is due; None (the thread forgotten) once no call was
        registered for a whole interval."""
        idle_since = time.monotonic()
        while True:
            now = time.monotonic()
            if not self._calls:
                if now - idle_since >= self.interval:
                    self._thread = None
                    return None
                self._wake.wait(self.interval - (now - idle_since))
                continue
            idle_since = now
            due = [(t, c) for t, c in self._calls.items() if c.due <= now]
            if due:
                for _, call in due:
                    call.due = now + self.interval
                return due
            # At most an interval: a call whose lease was lost is never due again.
            nearest = min(c.due for c in self._calls.values())
            self._wake.wait(min(nearest - now, self.interval))

    def _renew_one(self, token: int, call: _Call) -> None:
        try:
            kept = self._renew(call.pk)
        except Exception as exc:  # the ledger may be down: the lease just runs out
            log.warning("redemption.lease.renew_failed", error=type(exc).__name__,
                        **call.context)
            return
        if kept:
            return
        with self._wake:
            if self._calls.get(token) is not call:
                return  # the call ended (and perhaps gave the lease back) meanwhile
            call.due = float("inf")  # not renewed again: the next write raises LeaseLost
        log.warning("redemption.lease.lost_in_call", **call.context)
