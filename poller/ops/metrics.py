"""What ``/metrics`` exposes, and how the daemon feeds it.

The ``Recorder`` owns one prometheus-client registry (not the global one, so tests and a
second App in one process never collide). It is fed from three places, none of them inside
the worker cycle:

* the Influitive client and every vendor are wrapped (``instrument_source``,
  ``instrument_vendor``) so that errors are counted by class, and orders and spend by vendor
  and currency, at the Protocol boundary, whichever thread of the cycle made the call;
* the daemon's cycle callable is wrapped (``timed``) for the cycle duration histogram;
* the daemon's ``on_cycle`` hook (``observe_cycle``) sets the last successful poll time and the
  redemptions by state, read from the ledger after each cycle.

Labels carry class names, vendor names, currencies and states only: never an id, an email or
an error text, so the series stay few and nothing secret can leak into a scrape.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from poller.core.model import OrderRequest, OrderResult, OrderStatus, PollResult
from poller.core.ports import RedemptionSource, Vendor
from poller.core.states import State

T = TypeVar("T")

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# The *_created series (counter creation times) only add noise to a scrape.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CYCLE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class Recorder:
    """The daemon's metrics. Every method is thread-safe (prometheus-client's are)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.redemptions = Gauge(
            "reward_poller_redemptions", "Redemptions in the ledger, by state.", ["state"],
            registry=r,
        )
        self.cycle_duration = Histogram(
            "reward_poller_cycle_duration_seconds",
            "Wall time of one worker cycle (poll and steps).", buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.cycles = Counter(
            "reward_poller_cycles", "Cycles run, by outcome (ok: the poll succeeded).",
            ["outcome"], registry=r,
        )
        self.failures_in_a_row = Gauge(
            "reward_poller_failed_cycles_in_a_row",
            "Cycles that could not do their job since the last one that did.", registry=r,
        )
        self.last_success = Gauge(
            "reward_poller_last_successful_poll_timestamp_seconds",
            "Unix time at which this daemon last polled Influitive successfully.",
            registry=r,
        )
        self.influitive_errors = Counter(
            "reward_poller_influitive_errors",
            "Errors from Influitive calls (poll, fulfill, refuse), by error class.",
            ["operation", "error_class"], registry=r,
        )
        self.vendor_errors = Counter(
            "reward_poller_vendor_errors",
            "Errors from vendor calls, by vendor and error class (TransientVendorError, "
            "AdvocateFacingError, OperatorFacingError, UnknownOutcome).",
            ["vendor", "error_class"], registry=r,
        )
        self.orders = Counter(
            "reward_poller_orders",
            "Vendor orders accepted (complete or pending), by vendor and currency.",
            ["vendor", "currency"], registry=r,
        )
        self.spend = Counter(
            "reward_poller_spend",
            "Amount of the vendor orders accepted, in units of the currency.",
            ["vendor", "currency"], registry=r,
        )
        for state in State:
            self.redemptions.labels(state=state.value).set(0)
        for outcome in ("ok", "failed"):
            self.cycles.labels(outcome=outcome)
        self._last_success: float | None = None

    # --- fed by the daemon ----------------------------------------------------------------

    @property
    def last_successful_poll(self) -> float | None:
        """Unix time of this daemon's last successful poll, None before the first."""
        with self._lock:
            return self._last_success

    def timed(self, cycle: Callable[[], T]) -> Callable[[], T]:
        """``cycle`` that observes its duration, whether it returns or raises."""

        def run() -> T:
            with self.cycle_duration.time():
                return cycle()

        return run

    def observe_cycle(self, ok: bool, failures_in_a_row: int) -> None:
        self.cycles.labels(outcome="ok" if ok else "failed").inc()
        self.failures_in_a_row.set(failures_in_a_row)
        if ok:
            now = self._clock()
            with self._lock:
                self._last_success = now
            self.last_success.set(now)

    def set_counts(self, counts: Mapping[State, int]) -> None:
        for state in State:
            self.redemptions.labels(state=state.value).set(counts.get(state, 0))

    # --- fed by the wrapped adapters ------------------------------------------------------

    def influitive_error(self, operation: str, exc: BaseException) -> None:
        self.influitive_errors.labels(operation=operation, error_class=type(exc).__name__).inc()

    def vendor_error(self, vendor: str, exc: BaseException) -> None:
        self.vendor_errors.labels(vendor=vendor, error_class=type(exc).__name__).inc()

    def order(self, request: OrderRequest, result: OrderResult) -> None:
        if result.status is OrderStatus.FAILED:
            return
        labels = {"vendor": request.vendor, "currency": request.currency}
        self.orders.labels(**labels).inc()
        self.spend.labels(**labels).inc(float(request.amount))

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)

    # --- wrappers -------------------------------------------------------------------------

    def instrument_source(self, source: RedemptionSource) -> RedemptionSource:
        return _CountingSource(source, self)

    def instrument_vendor(self, vendor: Vendor) -> Vendor:
        return _CountingVendor(vendor, self)


class _CountingSource:
    """A RedemptionSource that counts the errors of the one it wraps (and re-raises them)."""

    def __init__(self, inner: RedemptionSource, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    def poll(self) -> PollResult:
        try:
            return self._inner.poll()
        except Exception as exc:
            self._recorder.influitive_error("poll", exc)
            raise

    def fulfill(self, redemption_id: str, message: str) -> None:
        try:
            self._inner.fulfill(redemption_id, message)
        except Exception as exc:
            self._recorder.influitive_error("fulfill", exc)
            raise

    def refuse(self, redemption_id: str, message: str) -> None:
        try:
            self._inner.refuse(redemption_id, message)
        except Exception as exc:
            self._recorder.influitive_error("refuse", exc)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CountingVendor:
    """A Vendor that counts the errors and accepted orders of the one it wraps."""

    def __init__(self, inner: Vendor, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder
        self.name = inner.name

    def place_order(self, request: OrderRequest) -> OrderResult:
        try:
            result = self._inner.place_order(request)
        except Exception as exc:
            self._recorder.vendor_error(self.name, exc)
            raise
        self._recorder.order(request, result)
        return result

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        try:
            return self._inner.lookup(idempotency_key)
        except Exception as exc:
            self._recorder.vendor_error(self.name, exc)
            raise

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
