"""Client-side rate limiting per vendor: a token bucket in front of the ``Vendor`` Protocol,
so a vendor is never asked faster than ``rate_limit_per_second`` from its section (each 429
would cost a retry with backoff).

The bucket spaces calls evenly (a burst of one by default): a vendor counting requests in
its own one-second windows, with network jitter on top, then never sees more than its limit
in any window, which a bucket allowing a full second's burst at once cannot promise. No
library is used: the common ones either allow the burst (a sliding-window log) or are
asyncio-only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from poller.domain.model import OrderRequest, OrderResult
from poller.ports import Vendor

DEFAULT_RATE_LIMITS: Mapping[str, float] = {
    # Tremendous documents its limit both as "10 requests per second" and as "60 requests
    # per 30 seconds": the lower one holds whichever the account is under (docs/vendors.md).
    "tremendous": 2.0,
    "tango": 1.0,  # Tango Card RaaS: 1 request per second on every endpoint
}

HEADROOM = 0.08
"""Calls are spaced this much wider than 1/rate. The vendor counts requests in its own
one-second windows, on its own clock, after network and scheduling jitter: with calls
exactly 1/rate apart, one earlier call arriving a millisecond late puts the next window's
first call inside the previous window, a 429, and the HTTP layer's retry of it is a request
no limiter sees. BENCHMARKS.md's drain figure runs each vendor stand-in at its configured
rate and counts the 429s."""


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. Thread-safe.

    Implemented as GCRA (the "virtual scheduling" form of a token bucket): one number, the
    time the next token is due. ``acquire`` reserves a token under the lock and sleeps
    outside it, so waiting threads queue in order and never busy-wait.
    """

    def __init__(
        self, rate: float, burst: int = 1, *, headroom: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {headroom}")
        self.rate = float(rate)  # tokens come at rate * (1 - headroom) a second
        self.burst = burst
        self._interval = 1.0 / (self.rate * (1.0 - headroom))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._turn = threading.Lock()
        self._tat = clock()  # theoretical arrival time: when the bucket is full again

    def reserve(self) -> float:
        """Take the next token; returns how long to wait before using it (0: now)."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            self._tat = tat + self._interval
            return max(0.0, tat - (self.burst - 1) * self._interval - now)

    def acquire(self) -> float:
        """Wait for a token; returns the seconds waited.

        Waiters take their turn one at a time, and with ``burst`` 1 the next token is due one
        interval after this one is actually used: on a busy machine a waiter woken late
        would otherwise send right before the next one, sent on time, and two calls less than
        an interval apart can put one over the vendor's limit in its one-second window (a
        429). Measured in BENCHMARKS.md's drain figure, with every core busy."""
        with self._turn:
            wait = self.reserve()
            if wait > 0:
                self._sleep(wait)
            if self.burst == 1:
                used = self._clock()
                with self._lock:
                    self._tat = max(self._tat, used + self._interval)
        return wait


class RateLimitedVendor:
    """A ``Vendor`` whose every call (``place_order``, ``lookup``) first takes a token;
    anything else goes to the vendor as is (``hasattr`` answers what the vendor answers)."""

    def __init__(self, vendor: Vendor, bucket: TokenBucket) -> None:
        self._vendor = vendor
        self.bucket = bucket
        self.name = vendor.name

    def __repr__(self) -> str:
        return f"RateLimitedVendor({self._vendor!r}, {self.bucket.rate:g}/s)"

    def place_order(self, request: OrderRequest) -> OrderResult:
        self.bucket.acquire()
        return self._vendor.place_order(request)

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        self.bucket.acquire()
        return self._vendor.lookup(idempotency_key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vendor, name)


def limited(vendor: Vendor, rate_per_second: float | None) -> Vendor:
    """``vendor`` behind a token bucket at ``rate_per_second`` (less ``HEADROOM``); as it is
    for None or 0."""
    if not rate_per_second:
        return vendor
    return RateLimitedVendor(vendor, TokenBucket(rate_per_second, headroom=HEADROOM))


def list_bucket(name: str, rate_per_second: float | None) -> TokenBucket | None:
    """The token bucket an order book takes a token from before each page it asks for:
    ``rate_per_second`` (less ``HEADROOM``), or the vendor's documented default when None;
    None (no limit) when neither gives one."""
    rate = DEFAULT_RATE_LIMITS.get(name) if rate_per_second is None else rate_per_second
    return TokenBucket(rate, headroom=HEADROOM) if rate else None
