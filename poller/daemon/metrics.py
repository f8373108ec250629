"""What ``/metrics`` exposes, and how the daemon feeds it.

Over 500 lines on purpose: every metric family reward-poller exports is declared here, in
one registry, so that docs/metrics.md, the alert rules and this file can be read side by side.

The ``Recorder`` owns one prometheus-client registry (not the global one, so tests and a
second App in one process never collide). It is fed from three places, none of them inside
the worker cycle:

* the Influitive client and every vendor are wrapped (``instrument_source``,
  ``instrument_vendor``) so that errors are counted by class, and orders and spend by vendor
  and currency, at the Protocol boundary, whichever thread of the cycle made the call;
* the daemon's cycle callable is wrapped (``timed``) for the cycle duration histogram;
* the daemon's ``on_cycle`` hook (``observe_cycle``) sets the last successful poll time and the
  redemptions by state, read from the ledger after each cycle.

* ``attach_ledger`` adds what the ledger knows, read when scraped: the age of the oldest open
  redemption, and per currency with a daily limit, today's spend and the limit;
* every HTTP attempt (``poller.transport.observe_requests``) is timed into
  ``reward_poller_request_duration_seconds`` by upstream (``influitive`` or the vendor's
  name, known from the wrapper the call went through) and outcome.

``run --run-once`` has no listener: ``write_textfile`` writes the same exposition (without the
``process_*`` series, which node_exporter has of its own) for node_exporter's textfile
collector, atomically, its counters continuing from run to run (``poller.daemon.textfile``).

The error series the alert rules page on exist at 0 before the first error (Influitive's at
once, each configured vendor's from ``expect_vendors``), so that error is an increase.

Labels carry class names, vendor names, currencies and states only: never an id, an email or
an error text, so the series stay few and nothing secret can leak into a scrape. Money is
counted in integer minor units of its currency (cents), never as a float of dollars.
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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

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
from poller.domain.states import State
from poller.ports import RedemptionSource, Vendor, read_pages

if TYPE_CHECKING:
    from poller.core.audit import AuditResult
    from poller.domain.model import LedgerEntry
    from poller.ports import PollRecord

T = TypeVar("T")

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# The *_created series (counter creation times) only add noise to a scrape.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

log = structlog.get_logger("poller.metrics")

CYCLE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# ISO 4217 currencies whose minor unit is not the cent (all others have two decimals).
_NO_DECIMALS = frozenset({
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
})
_THREE_DECIMALS = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the smallest unit of ``currency`` (cents for USD, yen for JPY), exact for
    every amount the currency can express (a finer one is rounded half up)."""
    code = currency.upper()
    exponent = 0 if code in _NO_DECIMALS else 3 if code in _THREE_DECIMALS else 2
    return int((amount * (Decimal(10) ** exponent)).to_integral_value(rounding=ROUND_HALF_UP))


def outcome_of(response: httpx.Response | None, error: BaseException | None) -> str:
    """The ``outcome`` label of one HTTP attempt: the status class (429 apart: rate limited),
    or what kept the answer away."""
    if response is not None:
        if response.status_code == 429:
            return "429"
        return f"{response.status_code // 100}xx"
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, httpx.TransportError):
        return "network_error"
    return "error"


_calling: ContextVar[tuple[Recorder, str] | None] = ContextVar("reward_poller_upstream",
                                                                default=None)
"""(recorder, upstream) for the HTTP attempts of the call in progress in this thread."""


def _observe_request(seconds: float, response: httpx.Response | None,
                     error: BaseException | None) -> None:
    current = _calling.get()
    if current is None:  # a call no Recorder wraps (``check``, a test's own client)
        return
    recorder, upstream = current
    recorder.request_duration.labels(upstream=upstream,
                                     outcome=outcome_of(response, error)).observe(seconds)


transport.observe_requests(_observe_request)


DAEMON_ONLY = frozenset({
    "reward_poller_cycle_duration_seconds", "reward_poller_cycles",
    "reward_poller_failed_cycles_in_a_row",
})
"""Families only the daemon feeds: a textfile would show them at zero, which would lie."""

AUDIT_FAMILIES = frozenset({
    "reward_poller_audit_discrepancies", "reward_poller_audit_unreadable",
    "reward_poller_audit_last_run_timestamp_seconds", "reward_poller_audit_last_run_balanced",
})
"""What the books audit feeds (``observe_audit``). ``reward-poller audit`` writes them to a
textfile of their own (``write_audit_textfile``), which ``run --run-once``'s file leaves out:
each file holds its own series, so neither hides the other's."""


INFLUITIVE_OPERATIONS = ("poll", "fulfill", "refuse")
ALERTING_INFLUITIVE_ERRORS = ("SourceAuthError",)
ALERTING_VENDOR_ERRORS = ("OperatorFacingError", "ConfigFixable")
"""The error classes deploy/prometheus/alerts.yml pages on: their series exist at 0 from the
start (Influitive's) or from the vendor's configuration (``Recorder.expect_vendors``)."""


def audit_textfile(textfile: str | os.PathLike[str]) -> Path:
    """Where ``reward-poller audit`` writes its metrics: beside ``[metrics] textfile``, its
    name ending ``-audit.prom`` (``reward-poller.prom`` -> ``reward-poller-audit.prom``)."""
    path = Path(textfile)
    return path.with_name(f"{path.stem}-audit.prom")


class _Without:
    """A registry's families but ``names`` (what ``generate_latest`` needs: ``collect``)."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterable[Metric]:
        return [m for m in self._registry.collect() if m.name not in self._names]


class LedgerView(Protocol):
    """What the metrics read from the ledger (``poller.ledger.sql.SqlLedger`` has it)."""

    def counts(self) -> Mapping[State, int]: ...

    def oldest_waiting(self) -> LedgerEntry | None: ...

    def last_successful_poll(self) -> PollRecord | None: ...

    def spent_since(self, currency: str, since: datetime) -> Decimal: ...


class _LedgerCollector(Collector):
    """Gauges read from the ledger when scraped, so an age is as old as the scrape, not as
    the last cycle. A ledger that cannot answer leaves them out of that scrape (logged)."""

    def __init__(self, ledger: LedgerView, limits: Mapping[str, Decimal],
                 clock: Callable[[], float]) -> None:
        self._ledger = ledger
        self._limits = dict(limits)
        self._clock = clock

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "reward_poller_oldest_open_redemption_age_seconds",
                "Seconds since the oldest redemption not yet closed was recorded (0: none "
                "open)."),
            GaugeMetricFamily(
                "reward_poller_spend_today_minor_units",
                "Committed to vendor orders since midnight UTC, in minor units (cents), per "
                "currency with a daily_spend_limit.", labels=["currency"]),
            GaugeMetricFamily(
                "reward_poller_daily_spend_limit_minor_units",
                "[fulfillment] daily_spend_limit, in minor units (cents), per currency.",
                labels=["currency"]),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        oldest_age, spent, limit = self._families()
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

    def __init__(self, *, clock: Callable[[], float] = time.time, process: bool = True) -> None:
        """``process``: add the ``process_*`` metrics (CPU, memory, file descriptors, start
        time) of this process; off for a textfile (node_exporter has its own)."""
        self._clock = clock
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.build_info = Gauge(
            "reward_poller_build_info", "Always 1: the version of reward-poller running.",
            ["version", "python_version"], registry=r,
        )
        self.build_info.labels(version=__version__,
                               python_version=platform.python_version()).set(1)
        self.request_duration = Histogram(
            "reward_poller_request_duration_seconds",
            "Wall time of each HTTP request (each attempt) to Influitive or a vendor, by "
            "upstream and outcome (2xx, 4xx, 429, 5xx, timeout, network_error).",
            ["upstream", "outcome"], buckets=REQUEST_BUCKETS, registry=r,
        )
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
            "Unix time of the last successful poll of Influitive: this daemon's, or the "
            "ledger's record of the last one (at start, and for run --run-once).",
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
            "reward_poller_spend_minor_units",
            "Amount of the vendor orders accepted, in minor units of the currency (cents).",
            ["vendor", "currency"], registry=r,
        )
        self.audit_discrepancies = Gauge(
            "reward_poller_audit_discrepancies",
            "Discrepancies the last books audit found, by vendor and kind (orphan, "
            "duplicate, missing, mismatch, cancelled).", ["vendor", "kind"], registry=r,
        )
        self.audit_unreadable = Gauge(
            "reward_poller_audit_unreadable",
            "1 when the last books audit could not read the vendor's order list.", ["vendor"],
            registry=r,
        )
        self.audit_last_run = Gauge(
            "reward_poller_audit_last_run_timestamp_seconds",
            "Unix time the last books audit finished (0: none yet).", registry=r,
        )
        self.audit_balanced = Gauge(
            "reward_poller_audit_last_run_balanced",
            "1 when the last books audit balanced; 0 when it found a discrepancy, could not "
            "read a vendor's list, or failed.", registry=r,
        )
        for state in State:
            self.redemptions.labels(state=state.value).set(0)
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

    def expect_vendors(self, names: Iterable[str]) -> None:
        """The vendor error series the alert rules read, at 0 for each configured vendor
        before its first error: an error then shows as an increase of a series Prometheus
        already has, which ``increase()`` sees."""
        for vendor in sorted(names):
            for error_class in ALERTING_VENDOR_ERRORS:
                self.vendor_errors.labels(vendor=vendor, error_class=error_class)

    def set_counts(self, counts: Mapping[State, int]) -> None:
        for state in State:
            self.redemptions.labels(state=state.value).set(counts.get(state, 0))

    def attach_ledger(self, ledger: LedgerView,
                      daily_limits: Mapping[str, Decimal] | None = None) -> None:
        """Expose what ``ledger`` knows (read at each scrape), and take its counts and last
        successful poll now."""
        self.registry.register(_LedgerCollector(ledger, daily_limits or {}, self._clock))
        try:
            self.observe_ledger(ledger)
        except Exception as exc:  # the start-up checks report a broken ledger, not metrics
            log.warning("metrics.ledger.unread", error=type(exc).__name__)

    def observe_ledger(self, ledger: LedgerView) -> None:
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

    def write_textfile(self, path: str | os.PathLike[str]) -> None:
        """The exposition (without the daemon-only families) into ``path`` for node_exporter's
        textfile collector, atomically, the counters continuing from the values the file
        already holds (``poller.daemon.textfile``): one Recorder writes one file."""
        self._textfile.write(path,
                             _Without(self.registry, DAEMON_ONLY | AUDIT_FAMILIES).collect())

    def write_audit_textfile(self, path: str | os.PathLike[str]) -> None:
        """Only the books audit's families into ``path`` (``audit_textfile``), atomically."""
        names = frozenset(m.name for m in self.registry.collect()) - AUDIT_FAMILIES
        self._audit_textfile.write(path, _Without(self.registry, names).collect())

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
            with self._recorder.calling("influitive"):
                return self._inner.poll()
        except Exception as exc:
            self._recorder.influitive_error("poll", exc)
            raise

    def poll_pages(self, on_page: Callable[[Sequence[Redemption]], None]) -> PollResult:
        try:
            with self._recorder.calling("influitive"):
                return read_pages(self._inner, on_page)
        except Exception as exc:
            self._recorder.influitive_error("poll", exc)
            raise

    def fulfill(self, redemption_id: str, message: str) -> None:
        try:
            with self._recorder.calling("influitive"):
                self._inner.fulfill(redemption_id, message)
        except Exception as exc:
            self._recorder.influitive_error("fulfill", exc)
            raise

    def refuse(self, redemption_id: str, message: str) -> None:
        try:
            with self._recorder.calling("influitive"):
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
            with self._recorder.calling(self.name):
                result = self._inner.place_order(request)
        except Exception as exc:
            self._recorder.vendor_error(self.name, exc)
            raise
        self._recorder.order(request, result)
        return result

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        try:
            with self._recorder.calling(self.name):
                return self._inner.lookup(idempotency_key)
        except Exception as exc:
            self._recorder.vendor_error(self.name, exc)
            raise

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
