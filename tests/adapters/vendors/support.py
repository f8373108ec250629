"""Shared by the vendor tests: the stand-in handles, a fast retry policy, request builders.

The Tango, Giftbit and HTTP-receiver stand-ins are served once per test process, started on
first use (``tango_standin()`` and friends reset them each time they are handed out), so
any test module or conformance factory can use them without fixtures from a conftest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from poller.domain.keys import idempotency_key
from poller.domain.model import OrderRequest, Shipping
from poller.sandbox import giftbit as giftbit_standin_module
from poller.sandbox import http_receiver
from poller.sandbox import tango as tango_standin_module
from poller.sandbox.server import ServerThread
from poller.sandbox.tremendous import TremendousState
from poller.transport import RetryPolicy

STANDIN_KEY = "tk_standin_4b1d7e0c9a2f58e3"
TANGO_KEY = "tango_platform_key_standin_93c1f0a7"
GIFTBIT_KEY = "gb_standin_token_5e8d2b6c4a19"
HTTP_SECRET = "whsec_standin_7f3e9a1c5b2d8e40"
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


@dataclass
class TangoStandin:
    url: str
    base_url: str
    state: tango_standin_module.TangoState
    platform_name: str = tango_standin_module.PLATFORM_NAME
    platform_key: str = TANGO_KEY
    customer: str = tango_standin_module.CUSTOMER
    account: str = tango_standin_module.ACCOUNT


@dataclass
class GiftbitStandin:
    url: str
    base_url: str
    state: giftbit_standin_module.GiftbitState
    api_key: str = GIFTBIT_KEY


@dataclass
class ReceiverStandin:
    url: str
    hook_url: str
    """What ``[vendors.http] url`` is set to."""
    state: http_receiver.ReceiverState
    secret: str = HTTP_SECRET


_SERVED: dict[str, tuple[str, Any]] = {}
_SERVERS: list[ServerThread] = []
_LOCK = threading.Lock()


def _serve(name: str, state: Any, app: Any) -> tuple[str, Any]:
    with _LOCK:
        if name not in _SERVED:
            server = ServerThread(app)
            _SERVED[name] = (server.start(), state)
            _SERVERS.append(server)
        url, served = _SERVED[name]
    served.reset()
    return url, served


def tango_standin() -> TangoStandin:
    state = tango_standin_module.TangoState()
    url, state = _serve("tango", state,
                        tango_standin_module.create_app(state, platform_key=TANGO_KEY))
    return TangoStandin(url=url, base_url=url + tango_standin_module.API_PREFIX, state=state)


def giftbit_standin() -> GiftbitStandin:
    state = giftbit_standin_module.GiftbitState()
    url, state = _serve("giftbit", state,
                        giftbit_standin_module.create_app(state, api_key=GIFTBIT_KEY))
    return GiftbitStandin(url=url, base_url=url + giftbit_standin_module.API_PREFIX,
                          state=state)


def receiver_standin() -> ReceiverStandin:
    state = http_receiver.ReceiverState(secret=HTTP_SECRET)
    url, state = _serve("receiver", state, http_receiver.create_app(state))
    return ReceiverStandin(url=url, hook_url=url + http_receiver.HOOK_PATH, state=state)


@dataclass
class DictCache:
    """An in-memory ``Cache`` that counts its reads and writes."""

    values: dict[str, tuple[str, datetime | None]] = field(default_factory=dict)
    gets: int = 0
    puts: int = 0

    def cache_get(self, key: str, now: datetime) -> str | None:
        self.gets += 1
        found = self.values.get(key)
        if found is None or (found[1] is not None and found[1] <= now):
            return None
        return found[0]

    def cache_put(self, key: str, value: str, expires_at: datetime | None) -> None:
        self.puts += 1
        self.values[key] = (value, expires_at)


def make_request(
    redemption_id: str = "r-1", *, key: str | None = None, product: str | None = "AMZN-US",
    email: str = "alice@example.com", amount: str = "25", currency: str = "USD",
    name: str = "Alice Example", vendor: str = "tremendous", shipping: Shipping | None = None,
    reward_name: str | None = "$25 gift card",
) -> OrderRequest:
    return OrderRequest(
        idempotency_key=key or idempotency_key(
            namespace="test-org", source="influitive", redemption_id=redemption_id,
        ),
        redemption_id=redemption_id,
        source="influitive",
        vendor=vendor,
        product=product,
        amount=Decimal(amount),
        currency=currency,
        recipient_name=name,
        recipient_email=email,
        reward_name=reward_name,
        shipping=shipping,
    )
