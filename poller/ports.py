"""The Protocols every adapter implements. The worker cycle sees nothing else.

Each has a fake beside its real adapter: ``poller.sources.influitive`` (client + fake),
``poller.vendors.<name>`` (+ ``vendors.fake``), ``poller.ledger`` (SQL + in-memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from poller.domain.model import (
    Event,
    LedgerEntry,
    OrderRequest,
    OrderResult,
    PollResult,
    Redemption,
)
from poller.domain.orders import VendorOrder
from poller.domain.states import State


class Decider(Protocol):
    """Where a redemption's outcome is told: Influitive's decision endpoints, or nothing for
    a source whose loop closes with the vendor's own delivery (Influence.io). Raises
    AlreadyDecided, SourceAuthError or SourceUnavailable (docs/delivery.md)."""

    def fulfill(self, redemption_id: str, message: str) -> None: ...

    def refuse(self, redemption_id: str, message: str) -> None: ...


class RedemptionSource(Decider, Protocol):
    """``poll`` raises SourceAuthError on 401/403 and SourceUnavailable when the first page
    cannot be read; a failure on a later page returns ``complete=False`` instead."""

    def poll(self) -> PollResult: ...


POLL_BATCH = 500


def read_pages(
    source: RedemptionSource, on_page: Callable[[Sequence[Redemption]], None]
) -> PollResult:
    """One poll, handed to ``on_page`` a page at a time: as read, when the source has
    ``poll_pages`` (the Influitive client: memory stays flat in the number outstanding),
    else from ``poll`` in batches of ``POLL_BATCH``. The result keeps no redemptions."""
    paged = getattr(source, "poll_pages", None)
    if callable(paged):
        result: PollResult = paged(on_page)
        return result
    result = source.poll()
    listed = result.redemptions
    for start in range(0, len(listed), POLL_BATCH):
        on_page(listed[start:start + POLL_BATCH])
    return replace(result, redemptions=(), streamed=result.streamed + len(listed))


class Vendor(Protocol):
    """``place_order`` must be idempotent on ``request.idempotency_key``. It raises the
    classes in ``poller.domain.errors``; ``lookup`` answers found (an ``OrderResult``), not
    found (None, only when the vendor said so) or unknown (a ``VendorError``), and never
    places an order: docs/delivery.md, "The vendor look-up contract"."""

    name: str

    def place_order(self, request: OrderRequest) -> OrderResult: ...

    def lookup(self, idempotency_key: str) -> OrderResult | None: ...

    def close(self) -> None: ...


class Cache(Protocol):
    """Durable key-value store (kept in the ledger) for what must survive between
    ``--run-once`` runs: a vendor catalog, webhook ids already seen."""

    def cache_get(self, key: str, now: datetime) -> str | None: ...

    def cache_put(self, key: str, value: str, expires_at: datetime | None) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ProductCheck:
    product: str | None
    amount: Decimal
    currency: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class VendorCheck:
    vendor: str
    credentials_ok: bool
    products: tuple[ProductCheck, ...] = ()
    balance: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.credentials_ok and not self.problems and all(p.ok for p in self.products)


class CheckableVendor(Protocol):
    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck: ...


@dataclass(frozen=True, kw_only=True)
class Changes:
    """Columns a transition sets alongside the state. None leaves a column as it is;
    ``clear`` sets columns back to NULL."""

    idempotency_key: str | None = None
    vendor: str | None = None
    product: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    vendor_order_id: str | None = None
    attempts: int | None = None
    next_attempt_at: datetime | None = None
    hold_reason: str | None = None
    last_error: str | None = None
    message: str | None = None
    ordered_at: datetime | None = None
    approved: bool | None = None
    clear: frozenset[str] = frozenset()

    def as_columns(self) -> dict[str, Any]:
        cols = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "clear"}
        return {k: v for k, v in cols.items() if v is not None} | dict.fromkeys(self.clear)


@dataclass(frozen=True, kw_only=True)
class SpendGuard:
    """Checked by ``Ledger.transition`` in the transaction of the move to ORDERING, so two
    workers cannot both squeeze under the limit. ``since``: midnight UTC today."""

    currency: str
    amount: Decimal
    daily_limit: Decimal
    since: datetime


class SpendLimitReached(Exception):
    def __init__(self, *, currency: str, spent: Decimal, amount: Decimal, limit: Decimal) -> None:
        super().__init__(
            f"daily spend limit for {currency} reached: {spent} already ordered today + "
            f"{amount} would pass {limit}"
        )
        self.currency = currency
        self.spent = spent
        self.amount = amount
        self.limit = limit


class LeaseLost(RuntimeError):
    """The row is no longer ours (lease expired and taken, or state moved): stop touching it."""


@dataclass(frozen=True, kw_only=True)
class PollRecord:
    id: int
    started_at: datetime
    finished_at: datetime | None
    complete: bool
    ok: bool
    seen: int
    error: str | None


class Ledger(Cache, Protocol):
    """Durable record of every redemption and every transition. Times are aware UTC; every
    method commits before it returns. ``now`` is the caller's clock; a ledger shared by
    several hosts (PostgreSQL) stores and compares the database server's time instead, and
    ``now`` only anchors times given relative to it."""

    def now(self, local: datetime) -> datetime: ...  # read once per decision, not per row

    def start_poll(self, now: datetime) -> int: ...

    def finish_poll(
        self, poll_id: int, now: datetime, *, ok: bool, complete: bool, seen: int,
        error: str | None = None,
    ) -> None: ...

    def last_successful_poll(self) -> PollRecord | None: ...

    def record(self, poll_id: int, redemptions: Sequence[Redemption], now: datetime) -> int:
        """Insert the redemptions not yet recorded (NEW, each stored whole beside its raw
        payload), mark all as seen by ``poll_id``; returns how many were new."""
        ...

    def due(self, now: datetime, limit: int) -> list[LedgerEntry]: ...  # lease free, oldest first

    def unseen_since(
        self, poll_id: int, states: frozenset[State], *, polls: int = 1
    ) -> list[LedgerEntry]:
        """Rows in ``states`` that neither poll ``poll_id`` nor a later one saw; ``polls`` > 1
        also asks for that many complete polls since the row's ``last_seen_poll`` that did
        not list it ("gone" needs absence in several separate cycles)."""
        ...

    def seen_since(self, poll_id: int, states: frozenset[State]) -> list[LedgerEntry]: ...

    def claim(self, pk: int, owner: str, now: datetime, lease_seconds: float) -> LedgerEntry | None:
        """Take a free or expired lease (compare-and-swap), or None; counts one more
        ``unfinished_steps`` (``release`` clears it)."""
        ...

    def renew(self, pk: int, owner: str, now: datetime, lease_seconds: float) -> bool: ...

    def release(self, pk: int, owner: str) -> None: ...

    def claim_transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        lease_seconds: float, changes: Changes | None = None, *, expect: State,
        guard: SpendGuard | None = None,
    ) -> LedgerEntry | None:
        """``claim`` and ``transition`` in one transaction on a row in state ``expect``;
        None, changing nothing, when the row is held by another, moved on, or missing."""
        ...

    def transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, expect: State | None = None,
        guard: SpendGuard | None = None, actor: str | None = None, release: bool = False,
    ) -> LedgerEntry:
        """Move a row we lease, set ``changes`` and append an event (by ``actor``, default
        ``owner``) in one transaction; ``release`` gives the lease back in it. Raises
        LeaseLost, IllegalTransition or SpendLimitReached (changing nothing)."""
        ...

    def admin_transition(
        self, pk: int, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, actor: str | None = None,
    ) -> LedgerEntry:
        """A person's move, leased as ``admin``. LookupError: no such row; LeaseLost: a
        worker holds it."""
        ...

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        """Committed to orders in ``currency`` since ``since`` (by ``ordered_at``), except
        rows refused or closed upstream without a vendor order."""
        ...

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None: ...

    def get_pk(self, pk: int) -> LedgerEntry | None: ...

    def events(self, pk: int) -> list[Event]: ...

    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
        filters: Mapping[str, Any] | None = None,
    ) -> list[LedgerEntry]: ...

    def counts(self) -> dict[State, int]: ...

    def oldest_waiting(self) -> LedgerEntry | None: ...  # active or held

    def close(self) -> None: ...


class OrderBook(Protocol):
    """A vendor's own order list, for the books audit (``poller.vendors.build_order_book``
    raises ``NotAuditable`` for a vendor that has none)."""

    vendor: str

    def vendor_key(self, idempotency_key: str) -> str:
        """The id this vendor records for one of our keys (Giftbit: the campaign id)."""
        ...

    def is_ours(self, external_id: str | None) -> bool: ...

    def close(self) -> None: ...

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        """Every order created in [since, until); an unreadable list raises, never empty."""
        ...
