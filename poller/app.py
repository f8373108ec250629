"""The composition root: turns a Config into a wired Worker. The only module that knows
every adapter; everything it imports heavy is imported here, lazily, when first needed."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from poller.config import Config
from poller.core.errors import ConfigError
from poller.core.ports import Cache, Decider, RedemptionSource, Vendor
from poller.transport import RetryPolicy
from poller.worker.cycle import Worker, WorkerPolicy

if TYPE_CHECKING:
    from poller.influitive.client import InfluitiveClient
    from poller.ledger.sql import SqlLedger
    from poller.ops.metrics import Recorder


def worker_id() -> str:
    """Who holds a lease: host and pid (to find it), plus a nonce (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._config.vendors)

    def __call__(self, name: str) -> Vendor:
        with self._lock:
            if name not in self._built:
                from poller.vendors import BuildContext, build_vendor
                from poller.vendors.ratelimit import limited

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


def open_ledger(config: Config) -> SqlLedger:
    from poller.ledger import open_ledger as _open

    return _open(config.ledger.url)


def influitive_client(config: Config) -> InfluitiveClient:
    from poller.influitive.client import InfluitiveClient

    s = config.influitive
    return InfluitiveClient(
        s.base_url, s.api_token.get_secret_value(), s.org_id,
        policy=http_policy(config), max_pages=s.max_pages, refuse_verb=s.refuse_verb,
        list_path=s.list_path,
    )


def _pushed_sources() -> dict[str, Decider]:
    from poller.influenceio import SOURCE
    from poller.influenceio.events import InfluenceioDecisions

    return {SOURCE: InfluenceioDecisions()}


class App:
    """Everything one process needs, opened once and closed together."""

    def __init__(
        self, config: Config, *, stop: threading.Event | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        """``recorder``: the daemon's metrics; the worker then sees Influitive and the
        vendors through wrappers that count errors and orders."""
        self.config = config
        self.stop = stop or threading.Event()
        self.ledger = open_ledger(config)
        self.source = influitive_client(config)
        self.vendors = VendorPool(config, cache=self.ledger)
        source: RedemptionSource = self.source
        vendors: Callable[[str], Vendor] = self.vendors
        if recorder is not None:
            source = recorder.instrument_source(self.source)
            vendors = _instrumented(self.vendors, recorder)
        self.worker = Worker(
            source=source,
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
                pending_recheck_seconds=config.schedule.interval_seconds,
                concurrency=config.schedule.concurrency,
                spend=config.fulfillment.spend_policy(),
            ),
            messages=config.fulfillment.templates(),
            owner=worker_id(),
            deciders=_pushed_sources(),
            stop=self.stop,
        )

    def close(self) -> None:
        self.vendors.close()
        self.source.close()
        self.ledger.close()

    def __enter__(self) -> App:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _instrumented(pool: VendorPool, recorder: Recorder) -> Callable[[str], Vendor]:
    def vendor(name: str) -> Vendor:
        return recorder.instrument_vendor(pool(name))

    return vendor
