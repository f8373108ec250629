"""An order as a vendor's own order list shows it: what the books audit reads.

Amounts are in minor units of their currency (the ledger's money is Decimal; the audit
compares after converting with ``poller.domain.money``). A field a vendor's list does not
document is None, and the audit matches on what is there (docs/audit.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class OrderStatus(enum.Enum):
    """The vendor's status, folded into what the audit needs to know."""

    COMPLETE = "complete"
    """Delivered, or accepted and not failed (money spent)."""
    PENDING = "pending"
    """Placed, not yet delivered or approved."""
    CANCELLED = "cancelled"
    """Cancelled, rejected or refunded at the vendor: no money spent."""
    FAILED = "failed"
    """Failed at the vendor."""
    UNKNOWN = "unknown"
    """A status the vendor's documentation does not list: shown as it came, never guessed."""


@dataclass(frozen=True, kw_only=True)
class VendorOrder:
    vendor: str
    order_id: str
    """The vendor's own id for the order."""
    external_id: str | None
    """Our idempotency key as the vendor recorded it (None: the vendor keeps none)."""
    created_at: datetime
    status: OrderStatus
    raw_status: str
    """The vendor's own word for the status, for the report."""
    amount_minor: int | None = None
    currency: str | None = None
    product: str | None = None
    recipient: str | None = None
    """The recipient's email address, as the vendor has it."""
