"""What ``/metrics`` exposes and what the textfiles of ``run --run-once`` and ``audit`` hold:
every family, its labels and why the alerting series exist at 0 are in docs/metrics.md.

One prometheus-client registry per ``Recorder`` (not the global one, so tests and a second
Runtime in one process never collide), fed outside the worker cycle: the wrapped Influitive client
and vendors count errors, orders and spend at the Protocol boundary, the daemon's hooks the
cycles, and the ledger is read at each scrape. Labels carry names and classes only, never an
id, an email or an error text; money is counted in integer minor units, never as a float.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import prometheus_client
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from poller import __version__, transport
from poller.core.audit import KINDS
from poller.daemon.textfile import Textfile
from poller.domain.model import OrderRequest, OrderResult, OrderStatus, PollResult, Redemption
from poller.domain.money import MINOR_UNITS
from poller.domain.states import State
from poller.ports import Ledger, RedemptionSource, Vendor, read_pages

if TYPE_CHECKING:
    from poller.core.audit import AuditResult

T = TypeVar("T")

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# The *_created series (counter creation times) only add noise to a scrape.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

log = structlog.get_logger("poller.metrics")

CYCLE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

FAMILIES: tuple[tuple[str, type[Any], str, str, tuple[str, ...]], ...] = (
    # attribute, type, name, help, labels
    ("build_info", Gauge, "reward_poller_build_info",
     "Always 1: the version of reward-poller running.", ("version", "python_version")),
    ("request_duration", Histogram, "reward_poller_request_duration_seconds",
     "Wall time of each HTTP request (each attempt) to Influitive or a vendor, by upstream "
     "and outcome (2xx, 4xx, 429, 5xx, timeout, network_error).", ("upstream", "outcome")),
    ("redemptions", Gauge, "reward_poller_redemptions", "Redemptions in the ledger, by state.",
     ("state",)),
    ("cycle_duration", Histogram, "reward_poller_cycle_duration_seconds",
     "Wall time of one worker cycle (poll and steps).", ()),
    ("cycles", Counter, "reward_poller_cycles",
     "Cycles run, by outcome (ok: the poll succeeded).", ("outcome",)),
    ("failures_in_a_row", Gauge, "reward_poller_failed_cycles_in_a_row",
     "Cycles that could not do their job since the last one that did.", ()),
    ("last_success", Gauge, "reward_poller_last_successful_poll_timestamp_seconds",
     "Unix time of the last successful poll of Influitive: this daemon's, or the ledger's "
     "record of the last one (at start, and for run --run-once).", ()),
    ("influitive_errors", Counter, "reward_poller_influitive_errors",
     "Errors from Influitive calls (poll, fulfill, refuse), by error class.",
     ("operation", "error_class")),
    ("vendor_errors", Counter, "reward_poller_vendor_errors",
     "Errors from vendor calls, by vendor and error class (TransientVendorError, "
     "AdvocateFacingError, OperatorFacingError, UnknownOutcome).", ("vendor", "error_class")),
    ("orders", Counter, "reward_poller_orders",
     "Vendor orders accepted (complete or pending), by vendor and currency.",
     ("vendor", "currency")),
    ("spend", Counter, "reward_poller_spend_minor_units",
     "Amount of the vendor orders accepted, in minor units of the currency (cents).",
     ("vendor", "currency")),
    ("audit_discrepancies", Gauge, "reward_poller_audit_discrepancies",
     "Discrepancies the last books audit found, by vendor and kind (orphan, duplicate, "
     "missing, mismatch, cancelled).", ("vendor", "kind")),
    ("audit_unreadable", Gauge, "reward_poller_audit_unreadable",
     "1 when the last books audit could not read the vendor's order list.", ("vendor",)),
    ("audit_last_run", Gauge, "reward_poller_audit_last_run_timestamp_seconds",
     "Unix time the last books audit finished (0: none yet).", ()),
    ("audit_balanced", Gauge, "reward_poller_audit_last_run_balanced",
     "1 when the last books audit balanced; 0 when it found a discrepancy, could not read a "
     "vendor's list, or failed.", ()),
)
BUCKETS = {"request_duration": REQUEST_BUCKETS, "cycle_duration": CYCLE_BUCKETS}

LEDGER_FAMILIES = (
    ("reward_poller_oldest_open_redemption_age_seconds",
     "Seconds since the oldest redemption not yet closed was recorded (0: none open).", ()),
    ("reward_poller_spend_today_minor_units",
     "Committed to vendor orders since midnight UTC, in minor units (cents), per currency "
     "with a daily_spend_limit.", ("currency",)),
    ("reward_poller_daily_spend_limit_minor_units",
     "[fulfillment] daily_spend_limit, in minor units (cents), per currency.", ("currency",)),
)

# Families only the daemon feeds: a textfile would show them at zero, which would lie.
DAEMON_ONLY = frozenset({
    "reward_poller_cycle_duration_seconds", "reward_poller_cycles",
    "reward_poller_failed_cycles_in_a_row",
})
# The books audit's: ``audit`` writes them to a textfile of their own, which ``run
# --run-once``'s file leaves out, so neither file hides the other's series.
AUDIT_FAMILIES = frozenset({
    "reward_poller_audit_discrepancies", "reward_poller_audit_unreadable",
    "reward_poller_audit_last_run_timestamp_seconds", "reward_poller_audit_last_run_balanced",
})

INFLUITIVE_OPERATIONS = ("poll", "fulfill", "refuse")
# What deploy/prometheus/alerts.yml pages on: at 0 from the start (Influitive's) or from the
# vendor's configuration (``Recorder.expect_vendors``).
ALERTING_INFLUITIVE_ERRORS = ("SourceAuthError",)
ALERTING_VENDOR_ERRORS = ("OperatorFacingError", "ConfigFixable")


def minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the smallest unit of ``currency`` (a finer amount is rounded half up)."""
    exponent = MINOR_UNITS.get(currency.upper(), 2)
    return int((amount * (Decimal(10) ** exponent)).to_integral_value(rounding=ROUND_HALF_UP))


def outcome_of(response: httpx.Response | None, error: BaseException | None) -> str:
    if response is not None:
        if response.status_code == 429:
            return "429"
        return f"{response.status_code // 100}xx"
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, httpx.TransportError):
        return "network_error"
    return "error"


# (recorder, upstream) for the HTTP attempts of the call in progress in this thread.
_calling: ContextVar[tuple[Recorder, str] | None] = ContextVar("reward_poller_upstream",
                                                                default=None)


def _observe_request(seconds: float, response: httpx.Response | None,
                     error: BaseException | None) -> None:
    current = _calling.get()
    if current is None:  # a call no Recorder wraps (``check``, a test's own client)
        return
    recorder, upstream = current
    recorder.request_duration.labels(upstream=upstream,
                                     outcome=outcome_of(response, error)).observe(seconds)


transport.observe_requests(_observe_request)


def audit_textfile(textfile: str | os.PathLike[str]) -> Path:
    # ``reward-poller.prom`` -> ``reward-poller-audit.prom``
    path = Path(textfile)
    return path.with_name(f"{path.stem}-audit.prom")


class _LedgerCollector(Collector):
    """Gauges read from the ledger when scraped, so an age is as old as the scrape, not as
    the last cycle. A ledger that cannot answer leaves them out of that scrape (logged)."""

    def __init__(self, ledger: Ledger, limits: Mapping[str, Decimal],
                 clock: Callable[[], float]) -> None:
        self._ledger = ledger
        self._limits = dict(limits)
        self._clock = clock

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, doc, labels=labels)
                for name, doc, labels in LEDGER_FAMILIES]

    def collect(self) -> Iterable[Metric]:
        oldest_age, spent, limit = self.describe()
        try:
            oldest = self._ledger.oldest_waiting()
            now = self._clock()
            oldest_age.add_metric(
                [], max(0.0, now - oldest.created_at.timestamp()) if oldest else 0.0)
            midnight = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0,
                                                                microsecond=0)
            for currency, daily in sorted(self._limits.items()):
                spent.add_metric(
                    [currency],
                    minor_units(self._ledger.spent_since(currency, midnight), currency))
                limit.add_metric([currency], minor_units(daily, currency))
        except Exception as exc:
            log.warning("metrics.ledger.unread", error=type(exc).__name__)
            return []
        return [oldest_age, spent, limit]


class Recorder:
    """The daemon's metrics. Every method is thread-safe (prometheus-client's are)."""

    build_info: Gauge
    request_duration: Histogram
    redemptions: Gauge
    cycle_duration: Histogram
    cycles: Counter
    failures_in_a_row: Gauge
    last_success: Gauge
    influitive_errors: Counter
    vendor_errors: Counter
    orders: Counter
    spend: Counter
    audit_discrepancies: Gauge
    audit_unreadable: Gauge
    audit_last_run: Gauge
    audit_balanced: Gauge

    def __init__(self, *, clock: Callable[[], float] = time.time, process: bool = True) -> None:
        """``process``: add this process's ``process_*`` metrics; off for a textfile
        (node_exporter has its own)."""
        self._clock = clock
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=self.registry)
        for attribute, kind, name, doc, labels in FAMILIES:
            extra = {"buckets": BUCKETS[attribute]} if attribute in BUCKETS else {}
            setattr(self, attribute, kind(name, doc, labels, registry=self.registry, **extra))
        self.build_info.labels(version=__version__,
                               python_version=platform.python_version()).set(1)
        self.set_counts({})
        for outcome in ("ok", "failed"):
            self.cycles.labels(outcome=outcome)
        for operation in INFLUITIVE_OPERATIONS:
            for error_class in ALERTING_INFLUITIVE_ERRORS:
                self.influitive_errors.labels(operation=operation, error_class=error_class)
        self._textfile = Textfile()
        self._audit_textfile = Textfile()
        self._last_success: float | None = None
        self._ledger_success: float | None = None

    # --- fed by the daemon ----------------------------------------------------------------

    @property
    def last_successful_poll(self) -> float | None:
        with self._lock:
            return self._last_success

    def timed(self, cycle: Callable[[], T]) -> Callable[[], T]:
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

    def expect_vendors(self, names: Iterable[str]) -> None:
        for vendor in sorted(names):
            for error_class in ALERTING_VENDOR_ERRORS:
                self.vendor_errors.labels(vendor=vendor, error_class=error_class)

    def set_counts(self, counts: Mapping[State, int]) -> None:
        for state in State:
            self.redemptions.labels(state=state.value).set(counts.get(state, 0))

    def attach_ledger(self, ledger: Ledger,
                      daily_limits: Mapping[str, Decimal] | None = None) -> None:
        """Expose what ``ledger`` knows (read at each scrape), and take its counts and last
        successful poll now."""
        self.registry.register(_LedgerCollector(ledger, daily_limits or {}, self._clock))
        try:
            self.observe_ledger(ledger)
        except Exception as exc:  # the start-up checks report a broken ledger, not metrics
            log.warning("metrics.ledger.unread", error=type(exc).__name__)

    def observe_ledger(self, ledger: Ledger) -> None:
        """Counts by state and the last successful poll, from the ledger (the poll time only
        moves forward: this process's own success may be newer than the ledger's read)."""
        self.set_counts(ledger.counts())
        last = ledger.last_successful_poll()
        if last is not None:
            when = (last.finished_at or last.started_at).timestamp()
            with self._lock:
                if when > (self._ledger_success or 0.0) and when > (self._last_success or 0.0):
                    self._ledger_success = when
                    self.last_success.set(when)

    def _families(self, leaving_out: frozenset[str]) -> list[Metric]:
        return [m for m in self.registry.collect() if m.name not in leaving_out]

    def write_textfile(self, path: str | os.PathLike[str]) -> None:
        """All but the daemon's and the audit's families, for node_exporter (textfile.py)."""
        self._textfile.write(path, self._families(DAEMON_ONLY | AUDIT_FAMILIES))

    def write_audit_textfile(self, path: str | os.PathLike[str]) -> None:
        """Only the books audit's families (``audit_textfile``)."""
        others = frozenset(m.name for m in self.registry.collect()) - AUDIT_FAMILIES
        self._audit_textfile.write(path, self._families(others))

    def observe_audit(self, result: AuditResult | None, finished: float) -> None:
        """The books audit that finished at ``finished`` (Unix time); None: it failed.
        Every audited vendor has a series per kind, 0 when clean, so a first discrepancy
        is a change Prometheus sees."""
        self.audit_last_run.set(finished)
        if result is None:
            self.audit_balanced.set(0)
            return
        self.audit_balanced.set(1 if result.balanced else 0)
        for vendor in result.vendors:
            if vendor.not_auditable is not None:
                continue
            self.audit_unreadable.labels(vendor=vendor.vendor).set(
                0 if vendor.unreadable is None else 1)
            for kind in KINDS:
                self.audit_discrepancies.labels(vendor=vendor.vendor, kind=kind.value).set(
                    vendor.count(kind))

    @contextmanager
    def calling(self, upstream: str) -> Iterator[None]:
        """HTTP attempts inside the block are timed as ``upstream``'s."""
        token = _calling.set((self, upstream))
        try:
            yield
        finally:
            _calling.reset(token)

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
        self.spend.labels(**labels).inc(minor_units(request.amount, request.currency))

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)

    def instrument_source(self, source: RedemptionSource) -> RedemptionSource:
        return _CountingSource(source, self, "influitive", self.influitive_error)

    def instrument_vendor(self, vendor: Vendor) -> Vendor:
        return _CountingVendor(vendor, self, vendor.name,
                               lambda _, exc: self.vendor_error(vendor.name, exc))


class _Counting:
    """Calls to the wrapped adapter, timed as ``upstream``'s, their errors counted (and
    re-raised); everything else passes through."""

    def __init__(self, inner: Any, recorder: Recorder, upstream: str,
                 count_error: Callable[[str, BaseException], None]) -> None:
        self._inner = inner
        self._recorder = recorder
        self._upstream = upstream
        self._count_error = count_error

    def _call(self, operation: str, call: Callable[..., T], *args: Any) -> T:
        try:
            with self._recorder.calling(self._upstream):
                return call(*args)
        except Exception as exc:
            self._count_error(operation, exc)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CountingSource(_Counting):
    _inner: RedemptionSource

    def poll(self) -> PollResult:
        return self._call("poll", self._inner.poll)

    def poll_pages(self, on_page: Callable[[Sequence[Redemption]], None]) -> PollResult:
        return self._call("poll", read_pages, self._inner, on_page)

    def fulfill(self, redemption_id: str, message: str) -> None:
        self._call("fulfill", self._inner.fulfill, redemption_id, message)

    def refuse(self, redemption_id: str, message: str) -> None:
        self._call("refuse", self._inner.refuse, redemption_id, message)


class _CountingVendor(_Counting):
    _inner: Vendor

    def __init__(self, inner: Vendor, *args: Any) -> None:
        super().__init__(inner, *args)
        self.name = inner.name

    def place_order(self, request: OrderRequest) -> OrderResult:
        result = self._call("place_order", self._inner.place_order, request)
        self._recorder.order(request, result)
        return result

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        return self._call("lookup", self._inner.lookup, idempotency_key)

    def close(self) -> None:
        self._inner.close()
