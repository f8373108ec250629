"""What the console's pages show, read through the Protocols only.
Nothing here returns a claim code or link, an API key or a redemption's raw payload: the
pages show the ledger's columns a person decides with, and events' details, which the ledger
keeps free of secrets (and which are scrubbed once more on the way out)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from poller.core.budget import RequestBudget
from poller.domain.model import LedgerEntry
from poller.domain.states import State
from poller.ledger import counts_as_spent
from poller.ledger.audit import StoredRun
from poller.logs import redactor
from poller.ports import Ledger, Vendor


@dataclass(kw_only=True)
class Backend:
    """What the console reads and acts through, built from the Runtime that serves it."""

    ledger: Ledger
    vendors: Callable[[str], Vendor]
    namespace: str
    """``[influitive] org_id``: ``reorder`` derives the next key from it."""
    process: Callable[[int], LedgerEntry | None]
    """The worker's ``process``: sends a refusal or fulfilment at once, as ``ledger`` does."""
    daily_limits: Mapping[str, Decimal]
    request_budget: RequestBudget
    audit: Callable[[], StoredRun | None]
    """The newest books audit the ledger keeps (``audit_runs``)."""
    funds: Callable[[], Mapping[str, str | None]] | None


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
            if self._at is None or self._clock() - self._at >= self._ttl:
                self._value = {name: self._balance(name) for name in self._names}
                self._at = self._clock()
            return dict(self._value)

    def _balance(self, name: str) -> str | None:
        try:
            check = getattr(self._vendors(name), "check", None)
            return check(()).balance if callable(check) else None
        except Exception:
            return None


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


def overview(backend: Backend) -> dict[str, Any]:
    ledger, now = backend.ledger, datetime.now(UTC)
    counts = ledger.counts()
    held = ledger.list(states=frozenset({State.HELD}), limit=10_000)
    by_reason = Counter(reason_kind(e.hold_reason or e.last_error) for e in held)
    oldest = ledger.oldest_waiting()
    limit = backend.request_budget.limit
    manual = ledger.list(states=frozenset({State.PENDING}), limit=10_000,
                         filters={"vendor": "manual"})
    return {
        "counts": {s: counts.get(s, 0) for s in State},
        "outstanding": sum(n for s, n in counts.items() if not s.terminal),
        "held_by_reason": sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])),
        "oldest_open_age": (now - oldest.created_at) if oldest is not None else None,
        "last_poll": ledger.last_successful_poll(),
        "budget_used": backend.request_budget.log.taken(limit, now),
        "budget_max": limit.max_requests,
        "budget_window_seconds": limit.window_seconds,
        "funds": dict(backend.funds()) if backend.funds is not None else {},
        "manual_waiting": len(manual),
    }


def needing_a_person(backend: Backend, limit: int = 500) -> list[LedgerEntry]:
    """Held and waiting redemptions, and manual rewards waiting to be sent, oldest first."""
    rows = backend.ledger.list(states=frozenset({State.HELD, State.WAITING}), limit=limit)
    rows += backend.ledger.list(states=frozenset({State.PENDING}), limit=limit,
                                filters={"vendor": "manual"})
    return sorted(rows, key=lambda e: e.created_at)[:limit]


def audit(backend: Backend) -> dict[str, Any]:
    """The newest audit run, its vendors split into those compared and those that cannot
    list their orders (e.g. manual)."""
    run = backend.audit()
    vendors = run.vendors if run is not None else {}
    skipped = sorted(v for v, summary in vendors.items() if summary.get("not_auditable"))
    return {"run": run, "not_audited": skipped,
            "audited": sorted(v for v in vendors if v not in skipped)}


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


def _day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def spend(backend: Backend, days: int = 14) -> list[Spend]:
    """What was committed to vendor orders per UTC day and vendor over the last ``days``
    days, per currency, by the daily limit's rule (``ordered_at`` in the day; refused rows
    and those closed without a vendor order do not count)."""
    first = _day(datetime.now(UTC)) - timedelta(days=days - 1)
    # ordered_at comes after created_at; a row created long before it was ordered is rare
    # (a hold released weeks later), so look back further than the chart shows.
    rows = backend.ledger.list(states=frozenset(State) - {State.NEW}, limit=100_000,
                               filters={"since": first - timedelta(days=90)})
    spent: defaultdict[tuple[str, datetime, str], Decimal] = defaultdict(Decimal)
    for e in rows:
        if (e.ordered_at is not None and e.amount is not None and e.currency is not None
                and e.ordered_at >= first and counts_as_spent(e.state, e.vendor_order_id)):
            spent[e.currency, _day(e.ordered_at), e.vendor or "?"] += e.amount
    dates = [first + timedelta(days=i) for i in range(days)]
    out = []
    for currency in sorted({c for c, _, _ in spent} | set(backend.daily_limits)):
        vendors = sorted({v for c, _, v in spent if c == currency})
        per_day = [DaySpend(day=day, by_vendor={v: spent[currency, day, v] for v in vendors
                                                if (currency, day, v) in spent})
                   for day in dates]
        out.append(Spend(currency=currency, days=per_day, vendors=vendors,
                         limit=backend.daily_limits.get(currency)))
    return out


# --- the spend chart, drawn by spend.html as an inline SVG (no script, no image fetched): one
# stacked bar per day, one colour per vendor (CSS classes v0 to v5), the daily limit dashed.

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 14, 40  # the plot's margins
PALETTE = 6


def chart(spend: Spend) -> dict[str, Any]:
    """Where spend.html draws ``spend``'s bars, scale, day labels and limit (SVG units)."""
    top = max([*(d.total for d in spend.days), spend.limit or Decimal(0), Decimal(1)])
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(spend.days), 1)
    width = max(slot * 0.7, 2)

    def y(value: Decimal) -> float:
        return TOP + plot_h - float(value / (top * Decimal("1.1"))) * plot_h

    bars, labels = [], []
    for i, day in enumerate(spend.days):
        x = LEFT + i * slot + (slot - width) / 2
        base = Decimal(0)
        for n, vendor in enumerate(spend.vendors):
            amount = day.by_vendor.get(vendor)
            if amount:
                bars.append({"x": x, "y": y(base + amount), "colour": n % PALETTE,
                             "height": max(y(base) - y(base + amount), 0.5),
                             "day": day.day, "vendor": vendor, "amount": amount})
                base += amount
        if (len(spend.days) - 1 - i) % max(1, len(spend.days) // 7) == 0:  # today labelled
            labels.append((x + width / 2, day.day))
    return {"bars": bars, "labels": labels, "width": width, "box": (WIDTH, HEIGHT),
            "x": (LEFT, WIDTH - RIGHT), "floor": TOP + plot_h, "label_y": HEIGHT - BOTTOM + 16,
            "scale": [(y(top * f), top * f) for f in (Decimal(0), Decimal("0.5"), Decimal(1))],
            "limit": None if spend.limit is None else y(spend.limit)}
