"""Shared by the vendor tests: the stand-in handle, a fast retry policy, request builder."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from poller.core.keys import idempotency_key
from poller.core.model import OrderRequest
from poller.standins.tremendous import TremendousState
from poller.transport import RetryPolicy

STANDIN_KEY = "tk_standin_4b1d7e0c9a2f58e3"
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.002, max_retry_after=30.0,
                   timeout=2.0)


@dataclass
class Standin:
    url: str
    """The server's root (admin API under ``/_standin``)."""
    base_url: str
    """What the adapter is configured with (``<url>/api/v2``)."""
    state: TremendousState
    api_key: str


def make_request(
    redemption_id: str = "r-1", *, key: str | None = None, product: str | None = "AMZN-US",
    email: str = "alice@example.com", amount: str = "25", currency: str = "USD",
    name: str = "Alice Example",
) -> OrderRequest:
    return OrderRequest(
        idempotency_key=key or idempotency_key(
            namespace="test-org", source="influitive", redemption_id=redemption_id,
        ),
        redemption_id=redemption_id,
        source="influitive",
        vendor="tremendous",
        product=product,
        amount=Decimal(amount),
        currency=currency,
        recipient_name=name,
        recipient_email=email,
        reward_name="$25 gift card",
    )
