"""The composition root: turns a Config into a wired Worker (``Runtime``) and runs one cycle of
it (``run_once``). The only place that knows every adapter; the daemon's own parts are built
by ``poller.compose.daemon``, which a ``run --run-once`` never imports."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from poller.config import Config
from poller.core.budget import BudgetLimit, MemoryRequestLog, RequestBudget
from poller.daemon.alerts import Alerter, HeldSource
from poller.daemon.service import run_once as run_cycle_once
from poller.domain.errors import ConfigError
from poller.ledger import open_ledger
from poller.ledger.budget import SqlRequestLog
from poller.ledger.sql import LedgerTimeouts, SqlLedger
from poller.ports import Cache, Decider, Ledger, Vendor
from poller.sources.influenceio import SOURCE as INFLUENCEIO
from poller.sources.influenceio.points import PointsClient
from poller.sources.influenceio.refunds import InfluenceioDecisions, InfluenceioRefunds
from poller.sources.influitive.client import InfluitiveClient
from poller.transport import RetryPolicy
from poller.vendors import BuildContext, build_vendor
from poller.vendors.ratelimit import limited
from poller.worker.cycle import CycleReport, Worker, WorkerPolicy

if TYPE_CHECKING:
    from poller.daemon.metrics import Recorder

log = structlog.get_logger("poller.compose")

INFLUITIVE_BUDGET_SCOPE = "influitive"  # the request_log scope of the Influitive budget


def http_policy(config: Config, timeout: float | None = None) -> RetryPolicy:
    return RetryPolicy(
        attempts=config.retry.http_attempts,
        max_retry_after=config.retry.max_retry_after_seconds,
        timeout=timeout if timeout is not None else config.influitive.timeout_seconds,
    )


class VendorPool:
    """Builds each configured vendor on first use and closes them all at the end."""

    def __init__(self, config: Config, cache: Cache | None = None) -> None:
        self._config = config
        self._cache = cache
        self._built: dict[str, Vendor] = {}
        self._lock = threading.Lock()
        self.names = frozenset(config.vendors)

    def __call__(self, name: str) -> Vendor:
        with self._lock:
            if name not in self._built:
                settings = self._config.vendor_settings(name)
                if settings is None:
                    raise ConfigError(f"vendor {name!r} has no [vendors.{name}] section")
                context = BuildContext(policy=http_policy(self._config), cache=self._cache)
                self._built[name] = limited(build_vendor(name, settings, context),
                                            self._config.vendor_rate_limit(name))
            return self._built[name]

    def close(self) -> None:
        for vendor in self._built.values():
            vendor.close()
        self._built.clear()


def ledger_timeouts(config: Config) -> LedgerTimeouts:
    s = config.ledger
    return LedgerTimeouts(
        connect_seconds=s.connect_timeout_seconds,
        statement_seconds=s.statement_timeout_seconds,
        lock_seconds=s.lock_timeout_seconds,
        keepalive_idle_seconds=s.keepalive_idle_seconds,
        keepalive_interval_seconds=s.keepalive_interval_seconds,
        keepalive_count=s.keepalive_count,
    )


def budget_window(window_seconds: float) -> float:
    """``[influitive] window_seconds`` plus 5% of it, at most a second. A unit is stamped as
    its request is about to leave; the firewall counts the request when it arrives, a moment
    later, and a request held up on its way (a busy host, a new connection) would otherwise
    still be in the firewall's window when the budget has handed its unit on."""
    return window_seconds + min(1.0, window_seconds * 0.05)


def request_budget(
    config: Config, ledger: SqlLedger | None, stop: threading.Event | None = None
) -> RequestBudget:
    """The Influitive request budget, counted in the ledger so every worker on it shares it.
    Without a ledger (``check`` before one exists, a dry run that writes nothing), one of
    its own. ``stop`` ends a wait for a unit early."""
    s = config.influitive
    limit = BudgetLimit(scope=INFLUITIVE_BUDGET_SCOPE, max_requests=s.max_requests_per_window,
                        window_seconds=budget_window(s.window_seconds))
    requests = MemoryRequestLog() if ledger is None else SqlRequestLog(ledger.engine)
    return RequestBudget(requests, limit, stop=stop)


def influitive_client(config: Config, budget: RequestBudget | None = None) -> InfluitiveClient:
    s = config.influitive
    return InfluitiveClient(
        s.base_url, s.api_token.get_secret_value(), s.org_id,
        policy=http_policy(config), max_pages=s.max_pages, refuse_verb=s.refuse_verb,
        list_path=s.list_path, budget=budget, max_page_bytes=s.max_page_bytes,
    )


def _pushed_sources(config: Config, ledger: Ledger, owner: str) -> dict[str, Decider]:
    settings = config.influenceio
    if settings.api_key is None:
        return {INFLUENCEIO: InfluenceioDecisions()}
    points = PointsClient(
        settings.base_url, settings.api_key.get_secret_value(),
        policy=http_policy(config, timeout=settings.timeout_seconds),
        points_field=settings.points_field, reason_field=settings.reason_field,
        history_path=settings.history_path,
    )
    return {INFLUENCEIO: InfluenceioRefunds(
        points, ledger, owner=owner, customer_id_field=settings.customer_id_field,
        reason_template=settings.refund_reason,
    )}


class Runtime:
    """Everything one process needs, opened once and closed together.

    ``recorder``: the daemon's metrics; the worker then sees Influitive and the vendors
    through wrappers that count errors and orders. Without one, ``[metrics] textfile`` makes
    the Runtime keep its own and write it there when it closes (the end of a ``run
    --run-once``)."""

    def __init__(
        self, config: Config, *, stop: threading.Event | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.ledger = open_ledger(config.ledger.url, timeouts=ledger_timeouts(config),
                                  threads=config.schedule.concurrency,
                                  schema=config.ledger.schema)
        self._textfile = config.metrics.textfile if recorder is None else None
        if self._textfile is not None:
            # On demand: prometheus_client costs a run-once's start-up a good part of its
            # time, and only a run with ``[metrics] textfile`` set has metrics to write.
            from poller.daemon.metrics import Recorder

            recorder = Recorder(process=False)
        self.recorder = recorder
        self.request_budget = request_budget(config, self.ledger, self.stop)
        self.source = influitive_client(config, budget=self.request_budget)
        self.vendors = VendorPool(config, cache=self.ledger)
        # A lease's holder: host and pid (to find it), plus a nonce (pids are reused). The
        # Influence.io refund records its intent under the worker's lease: same owner.
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.deciders = _pushed_sources(config, self.ledger, owner)
        vendors: Callable[[str], Vendor] = self.vendors
        if recorder is not None:
            recorder.attach_ledger(self.ledger, config.fulfillment.daily_spend_limit)
            recorder.expect_vendors(self.vendors.names)

            def vendors(name: str) -> Vendor:
                return recorder.instrument_vendor(self.vendors(name))

        self.worker = Worker(
            source=self.source if recorder is None else recorder.instrument_source(self.source),
            ledger=self.ledger,
            vendors=vendors,
            vendor_names=self.vendors.names,
            rules=config.rules(),
            policy=WorkerPolicy(
                namespace=config.influitive.org_id,
                schedule=config.retry.schedule(),
                lease_seconds=config.ledger.lease_seconds,
                gone_after_polls=config.ledger.gone_after_polls,
                batch_size=config.schedule.batch_size,
                unmapped=config.fulfillment.unmapped_reward,
                unavailable=config.fulfillment.unavailable_reward,
                pending_recheck_seconds=config.schedule.interval_seconds,
                concurrency=config.schedule.concurrency,
                spend=config.fulfillment.spend_policy(),
            ),
            messages=config.fulfillment.templates(),
            owner=owner,
            deciders=self.deciders,
            stop=self.stop,
        )

    def close(self) -> None:
        self.vendors.close()
        self.source.close()
        for decider in self.deciders.values():
            close = getattr(decider, "close", None)
            if close is not None:
                close()
        try:
            if self._textfile is not None and self.recorder is not None:
                self.recorder.observe_ledger(self.ledger)
                self.recorder.write_textfile(self._textfile)
        except Exception as exc:
            # The run's own work is done and recorded; the metrics are not: say so loudly.
            log.error("metrics.textfile.failed", path=self._textfile,
                      error=f"{type(exc).__name__}: {exc}")
        finally:
            self.ledger.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def alerter_for(config: Config, ledger: HeldSource) -> Alerter:
    """The alerts of ``[alerts]``, counting failed runs and held redemptions in ``ledger``."""
    a = config.alerts
    return Alerter(
        webhook_url=a.webhook_url.get_secret_value() if a.webhook_url is not None else None,
        ledger=ledger, failures_before_alert=a.failures_before_alert,
        min_interval_seconds=a.min_interval_seconds, timeout_seconds=a.timeout_seconds,
    )


def run_once(runtime: Runtime) -> CycleReport:
    """One cycle of ``runtime``'s worker, then the alerts it calls for."""
    return run_cycle_once(runtime.worker.run_cycle, alerter_for(runtime.config, runtime.ledger),
                          runtime.config.influitive.max_pages)
