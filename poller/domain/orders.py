"""An order as a vendor's own order list shows it: what the books audit reads.

Amounts are in minor units of their currency (the ledger's money is Decimal; the audit
compares after converting with ``poller.domain.money``). A field a vendor's list does not
document is None, and the audit matches on what is there (docs/audit.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class OrderStatus(enum.Enum):
    """The vendor's status, folded: COMPLETE spent money, CANCELLED (or rejected, refunded)
    did not; UNKNOWN: one the vendor's documentation does not list, never guessed."""

    COMPLETE = "complete"
    PENDING = "pending"
    CANCELLED = "cancelled"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class VendorOrder:
    """``external_id``: our key as the vendor recorded it (None: it keeps none);
    ``raw_status``: the vendor's own word; ``recipient``: the email the vendor has."""

    vendor: str
    order_id: str
    external_id: str | None
    created_at: datetime
    status: OrderStatus
    raw_status: str
    amount_minor: int | None = None
    currency: str | None = None
    product: str | None = None
    recipient: str | None = None
