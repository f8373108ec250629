"""Plain, frozen data: what the adapters hand to the core and back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from poller.domain.states import State

INFLUITIVE = "influitive"


@dataclass(frozen=True, kw_only=True)
class Contact:
    """The advocate who redeemed."""

    id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        joined = " ".join(p for p in (self.first_name, self.last_name) if p)
        return joined or (self.email or "")


@dataclass(frozen=True, kw_only=True)
class Shipping:
    address: str | None = None
    address_2: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    phone_number: str | None = None


@dataclass(frozen=True, kw_only=True)
class Redemption:
    """One outstanding redemption, as read from the source and parsed tolerantly.

    ``problems`` lists what is wrong with the payload (missing email, unreadable amount...):
    a redemption with problems is recorded and held, never ordered.
    """

    source: str = INFLUITIVE
    id: str
    reward_id: str | None = None
    reward_name: str | None = None
    contact: Contact = field(default_factory=Contact)
    shipping: Shipping | None = None
    points: int | None = None
    quantity: int = 1
    created_at: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Route:
    """What to order for a redemption."""

    vendor: str
    product: str | None
    amount: Decimal
    currency: str
    origin: str
    """Where the route came from: ``metadata`` or ``config:<rule>``."""

    def describe(self) -> str:
        """``25.00 USD from tremendous (product AMZN-US, route config:reward_id=37)``; a
        vendor that takes no product (manual, an HTTP receiver) has none named."""
        product = f"product {self.product}, " if self.product else ""
        return f"{self.amount} {self.currency} from {self.vendor} ({product}route {self.origin})"


@dataclass(frozen=True, kw_only=True)
class OrderRequest:
    """Everything a vendor needs to place one order. Identical on every replay."""

    idempotency_key: str
    redemption_id: str
    source: str
    vendor: str
    product: str | None
    amount: Decimal
    currency: str
    recipient_name: str
    recipient_email: str
    reward_name: str | None = None
    shipping: Shipping | None = None


class OrderStatus(StrEnum):
    COMPLETE = "complete"
    """Placed and delivered (or delivery under way with nothing left for us to do)."""
    PENDING = "pending"
    """Accepted, not final: ask again later."""
    FAILED = "failed"
    """The vendor gave up on it (failed, cancelled): nothing reached the advocate."""
    NEEDS_PERSON = "needs_person"
    """Placed, but neither delivered nor failed in a way the worker may act on (Tango
    ``PARTIAL``, a delivery that bounced): held for a person with ``detail``."""


@dataclass(frozen=True, kw_only=True)
class OrderResult:
    """The vendor's answer about one order. ``link`` is a secret: never logged or stored
    unless the user asked for it."""

    vendor_order_id: str
    status: OrderStatus
    delivery: str = ""
    """A short, secret-free description of the delivery, for the advocate's message."""
    link: str | None = field(default=None, repr=False)
    detail: str = ""


class UnreadablePayload(ValueError):
    """A ledger row holds no ``Redemption``: its payload could not be read into one when it
    was stored (a row recorded before the ledger kept the model, whose payload the
    migration that added it could not read). The message says why."""


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    """One ledger row, as the core sees it."""

    pk: int
    source: str
    redemption_id: str
    state: State
    payload: Mapping[str, Any]
    """The redemption exactly as the source sent it (``redemption.raw``)."""
    redemption: Redemption | None = None
    """The redemption as the source's adapter read it when it was recorded, stored beside
    the payload: the steps read this and never parse the payload again. None when the
    payload could not be read (``unreadable`` says why)."""
    unreadable: str | None = None
    """Why ``redemption`` is None; None when it is there."""
    reward_id: str | None = None
    reward_name: str | None = None
    email: str | None = None
    vendor: str | None = None
    product: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    idempotency_key: str | None = None
    vendor_order_id: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    hold_reason: str | None = None
    last_error: str | None = None
    message: str | None = None
    created_at: datetime
    updated_at: datetime
    last_seen_poll: int | None = None
    ordered_at: datetime | None = None
    """When the order was first committed to (the key saved): the spend guard counts it."""
    approved: bool = False
    """A person approved this one past the spend guard (``ledger approve``)."""
    unfinished_steps: int = field(default=0, compare=False)
    """Steps on this row that were started (lease claimed) and never finished: the process
    died, or the lease ran out mid-step. Back to 0 when a step finishes. Bookkeeping of the
    leases, not of the redemption: left out of equality."""

    def parsed(self) -> Redemption:
        """The stored redemption, or UnreadablePayload naming why there is none."""
        if self.redemption is None:
            raise UnreadablePayload(self.unreadable or "no redemption is stored with the payload")
        return self.redemption


@dataclass(frozen=True, kw_only=True)
class Event:
    """One line of a redemption's story."""

    at: datetime
    from_state: State | None
    to_state: State
    detail: str
    actor: str | None = None
    """Who made the move: the worker's lease owner, or the person behind an operator
    command. None for events older than the column."""


@dataclass(frozen=True, kw_only=True)
class PollResult:
    """What one poll read. ``complete`` is False when paging stopped early (page cap,
    repeated link, error): then nothing may be concluded from a redemption's absence."""

    redemptions: tuple[Redemption, ...]
    complete: bool
    pages: int
    requests: int
    rejected: tuple[str, ...] = ()
    """Items that could not be keyed (no id), with the reason; logged, never ordered."""
    streamed: int = 0
    """Redemptions handed to the reader page by page as they were read
    (``poll_pages``) instead of kept in ``redemptions``."""

    @property
    def seen(self) -> int:
        """Redemptions this poll listed (each once)."""
        return len(self.redemptions) + self.streamed
