"""A look-up never places an order: every adapter, under every answer its stand-in can give.

The worker looks an order up by key after an unknown outcome, when a redemption left
Influitive's list, and for every operator command; an order placed by a look-up is one
nobody decided to place (a redemption an admin refused would be sent anyway). So, for each
of the five adapters (the HTTP vendor with and without its optional look-up route), the
look-up is asked while its stand-in answers found, not found, a timeout, a 5xx, or refuses
the connection, and it must issue no create:

* the adapter's own transport records every request it sends: no POST (every create of
  every vendor is a POST; every look-up a GET);
* the stand-in's own records show no create request and no new order;
* the adapter's ``place_order`` is never called from inside ``lookup``.

The answers before the failing ones come after a send whose answer was lost (the moment a
look-up matters most). The manual vendor does no I/O: it has one answer, checked the same
way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from poller.domain.errors import LookupUnavailable, UnknownOutcome, VendorError
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.ports import Vendor
from poller.sandbox import http_receiver
from poller.sandbox.server import free_port
from poller.sandbox.tremendous import API_PREFIX
from poller.transport import RetryPolicy
from poller.vendors.giftbit import GiftbitVendor
from poller.vendors.http import HttpVendor
from poller.vendors.manual import ManualVendor
from poller.vendors.tango import TangoVendor
from poller.vendors.tremendous import TremendousVendor

from .support import (
    FAST,
    DictCache,
    Standin,
    giftbit_standin,
    make_request,
    receiver_standin,
    tango_standin,
)

ANSWERS = ("found", "not_found", "timeout", "5xx", "connection_refused")
SLOW = RetryPolicy(attempts=1, initial_wait=0.001, max_wait=0.002, timeout=0.2)
STANDIN_DELAY = 0.6
"""Longer than ``SLOW.timeout``: the look-up times out."""


class Recording(httpx.BaseTransport):
    """The real transport, with every request's method written down first (a refused
    connection or a timeout still counts: the request was attempted)."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.methods: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.methods.append(request.method)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _dead() -> str:
    return f"http://127.0.0.1:{free_port()}"


@dataclass
class Subject:
    """One adapter on its stand-in: ``make(base, policy, transport)`` builds it (``base``:
    the stand-in's origin, or a dead one), ``standin_posts`` counts the create requests
    the stand-in received and ``created`` the orders it holds."""

    make: Callable[[str, RetryPolicy, httpx.BaseTransport | None], Vendor]
    origin: str
    state: Any
    request: OrderRequest
    standin_posts: Callable[[], int]
    created: Callable[[], int]
    closers: list[Callable[[], None]] = field(default_factory=list)

    def vendor(self, *, base: str | None = None, policy: RetryPolicy = FAST,
               transport: httpx.BaseTransport | None = None) -> Vendor:
        made = self.make(base or self.origin, policy, transport)
        self.closers.append(made.close)
        return made


def _tally(state: Any) -> tuple[Callable[[], int], Callable[[], int]]:
    return (lambda: len(state.received),
            lambda: sum(c["created"] for c in state.counts().values()))


def tremendous(standin: Standin) -> Subject:
    def make(base: str, policy: RetryPolicy,
             transport: httpx.BaseTransport | None) -> Vendor:
        return TremendousVendor(base + API_PREFIX, standin.api_key, policy=policy,
                                transport=transport, sleep=lambda _s: None)

    posts, created = _tally(standin.state)
    return Subject(make, standin.url, standin.state, make_request("never-t"), posts, created)


def tango(_standin: Standin) -> Subject:
    standin = tango_standin()

    def make(base: str, policy: RetryPolicy,
             transport: httpx.BaseTransport | None) -> Vendor:
        return TangoVendor(base + "/raas/v2", standin.platform_name, standin.platform_key,
                           standin.customer, standin.account, policy=policy,
                           transport=transport, sleep=lambda _s: None,
                           min_order_interval=0.0)

    posts, created = _tally(standin.state)
    return Subject(make, standin.url, standin.state,
                   make_request("never-tc", vendor="tango", product="U561593"), posts, created)


def giftbit(_standin: Standin) -> Subject:
    standin = giftbit_standin()

    def make(base: str, policy: RetryPolicy,
             transport: httpx.BaseTransport | None) -> Vendor:
        return GiftbitVendor(base + "/papi/v1", standin.api_key, policy=policy,
                             transport=transport, sleep=lambda _s: None)

    posts, created = _tally(standin.state)
    return Subject(make, standin.url, standin.state,
                   make_request("never-g", vendor="giftbit", product="amazonus"), posts, created)


def _http(route: bool) -> Callable[[Standin], Subject]:
    def subject(_standin: Standin) -> Subject:
        receiver = receiver_standin()
        cache = DictCache()  # what was sent survives a new instance, as in the ledger

        def make(base: str, policy: RetryPolicy,
                 transport: httpx.BaseTransport | None) -> Vendor:
            lookup_url = base + http_receiver.LOOKUP_PATH if route else None
            return HttpVendor(base + http_receiver.HOOK_PATH, receiver.secret, policy=policy,
                              transport=transport, sleep=lambda _s: None, cache=cache,
                              lookup_url=lookup_url)

        state = receiver.state
        return Subject(make, receiver.url, state, make_request("never-h", vendor="http"),
                       state.posts,
                       lambda: sum(c["created"] for c in state.counts().values()))

    return subject


SUBJECTS: dict[str, Callable[[Standin], Subject]] = {
    "tremendous": tremendous,
    "tango": tango,
    "giftbit": giftbit,
    "http-with-lookup-route": _http(route=True),
    "http-without-lookup-route": _http(route=False),
}


@pytest.fixture(params=sorted(SUBJECTS))
def subject(request: pytest.FixtureRequest, standin: Standin) -> Iterator[Subject]:
    made = SUBJECTS[request.param](standin)
    yield made
    for close in made.closers:
        close()


def _spied(vendor: Vendor) -> list[OrderRequest]:
    """Replace the instance's ``place_order`` by one that only records its calls."""
    calls: list[OrderRequest] = []

    def place_order(request: OrderRequest) -> OrderResult:
        calls.append(request)
        raise AssertionError("lookup called place_order")

    vendor.place_order = place_order  # type: ignore[method-assign]
    return calls


def _arrange(subject: Subject, answer: str) -> tuple[str | None, RetryPolicy]:
    """Bring the stand-in to ``answer``; the origin and policy the look-up meets it with."""
    request = subject.request
    placer = subject.vendor()
    if answer == "found":
        placer.place_order(request)
        return None, FAST
    if answer == "not_found":
        return None, FAST
    # A send whose answer was lost first: the look-up is what would settle it.
    subject.state.lose_answers(FAST.attempts)
    with pytest.raises(UnknownOutcome):
        placer.place_order(request)
    if answer == "timeout":
        subject.state.set_delay(STANDIN_DELAY)
        return None, SLOW
    if answer == "5xx":
        subject.state.fail(503, None)
        return None, FAST
    assert answer == "connection_refused"
    return _dead(), FAST


@pytest.mark.parametrize("answer", ANSWERS)
def test_a_lookup_issues_no_create(subject: Subject, answer: str) -> None:
    base, policy = _arrange(subject, answer)
    transport = Recording()
    looker = subject.vendor(base=base, policy=policy, transport=transport)
    calls = _spied(looker)
    posts, created = subject.standin_posts(), subject.created()
    try:
        outcome: object = looker.lookup(subject.request.idempotency_key)
    except VendorError as exc:
        outcome = exc
    finally:
        subject.state.set_delay(0)
    assert "POST" not in transport.methods, transport.methods
    assert calls == []
    assert subject.standin_posts() == posts
    assert subject.created() == created
    # What it said is one of the three answers, never "not found" after a failure.
    if answer == "found":
        assert isinstance(outcome, OrderResult | LookupUnavailable)
    elif answer == "not_found":
        assert outcome is None
    else:
        assert isinstance(outcome, VendorError)


@pytest.mark.parametrize("answer", ["found"])
def test_the_manual_vendor_looks_up_without_ordering(answer: str) -> None:
    vendor = ManualVendor()
    calls = _spied(vendor)
    found = vendor.lookup(make_request("never-m", vendor="manual").idempotency_key)
    assert found is not None and found.status is OrderStatus.PENDING
    assert calls == []
