"""Plain, frozen data: what the adapters hand to the core and back."""

from __future__ import annotations

import re
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


# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: in an e-mail address
# they can only be an injection (an extra header, a split CSV row, a terminal escape).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def email_problem(value: Any, who: str = "advocate") -> str | None:
    """Why the e-mail address ``value`` (as received, before any stripping) cannot be used,
    or None: the one check every source applies."""
    if isinstance(value, str) and value.strip():
        if _CONTROL.search(value):
            return f"{who} email address contains control characters (CR/LF or similar)"
        return None if "@" in value else f"{who} email address is malformed"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{who} email address is malformed"  # a number has no "@"
    return f"{who} has no email address"


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
    """One outstanding redemption, parsed tolerantly: one with ``problems`` (missing email,
    unreadable amount...) is recorded and held, never ordered."""

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
    """What to order. ``origin``: ``metadata`` or ``config:<rule>``."""

    vendor: str
    product: str | None
    amount: Decimal
    currency: str
    origin: str

    def describe(self) -> str:
        """``25.00 USD from tremendous (product AMZN-US, route config:reward_id=37)``; a
        vendor that takes no product (manual, an HTTP receiver) has none named."""
        product = f"product {self.product}, " if self.product else ""
        return f"{self.amount} {self.currency} from {self.vendor} ({product}route {self.origin})"


@dataclass(frozen=True, kw_only=True)
class OrderRequest:
    """Identical on every replay."""

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
    """COMPLETE: delivered, or nothing left for us to do; FAILED: nothing reached the
    advocate; NEEDS_PERSON: neither, in a way the worker may act on (Tango ``PARTIAL``, a
    bounced delivery): held with ``detail``."""

    COMPLETE = "complete"
    PENDING = "pending"
    FAILED = "failed"
    NEEDS_PERSON = "needs_person"


@dataclass(frozen=True, kw_only=True)
class OrderResult:
    """``delivery``: secret-free, for the advocate's message. ``link`` is a secret: never
    logged or stored unless the user asked for it."""

    vendor_order_id: str
    status: OrderStatus
    delivery: str = ""
    link: str | None = field(default=None, repr=False)
    detail: str = ""


class UnreadablePayload(ValueError):
    """A row recorded before the ledger kept the model, whose payload the migration could
    not read into a ``Redemption``. The message says why."""


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    """One ledger row. ``payload``: as the source sent it; ``redemption``: as its adapter
    read it when recorded (never parsed again), None when it could not be (``unreadable``
    says why). ``ordered_at``: the key saved (the spend guard counts it); ``approved``: past
    the spend guard by ``ledger approve``. ``unfinished_steps``: leases claimed and never
    released (the process died, or the lease ran out mid-step), bookkeeping of the leases
    and so left out of equality."""

    pk: int
    source: str
    redemption_id: str
    state: State
    payload: Mapping[str, Any]
    redemption: Redemption | None = None
    unreadable: str | None = None
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
    approved: bool = False
    unfinished_steps: int = field(default=0, compare=False)

    def parsed(self) -> Redemption:
        if self.redemption is None:
            raise UnreadablePayload(self.unreadable or "no redemption is stored with the payload")
        return self.redemption


@dataclass(frozen=True, kw_only=True)
class Event:
    """One line of a redemption's story. ``actor``: the worker's lease owner or the person
    behind an operator command (None for events older than the column)."""

    at: datetime
    from_state: State | None
    to_state: State
    detail: str
    actor: str | None = None


@dataclass(frozen=True, kw_only=True)
class PollResult:
    """What one poll read. ``complete`` is False when paging stopped early (page cap,
    repeated link, error): then nothing may be concluded from a redemption's absence.
    ``rejected``: items that could not be keyed, with why; ``streamed``: redemptions handed
    over page by page (``poll_pages``) instead of kept in ``redemptions``."""

    redemptions: tuple[Redemption, ...]
    complete: bool
    pages: int
    requests: int
    rejected: tuple[str, ...] = ()
    streamed: int = 0

    @property
    def seen(self) -> int:
        return len(self.redemptions) + self.streamed
