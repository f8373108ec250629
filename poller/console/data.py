"""What the console's pages show, read from the ledger (and the request budget, the vendors'
balances, the latest books audit) through the Protocols only.

Nothing here returns a claim code or link, an API key or a redemption's raw payload: the
pages show the ledger's columns a person decides with, and events' details, which the
ledger already keeps free of secrets (and which are scrubbed once more on the way out).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from poller.core.budget import RequestBudget
from poller.domain.model import Event, LedgerEntry
from poller.domain.states import TERMINAL, State
from poller.ledger import counts_as_spent
from poller.ledger.audit import StoredRun
from poller.logs import redactor
from poller.ports import Ledger, PollRecord, Vendor

# --- the books audit: read through this Protocol, wired by whoever builds the Backend ---


@dataclass(frozen=True, kw_only=True)
class AuditDiscrepancy:
    kind: str
    """e.g. "order without redemption", "amount differs", "redemption without order"."""
    vendor: str
    detail: str
    redemption_id: str | None = None
    vendor_order_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True, kw_only=True)
class AuditSummary:
    ran_at: datetime
    since: datetime
    until: datetime
    vendors: tuple[str, ...] = ()
    orders_checked: int = 0
    discrepancies: tuple[AuditDiscrepancy, ...] = ()
    not_audited: tuple[str, ...] = ()
    """Vendors that cannot list their orders (e.g. manual), so were not compared."""


class AuditReader(Protocol):
    def latest_audit(self) -> AuditSummary | None:
        """The most recent books audit, or None when none has run."""
        ...


class NoAudit:
    """An ``AuditReader`` for a ledger no audit has been run on."""

    def latest_audit(self) -> AuditSummary | None:
        return None


class StoredAudit:
    """An ``AuditReader`` over the runs the ledger keeps (``audit_runs``): the newest one,
    written by ``reward-poller audit`` or the daemon's scheduled audit."""

    def __init__(self, latest: Callable[[], StoredRun | None]) -> None:
        self._latest = latest

    def latest_audit(self) -> AuditSummary | None:
        run = self._latest()
        return None if run is None else summary_of(run)


def summary_of(run: StoredRun) -> AuditSummary:
    not_audited = tuple(sorted(v for v, s in run.vendors.items() if s.get("not_auditable")))
    return AuditSummary(
        ran_at=run.finished_at, since=run.since, until=run.until,
        vendors=tuple(sorted(v for v in run.vendors if v not in not_audited)),
        orders_checked=run.orders,
        discrepancies=tuple(
            AuditDiscrepancy(kind=d.kind.value, vendor=d.vendor, detail=d.detail,
                             redemption_id=d.redemption_id, vendor_order_id=d.order_id)
            for d in run.discrepancies),
        not_audited=not_audited,
    )


# --- what the console is given -----------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class Backend:
    """Everything the console reads and acts through, built by whoever serves it (the
    daemon, ``reward-poller console``) from its running App."""

    ledger: Ledger
    vendors: Callable[[str], Vendor]
    vendor_names: frozenset[str]
    namespace: str
    """``[influitive] org_id``: ``reorder`` derives the next key from it."""
    process: Callable[[int], LedgerEntry | None]
    """The worker's ``process``: sends a refusal or fulfilment to Influitive at once, as
    ``ledger refuse`` and ``ledger fulfill`` do."""
    daily_limits: Mapping[str, Decimal] = field(default_factory=dict)
    request_budget: RequestBudget | None = None
    audit: AuditReader = field(default_factory=NoAudit)
    funds: Callable[[], Mapping[str, str | None]] | None = None
    clock: Callable[[], datetime] = _utcnow


class FundsCache:
    """Each vendor's balance (``CheckableVendor.check``), asked at most every ``ttl``
    seconds; a vendor that cannot tell, or fails, is None ("unknown")."""

    def __init__(self, vendors: Callable[[str], Vendor], names: Sequence[str], *,
                 ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._vendors = vendors
        self._names = sorted(names)
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._value: dict[str, str | None] = {}

    def __call__(self) -> Mapping[str, str | None]:
        with self._lock:
            if self._at is not None and self._clock() - self._at < self._ttl:
                return dict(self._value)
            value: dict[str, str | None] = {}
            for name in self._names:
                try:
                    check = getattr(self._vendors(name), "check", None)
                    value[name] = check(()).balance if callable(check) else None
                except Exception:
                    value[name] = None
            self._value, self._at = value, self._clock()
            return dict(value)


# --- held redemptions: what kind of reason, and what to do --------------------------------

_KINDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("spending guard", ("spending guard", "spend limit", "max_order_amount"),
     "Approve it with `ledger approve` if the amount is right, or refuse it."),
    ("no reward rule", ("no [[rewards]] rule", "has no [vendors."),
     "Add a [[rewards]] rule for this reward, then retry; or refuse it with a message."),
    ("vendor funds", ("funds", "balance"),
     "Top up the vendor account, then retry."),
    ("product or configuration", ("does not offer", "unavailable", "product", "metadata"),
     "Fix the reward's product in the configuration, then retry; or refuse it."),
    ("advocate's details", ("email", "recipient", "address"),
     "Correct the advocate's details at Influitive, then retry; or refuse it."),
    ("vendor order failed", ("failed at the vendor",),
     "Reorder (a new order is placed) or refuse it (the points are refunded)."),
    ("needs a person at the vendor", ("needs a person", "unconfirmable"),
     "Check the order at the vendor first; then retry, mark it fulfilled or refuse it."),
    ("gave up retrying", ("gave up after", "attempts"),
     "Find the cause in the history below; retry once it is fixed."),
)


def reason_kind(reason: str | None) -> str:
    text = (reason or "").lower()
    for kind, words, _ in _KINDS:
        if any(w in text for w in words):
            return kind
    return "other"


def suggested_action(entry: LedgerEntry) -> str:
    if entry.state is State.PENDING and entry.vendor == "manual":
        return "Send the reward by hand, then mark it fulfilled."
    kind = reason_kind(entry.hold_reason or entry.last_error)
    action = next((a for name, _, a in _KINDS if name == kind), None)
    if entry.state is State.WAITING:
        again = "The worker tries again by itself; retry releases it now."
        return f"{action} {again}" if action else again
    return action or "Read the history; retry once the cause is fixed, or refuse it."


_URL_PATH = re.compile(r"(?i)\b(https?://[^/\s\"'<>?#]+)[/?#][^\s\"'<>]*")


def scrub(text: str | None) -> str | None:
    """``text`` as a page may show it: every secret the log redactor knows removed, and
    every URL cut to its host (a claim link's path is its secret)."""
    if text is None:
        return None
    def cut(match: re.Match[str]) -> str:
        whole = match.group(0)
        tail = whole[len(whole.rstrip(".,;:!)")):]
        return f"{match.group(1)}/…{tail}"

    return _URL_PATH.sub(cut, redactor.scrub(text))


# --- the overview ---------------------------------------------------------------------------

OPEN_STATES = frozenset(State) - TERMINAL


@dataclass(frozen=True, kw_only=True)
class Overview:
    counts: dict[State, int]
    outstanding: int
    waiting: int
    held_by_reason: list[tuple[str, int]]
    oldest_open: LedgerEntry | None
    oldest_open_age: timedelta | None
    last_poll: PollRecord | None
    budget_used: int | None
    budget_max: int | None
    budget_window_seconds: float | None
    funds: dict[str, str | None]
    manual_waiting: int


def overview(backend: Backend) -> Overview:
    ledger = backend.ledger
    now = backend.clock()
    counts = ledger.counts()
    held = ledger.list(states=frozenset({State.HELD}), limit=10_000)
    by_reason = Counter(reason_kind(e.hold_reason or e.last_error) for e in held)
    oldest = ledger.oldest_waiting()
    used = max_req = window = None
    if backend.request_budget is not None:
        limit = backend.request_budget.limit
        try:
            used = backend.request_budget.log.taken(limit, now)
        except Exception:
            used = None
        max_req, window = limit.max_requests, limit.window_seconds
    manual = ledger.list(states=frozenset({State.PENDING}), limit=10_000,
                         filters={"vendor": "manual"})
    return Overview(
        counts={s: counts.get(s, 0) for s in State},
        outstanding=sum(n for s, n in counts.items() if s in OPEN_STATES),
        waiting=counts.get(State.WAITING, 0),
        held_by_reason=sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])),
        oldest_open=oldest,
        oldest_open_age=(now - oldest.created_at) if oldest is not None else None,
        last_poll=ledger.last_successful_poll(),
        budget_used=used, budget_max=max_req, budget_window_seconds=window,
        funds=dict(backend.funds()) if backend.funds is not None else {},
        manual_waiting=len(manual),
    )


def needing_a_person(backend: Backend, limit: int = 500) -> list[LedgerEntry]:
    """Held and waiting redemptions, and manual rewards waiting to be sent, oldest first."""
    ledger = backend.ledger
    rows = ledger.list(states=frozenset({State.HELD, State.WAITING}), limit=limit)
    rows += ledger.list(states=frozenset({State.PENDING}), limit=limit,
                        filters={"vendor": "manual"})
    return sorted(rows, key=lambda e: e.created_at)[:limit]


def history(backend: Backend, entry: LedgerEntry) -> list[Event]:
    return backend.ledger.events(entry.pk)


# --- spend per day and per vendor ---------------------------------------------------------

COUNTED = frozenset(State) - {State.NEW}


@dataclass(frozen=True, kw_only=True)
class DaySpend:
    day: datetime
    by_vendor: dict[str, Decimal]

    @property
    def total(self) -> Decimal:
        return sum(self.by_vendor.values(), Decimal(0))


@dataclass(frozen=True, kw_only=True)
class Spend:
    currency: str
    days: list[DaySpend]
    limit: Decimal | None
    vendors: list[str]


def spend(backend: Backend, days: int = 14) -> list[Spend]:
    """What was committed to vendor orders per UTC day and vendor over the last ``days``
    days, per currency, by the daily limit's rule (``ordered_at`` in the day; refused rows
    and those closed without a vendor order do not count)."""
    now = backend.clock().astimezone(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=days - 1)
    # ordered_at comes after created_at; a row created long before it was ordered is rare
    # (a hold released weeks later), so look back further than the chart shows.
    rows = backend.ledger.list(states=COUNTED, limit=100_000,
                               filters={"since": first - timedelta(days=90)})
    per: dict[str, dict[datetime, dict[str, Decimal]]] = {}
    for e in rows:
        if (e.ordered_at is None or e.amount is None or e.currency is None
                or e.ordered_at < first or not counts_as_spent(e.state, e.vendor_order_id)):
            continue
        day = e.ordered_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        by_vendor = per.setdefault(e.currency, {}).setdefault(day, {})
        by_vendor[e.vendor or "?"] = by_vendor.get(e.vendor or "?", Decimal(0)) + e.amount
    currencies = sorted(set(per) | set(backend.daily_limits))
    out = []
    for currency in currencies:
        table = per.get(currency, {})
        vendors = sorted({v for c in table.values() for v in c})
        out.append(Spend(
            currency=currency,
            days=[DaySpend(day=first + timedelta(days=i),
                           by_vendor=dict(table.get(first + timedelta(days=i), {})))
                  for i in range(days)],
            limit=backend.daily_limits.get(currency),
            vendors=vendors,
        ))
    return out
