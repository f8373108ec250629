"""The per-vendor client-side rate limiter and its configuration."""

from __future__ import annotations

import itertools
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from poller.compose import VendorPool
from poller.config import Config
from poller.domain.errors import ConfigError
from poller.domain.model import OrderRequest, OrderStatus
from poller.vendors import available
from poller.vendors.fake import FakeVendor
from poller.vendors.ratelimit import RateLimitedVendor, TokenBucket, limited


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def request(key: str) -> OrderRequest:
    return OrderRequest(
        idempotency_key=key, redemption_id=key, source="influitive", vendor="fake",
        product="CARD25", amount=Decimal("25"), currency="USD", recipient_name="Ada",
        recipient_email="ada@example.com",
    )


def test_calls_are_spaced_evenly_at_the_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(10, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(25):
        bucket.acquire()
        starts.append(t.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert starts[0] == 1000.0  # the first call goes at once
    assert gaps == pytest.approx([0.1] * 24)
    # In any one-second window there are never more than 10 calls.
    assert max(sum(1 for s in starts if w <= s < w + 1.0) for w in starts) == 10


def test_a_waiter_woken_late_never_brings_the_next_call_closer_than_the_interval() -> None:
    """A busy machine wakes sleepers late, by different amounts: the next call is timed from
    when this one was actually made, so no two calls are less than 1/rate apart."""
    t = FakeTime()
    late = itertools.cycle([0.04, 0.0, 0.07, 0.0, 0.01])

    def oversleep(seconds: float) -> None:
        t.sleep(seconds + next(late))

    bucket = TokenBucket(10, clock=t.clock, sleep=oversleep)
    starts = []
    for _ in range(30):
        bucket.acquire()
        starts.append(t.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.1 - 1e-9
    assert max(sum(1 for s in starts if w <= s < w + 1.0) for w in starts) <= 10


def test_an_idle_bucket_saves_up_to_burst_tokens_only() -> None:
    t = FakeTime()
    bucket = TokenBucket(2, burst=3, clock=t.clock, sleep=t.sleep)
    t.now += 60  # idle for a minute: still only 3 tokens
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.5, 1.0])


def test_waiting_callers_are_served_in_order_from_many_threads() -> None:
    bucket = TokenBucket(200)  # real clock: 5 ms apart
    starts: list[float] = []
    lock = threading.Lock()

    def call() -> None:
        for _ in range(10):
            bucket.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(4)]
    began = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - began
    assert len(starts) == 40
    # 40 tokens at 200/s: the first is free, the other 39 take 5 ms each.
    assert elapsed >= 39 / 200 - 0.01


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(1, burst=0)


def test_the_wrapper_takes_a_token_for_every_vendor_call() -> None:
    t = FakeTime()
    inner = FakeVendor("fake")
    vendor = RateLimitedVendor(inner, TokenBucket(4, clock=t.clock, sleep=t.sleep))
    assert vendor.name == "fake"
    assert vendor.place_order(request("k1")).status is OrderStatus.COMPLETE
    assert vendor.lookup("k1") is not None
    assert vendor.place_order(request("k1")).vendor_order_id == inner.order("k1").vendor_order_id  # type: ignore[union-attr]
    assert t.slept == pytest.approx([0.25, 0.25])
    assert inner.created["k1"] == 1
    # What the Protocol does not name goes to the vendor untouched.
    assert vendor.order_count == 1
    assert not hasattr(vendor, "check")
    vendor.close()
    assert inner.closed


def test_limited_leaves_an_unlimited_vendor_alone() -> None:
    inner = FakeVendor("fake")
    assert limited(inner, None) is inner
    assert limited(inner, 0) is inner
    wrapped = limited(inner, 5)
    assert isinstance(wrapped, RateLimitedVendor) and wrapped.bucket.rate == 5


def test_ratelimit_is_not_a_vendor() -> None:
    assert "ratelimit" not in available()
    assert "tremendous" in available()


def config(**tremendous: Any) -> Config:
    section = {"api_key": "k", "base_url": "http://127.0.0.1:9/api/v2", **tremendous}
    return Config(influitive={"api_token": "t", "org_id": "o"},
                  vendors={"tremendous": section})


def test_rate_limit_per_second_is_read_once_and_not_shown_to_the_vendor_settings() -> None:
    cfg = config(rate_limit_per_second=3.5)
    assert cfg.vendor_rate_limit("tremendous") == 3.5
    settings = cfg.vendor_settings("tremendous")
    assert settings is not None and "rate_limit_per_second" not in settings.model_dump()


def test_documented_defaults_apply_when_the_key_is_absent() -> None:
    assert config().vendor_rate_limit("tremendous") == 2
    assert config(rate_limit_per_second=0).vendor_rate_limit("tremendous") is None


def test_a_bad_rate_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"vendors\.tremendous\.rate_limit_per_second"):
        config(rate_limit_per_second=-1)
    with pytest.raises(ConfigError, match=r"vendors\.tremendous\.rate_limit_per_second"):
        config(rate_limit_per_second="fast")


def test_an_unknown_key_is_still_refused() -> None:
    with pytest.raises(ConfigError, match=r"vendors\.tremendous\.rate_limt_per_second"):
        config(rate_limt_per_second=3)


def test_the_rate_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARD_POLLER_VENDORS__TREMENDOUS__RATE_LIMIT_PER_SECOND", "2")
    assert config().vendor_rate_limit("tremendous") == 2


def test_concurrency_defaults_to_4_and_is_bounded() -> None:
    assert config().schedule.concurrency == 4
    with pytest.raises(ValidationError, match=r"schedule\.concurrency"):
        Config(influitive={"api_token": "t", "org_id": "o"}, schedule={"concurrency": 0})


def test_the_pool_builds_each_vendor_behind_its_limiter() -> None:
    pool = VendorPool(config(rate_limit_per_second=7))
    try:
        vendor = pool("tremendous")
        assert isinstance(vendor, RateLimitedVendor)
        assert vendor.bucket.rate == 7 and vendor.name == "tremendous"
        assert pool("tremendous") is vendor
    finally:
        pool.close()


def test_headroom_spaces_calls_a_little_wider_than_the_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(10, headroom=0.05, clock=t.clock, sleep=t.sleep)
    waits = [bucket.reserve() for _ in range(3)]
    assert waits == pytest.approx([0, 1 / 9.5, 2 / 9.5])
    assert bucket.rate == 10
    with pytest.raises(ValueError):
        TokenBucket(10, headroom=1)
