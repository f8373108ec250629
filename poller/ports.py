"""The Protocols every adapter implements. The worker cycle sees nothing else.

Each external system is one module behind one of these, with a fake beside it:
``poller.sources.influitive`` (client + fake), ``poller.vendors.<name>`` (+ ``vendors.fake``),
``poller.ledger`` (SQL + in-memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
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
    a source whose loop closes with the vendor's own delivery (Influence.io)."""

    def fulfill(self, redemption_id: str, message: str) -> None: ...

    def refuse(self, redemption_id: str, message: str) -> None: ...


class RedemptionSource(Protocol):
    """Influitive: the outstanding redemptions and the decision endpoints.

    ``poll`` raises SourceAuthError on 401/403 and SourceUnavailable when the first page
    cannot be read; a failure on a later page returns ``complete=False`` instead.
    ``fulfill``/``refuse`` raise AlreadyDecided, SourceAuthError or SourceUnavailable.
    """

    def poll(self) -> PollResult: ...

    def fulfill(self, redemption_id: str, message: str) -> None: ...

    def refuse(self, redemption_id: str, message: str) -> None: ...


class PagedSource(RedemptionSource, Protocol):
    """A source that can hand its list over page by page as it reads it (the Influitive
    client): memory stays flat in the number outstanding and each page can be recorded
    before the next is asked for."""

    def poll_pages(self, on_page: Callable[[Sequence[Redemption]], None]) -> PollResult:
        """Like ``poll``, but each page's redemptions go to ``on_page`` as they are read and
        the result keeps none (``streamed`` counts them). An exception from ``on_page``
        ends the poll and is raised."""
        ...


POLL_BATCH = 500
"""Redemptions per ``on_page`` call when a source that cannot page (a fake, a test double)
is read with ``read_pages``."""


def read_pages(
    source: RedemptionSource, on_page: Callable[[Sequence[Redemption]], None]
) -> PollResult:
    """One poll of ``source``, its redemptions handed to ``on_page`` a page at a time:
    as read when the source can (``PagedSource``), else from its ``poll`` in batches of
    ``POLL_BATCH``. The result keeps no redemptions; ``streamed`` counts them."""
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
    """A reward vendor. ``place_order`` must be idempotent on ``request.idempotency_key``:
    repeating it returns the first order and creates nothing.

    Raises the classes in ``poller.domain.errors``: TransientVendorError, AdvocateFacingError
    (the recipient or the market: refused), OperatorFacingError, ConfigFixable (the
    operator's config asks for what the vendor does not offer: held at once, never
    refused), UnknownOutcome.

    ``lookup`` has exactly three answers, the same for every adapter:

    * **found**: an ``OrderResult`` (whatever its status);
    * **not found**: ``None``, only when the vendor itself answered that no order exists
      under the key (a 404 on the key, an empty search result);
    * **unknown**: a ``VendorError`` when the vendor could not be asked or did not answer
      plainly (connection refused, timeout, 5xx, 429, an unreadable body). A look-up
      never places an order, whatever went wrong.

    The worker acts on "not found" only: a redemption that left the outstanding list is
    closed without an order, or an order is placed. "Unknown" always waits.
    """

    name: str

    def place_order(self, request: OrderRequest) -> OrderResult: ...

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        """The order placed under that key (found), None when the vendor says there is none
        (not found), or a VendorError when it could not be asked (unknown)."""
        ...

    def close(self) -> None: ...


class Cache(Protocol):
    """Small durable key-value store (kept in the ledger), for what must survive between
    ``--run-once`` runs: a vendor catalog fetched twice a day, webhook ids already seen."""

    def cache_get(self, key: str, now: datetime) -> str | None:
        """The value, or None when missing or expired."""
        ...

    def cache_put(self, key: str, value: str, expires_at: datetime | None) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ProductCheck:
    """What a vendor says about one ``[[rewards]]`` product at one amount."""

    product: str | None
    amount: Decimal
    currency: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class VendorCheck:
    """``reward-poller check`` for one vendor: credentials, products, balance."""

    vendor: str
    credentials_ok: bool
    products: tuple[ProductCheck, ...] = ()
    balance: str | None = None
    """Human-readable balance where the vendor exposes one, e.g. "1,250.00 USD"."""
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.credentials_ok and not self.problems and all(p.ok for p in self.products)


class CheckableVendor(Protocol):
    """Optional: a vendor that can check its credentials and catalog before ordering."""

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck: ...


@dataclass(frozen=True, kw_only=True)
class Changes:
    """Columns a transition may set alongside the state. ``None`` leaves a column as it is;
    use ``clear`` to set one back to NULL."""

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
        cols: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "idempotency_key", "vendor", "product", "amount", "currency",
                "vendor_order_id", "attempts", "next_attempt_at", "hold_reason",
                "last_error", "message", "ordered_at", "approved",
            )
            if getattr(self, name) is not None
        }
        for name in self.clear:
            cols[name] = None
        return cols


@dataclass(frozen=True, kw_only=True)
class SpendGuard:
    """Checked by ``Ledger.transition`` inside the same transaction as the move to
    ORDERING, so two workers cannot both squeeze under the limit."""

    currency: str
    amount: Decimal
    daily_limit: Decimal
    since: datetime
    """Start of the spending window (midnight UTC of the current day)."""


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
    """Durable record of every redemption and every transition.

    All times are timezone-aware UTC. Every method commits before it returns.

    The ``now`` each method takes is the caller's clock. A ledger shared by workers on
    several hosts (PostgreSQL) keeps time by one clock instead, the database server's:
    there ``now`` only anchors the times given relative to it (``next_attempt_at``, a
    lease's length), and the times it stores and compares are the server's.
    """

    def now(self, local: datetime) -> datetime:
        """The ledger's time: the clock the times it stores are on, so the one to compare
        them with (the database server's for a shared ledger; ``local``, the caller's
        clock, otherwise). One read per decision, not per row."""
        ...

    def start_poll(self, now: datetime) -> int: ...

    def finish_poll(
        self, poll_id: int, now: datetime, *, ok: bool, complete: bool, seen: int,
        error: str | None = None,
    ) -> None: ...

    def last_successful_poll(self) -> PollRecord | None: ...

    def record(self, poll_id: int, redemptions: Sequence[Redemption], now: datetime) -> int:
        """Insert the redemptions not yet in the ledger (state NEW, event "recorded") and
        mark every one of them as seen by ``poll_id``. Duplicates within the batch and
        redemptions already recorded are never inserted twice. Returns how many were new.
        Each redemption is stored whole beside its raw payload (``raw``): the entries read
        back carry it as ``LedgerEntry.redemption``, so nothing parses the payload again."""
        ...

    def due(self, now: datetime, limit: int) -> list[LedgerEntry]:
        """Active entries whose ``next_attempt_at`` has come and whose lease is free,
        oldest first."""
        ...

    def unseen_since(
        self, poll_id: int, states: frozenset[State], *, polls: int = 1
    ) -> list[LedgerEntry]:
        """Entries in ``states`` that neither the poll ``poll_id`` nor a later one saw.

        ``polls`` > 1 also asks for that many *complete* polls (finished with
        ``complete=True``, ids after the row's ``last_seen_poll``, up to ``poll_id``) that
        did not list the row: "gone" needs absence in several separate cycles, never one
        read. With ``polls`` <= 1 the poll ``poll_id`` alone decides."""
        ...

    def seen_since(self, poll_id: int, states: frozenset[State]) -> list[LedgerEntry]:
        """Entries in ``states`` that the poll ``poll_id`` (or a later one) listed: with the
        finished states, the discrepancies between the ledger and the outstanding list."""
        ...

    def claim(self, pk: int, owner: str, now: datetime, lease_seconds: float) -> LedgerEntry | None:
        """Take the lease on one row if it is free or expired (compare-and-swap); None if
        another worker holds it. Adds one to ``unfinished_steps`` (``release`` clears it):
        the returned entry counts this step."""
        ...

    def renew(self, pk: int, owner: str, now: datetime, lease_seconds: float) -> bool:
        """Extend a lease ``owner`` still holds (the heartbeat of a step waiting on a slow
        call) to ``now + lease_seconds``. False, changing nothing, when the lease is gone."""
        ...

    def release(self, pk: int, owner: str) -> None:
        """Give the lease back; the step finished, so ``unfinished_steps`` goes back to 0.
        Does nothing when another owner holds the row."""
        ...

    def claim_transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        lease_seconds: float, changes: Changes | None = None, *, expect: State,
        guard: SpendGuard | None = None,
    ) -> LedgerEntry | None:
        """``claim`` and ``transition`` in one transaction: take the lease (free, expired or
        already ours) on a row in state ``expect`` and move it to ``to_state``. None,
        changing nothing, when another worker holds the row, its state is no longer
        ``expect``, or there is no such row. Counts a step in ``unfinished_steps`` as
        ``claim`` does; raises as ``transition`` does otherwise."""
        ...

    def transition(
        self, pk: int, owner: str, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, expect: State | None = None,
        guard: SpendGuard | None = None, actor: str | None = None, release: bool = False,
    ) -> LedgerEntry:
        """Move a row we hold the lease on to ``to_state``, set ``changes`` and append an
        event, in one transaction. Raises LeaseLost if the lease is not ours (or the state
        is not ``expect``), IllegalTransition if the move is not allowed, and
        SpendLimitReached (changing nothing) if ``guard`` says the order would pass the
        daily limit. The event records ``actor`` (default: ``owner``) as who moved it.
        ``release`` gives the lease back in the same transaction (as ``release`` does):
        for the last write of a step."""
        ...

    def admin_transition(
        self, pk: int, to_state: State, detail: str, now: datetime,
        changes: Changes | None = None, *, actor: str | None = None,
    ) -> LedgerEntry:
        """A person's decision: take the lease as ``admin``, move the row, give the lease
        back. LookupError if there is no such row, LeaseLost if a worker holds it."""
        ...

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        """What was committed to vendor orders in ``currency`` since ``since``: amounts of
        rows with ``ordered_at >= since``, except those refused (the vendor took nothing)
        and those closed upstream without a vendor order."""
        ...

    def get(self, source: str, redemption_id: str) -> LedgerEntry | None: ...

    def get_pk(self, pk: int) -> LedgerEntry | None: ...

    def events(self, pk: int) -> list[Event]: ...

    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
        filters: Mapping[str, Any] | None = None,
    ) -> list[LedgerEntry]: ...

    def counts(self) -> dict[State, int]: ...

    def oldest_waiting(self) -> LedgerEntry | None:
        """The oldest entry not yet in a terminal state (active or held)."""
        ...

    def close(self) -> None: ...


class OrderBook(Protocol):
    """A vendor's own list of the orders placed with it: what the books audit reads.

    Built by ``poller.vendors.build_order_book``; a vendor that cannot list its orders
    raises ``NotAuditable`` there, once, instead of answering an empty list."""

    vendor: str

    def vendor_key(self, idempotency_key: str) -> str:
        """The id this vendor records for one of our idempotency keys (the key itself,
        unless the vendor's id has rules the key does not fit: Giftbit's campaign id)."""
        ...

    def is_ours(self, external_id: str | None) -> bool:
        """Whether an id in the vendor's list has the shape of one reward-poller sends."""
        ...

    def close(self) -> None: ...

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        """Every order created in [since, until), each page read once, within the vendor's
        rate limit. Raises the adapter's errors (``VendorUnreachable`` and the rest) as
        ``place_order`` does: an unreadable list is never an empty one."""
        ...

