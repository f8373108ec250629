"""``[vendors.http] url`` may carry credentials (``https://user:pass@host/...``) or be a
secret itself (a catch hook's path): only ``scheme://host[:port]`` ever shows, in messages,
exceptions, log lines, ``check`` and the ledger; the advocate's delivery text never names
our URL at all."""

from __future__ import annotations

import traceback
from collections.abc import Iterator, MutableMapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from structlog.testing import capture_logs

from poller.domain.errors import VendorError
from poller.domain.model import OrderResult
from poller.sandbox.server import free_port
from poller.transport import RetryPolicy
from poller.vendors.http import HttpVendor

from .support import FAST, ReceiverStandin, make_request, receiver_standin

USER, PASSWORD = "hookuser", "hookp4ss-9f2c"
SECRET_PARTS = (USER, PASSWORD, "/hooks/orders", "hooks/orders")


def secret_url(receiver: ReceiverStandin) -> str:
    parts = urlsplit(receiver.hook_url)
    return f"{parts.scheme}://{USER}:{PASSWORD}@{parts.netloc}{parts.path}"


def _assert_clean(text: str) -> None:
    for part in SECRET_PARTS:
        assert part not in text, f"{part!r} leaked into {text!r}"


def _rendered(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def test_the_receiver_still_gets_the_request(receiver: ReceiverStandin) -> None:
    vendor = HttpVendor(secret_url(receiver), receiver.secret, policy=FAST)
    try:
        result = vendor.place_order(make_request("u-ok", vendor="http"))
    finally:
        vendor.close()
    assert result.status.value == "complete"
    assert receiver.state.created_for(make_request("u-ok", vendor="http").idempotency_key) == 1


def test_results_errors_logs_and_repr_name_only_the_origin(
    receiver: ReceiverStandin, logs: list[MutableMapping[str, Any]],
) -> None:
    url = secret_url(receiver)
    origin = f"http://{urlsplit(url).hostname}:{urlsplit(url).port}"
    vendor = HttpVendor(url, receiver.secret, policy=FAST, sleep=lambda _s: None)
    short = HttpVendor(url, receiver.secret, policy=RetryPolicy(attempts=1, timeout=0.2),
                       sleep=lambda _s: None)
    dead = HttpVendor(f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/hooks/orders",
                      receiver.secret, policy=FAST, sleep=lambda _s: None)
    wrong = HttpVendor(url, "another-secret-entirely-000", policy=FAST, sleep=lambda _s: None)
    state = receiver.state
    results: list[OrderResult] = []
    errors: list[VendorError] = []

    def attempt(vendor_: HttpVendor, rid: str, **kw: Any) -> None:
        try:
            results.append(vendor_.place_order(make_request(rid, vendor="http", **kw)))
        except VendorError as exc:
            errors.append(exc)
        finally:
            state.clear_faults()
            state.reset()

    attempt(vendor, "u-accepted")
    attempt(vendor, "u-pending", product="PENDING")
    attempt(vendor, "u-refused", product="UNAVAILABLE")
    state.fail(503, None)
    attempt(vendor, "u-503")
    state.fail(404, None)
    attempt(vendor, "u-404")
    attempt(wrong, "u-401")
    state.lose_answers(FAST.attempts)
    attempt(vendor, "u-lost")
    state.lose_answers(1, mode="hang", hang_seconds=2)
    attempt(short, "u-hang")
    state.garbage(1)
    attempt(vendor, "u-garbage")
    attempt(dead, "u-dead")
    check = dead.check([("X", Decimal("25"), "USD")])
    for made in (vendor, short, dead, wrong):
        _assert_clean(repr(made))
        made.close()

    assert len(results) == 2 and len(errors) == 8
    for result in results:
        _assert_clean(f"{result.delivery} {result.detail} {result.vendor_order_id}")
        assert "127.0.0.1" not in result.delivery  # the advocate never sees our host
    for error in errors:
        _assert_clean(_rendered(error))
        if "refused the order" not in str(error):
            assert "http://127.0.0.1:" in str(error)
    assert any(origin in str(e) for e in errors)
    _assert_clean(" ".join(str(p) for p in check.problems))
    _assert_clean(" ".join(p.detail for p in check.products))
    assert not check.credentials_ok
    _assert_clean(repr(logs))
    assert logs  # the failures were logged


@pytest.fixture
def receiver() -> ReceiverStandin:
    return receiver_standin()
