"""Running the books audit (docs/audit.md): read each vendor's order list, match it with
the ledger (``poller.core.audit``) and store the result (``poller.ledger.audit``); in the
daemon, on ``[audit] interval``, with the metrics the alert rules read. A list that could not
be read is reported as unreadable, never taken as empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from poller import logs
from poller.core.audit import MARGIN, AuditResult, VendorAudit, audit_vendor
from poller.domain.errors import ConfigError, NotAuditable, PollerError
from poller.ledger.audit import rows_for_audit, save_run
from poller.ports import OrderBook
from poller.transport import RetryPolicy
from poller.vendors import BuildContext, build_order_book

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from poller.config import Config
    from poller.daemon.metrics import Recorder

log = structlog.get_logger("poller.audit")

# The order list of the vendor named; raises NotAuditable for a vendor that has none.
BookOpener = Callable[[str], OrderBook]


def order_book_opener(config: Config) -> BookOpener:
    policy = RetryPolicy(attempts=config.retry.http_attempts,
                         max_retry_after=config.retry.max_retry_after_seconds,
                         timeout=config.influitive.timeout_seconds)

    def open_book(name: str) -> OrderBook:
        settings = config.vendor_settings(name)
        if settings is None:
            raise ConfigError(f"vendor {name!r} has no [vendors.{name}] section")
        return build_order_book(name, settings, BuildContext(
            # The config has applied the vendor's default already: None there is "no limit".
            policy=policy, rate_limit_per_second=config.vendor_rate_limit(name) or 0.0))

    return open_book


def vendors_to_audit(config: Config, only: str | None = None) -> list[str]:
    names = sorted(config.vendors)
    if only is None:
        return names
    if only not in names:
        raise ConfigError(f"vendor {only!r} has no [vendors.{only}] section; configured: "
                          f"{', '.join(names) or 'none'}")
    return [only]


def trailing_period(config: Config, now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(days=config.audit.window_days), now


def _why(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, PollerError) else f"{type(exc).__name__}: {exc}"
    return logs.clean_line(logs.redactor.scrub(text))


def audit_books(
    engine: Engine, vendors: Sequence[str], open_book: BookOpener, *, since: datetime,
    until: datetime, calling: Callable[[str], AbstractContextManager[None]] | None = None,
) -> AuditResult:
    """Audit each of ``vendors`` for ``[since, until)``. ``calling(vendor)``
    (``Recorder.calling``) surrounds the reading of each list, so its HTTP requests are timed
    as that vendor's."""
    audits: list[VendorAudit] = []
    for name in vendors:
        try:
            book = open_book(name)
        except NotAuditable as exc:
            audits.append(VendorAudit(vendor=name, not_auditable=_why(exc)))
            continue
        try:
            with calling(name) if calling is not None else nullcontext():
                orders = list(book.orders(since - MARGIN, until + MARGIN))
        except Exception as exc:  # any failure to read is "unreadable", never "empty"
            audits.append(VendorAudit(vendor=name, unreadable=_why(exc)))
            continue
        finally:
            book.close()
        entries = rows_for_audit(
            engine, name, since=since - MARGIN, until=until + MARGIN,
            keys={o.external_id for o in orders if o.external_id},
            order_ids={o.order_id for o in orders})
        audits.append(audit_vendor(name, orders, entries, since=since, until=until,
                                   vendor_key=book.vendor_key, is_ours=book.is_ours))
    return AuditResult(since=since, until=until, vendors=tuple(audits))


def log_result(result: AuditResult) -> None:
    for d in result.discrepancies:
        log.error("audit.discrepancy", vendor=d.vendor, kind=d.kind.value,
                  redemption_id=d.redemption_id, order_id=d.order_id, detail=d.detail,
                  action=d.action)
    for v in result.vendors:
        if v.unreadable is not None:
            log.error("audit.unreadable", vendor=v.vendor, error=v.unreadable)
        elif v.not_auditable is not None:
            log.info("audit.not_auditable", vendor=v.vendor, reason=v.not_auditable)
    (log.info if result.balanced else log.error)(
        "audit.finished", balanced=result.balanced, orders=result.orders,
        matched=result.matched, discrepancies=len(result.discrepancies),
        since=result.since.isoformat(), until=result.until.isoformat())


class AuditJob:
    """The daemon's scheduled audit of the trailing ``[audit] window_days``. Never raises."""

    def __init__(self, config: Config, engine: Engine, recorder: Recorder | None = None, *,
                 open_book: BookOpener | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.engine = engine
        self.recorder = recorder
        self.open_book = open_book or order_book_opener(config)
        self.clock = clock
        self.runs = 0

    def __call__(self) -> AuditResult | None:
        started = self.clock()
        since, until = trailing_period(self.config, started)
        result: AuditResult | None = None
        try:
            result = audit_books(
                self.engine, vendors_to_audit(self.config), self.open_book, since=since,
                until=until, calling=self.recorder.calling if self.recorder else None)
            save_run(self.engine, result, started_at=started, finished_at=self.clock(),
                     actor="daemon")
            log_result(result)
        except Exception as exc:  # the daemon keeps running; the next interval tries again
            log.error("audit.failed", error=_why(exc))
        self.runs += 1
        if self.recorder is not None:
            self.recorder.observe_audit(result, time.time())
        return result
