"""The API key and reward links never reach an exception message, a repr or a log line."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from poller.domain.errors import VendorError
from poller.domain.model import OrderRequest
from poller.sandbox.server import free_port
from poller.sandbox.tremendous import LINK_BASE
from poller.vendors.fake import FakeVendor
from poller.vendors.tremendous import TremendousVendor

from .support import FAST, Standin, make_request

EVIL_LINK = "https://rewards.evil.invalid/payout/s3cr3t-t0ken"


def _rendered(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
    assert LINK_BASE not in text
    assert EVIL_LINK not in text
    assert "s3cr3t" not in text


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def _errors_from_standin(standin: Standin, make_vendor: Callable[..., TremendousVendor],
                         ) -> list[VendorError]:
    vendor = make_vendor()
    state = standin.state
    errors: list[VendorError] = []

    def attempt(call: Callable[[], object]) -> None:
        try:
            call()
        except VendorError as exc:
            errors.append(exc)
        finally:
            state.clear_faults()

    def place(request: OrderRequest, v: TremendousVendor = vendor) -> Callable[[], object]:
        return lambda: v.place_order(request)

    placed = vendor.place_order(make_request("s-ok"))
    assert placed.link is not None and placed.link.startswith(LINK_BASE)
    assert placed.link not in repr(placed)

    attempt(place(make_request("s-401"), make_vendor(api_key="tk_wrong_but_secret_999")))
    state.set_balance(0)
    attempt(place(make_request("s-402")))
    state.set_balance(1_000_000)
    attempt(place(make_request("s-422p", product="UNAVAILABLE")))
    attempt(place(make_request("s-422r", email="x@invalid.example")))
    attempt(place(make_request("s-422o"), make_vendor(funding_source_id="nope")))
    attempt(place(make_request("s-404"), make_vendor(base_url=standin.url + "/nope")))
    state.fail(429, None, retry_after="1")
    attempt(place(make_request("s-429")))
    state.fail(500, None)
    attempt(place(make_request("s-500")))
    state.fail(500, None)
    attempt(lambda: vendor.lookup("s-ok"))
    state.lose_answers(FAST.attempts)
    attempt(place(make_request("s-lost")))
    state.garbage(1)
    attempt(place(make_request("s-garbage")))
    refused = make_vendor(base_url=f"http://127.0.0.1:{free_port()}/api/v2")
    attempt(place(make_request("s-refused"), refused))
    assert len(errors) == 12
    return errors


def test_standin_errors_are_clean(
    standin: Standin, make_vendor: Callable[..., TremendousVendor],
    logs: list[MutableMapping[str, Any]],
) -> None:
    errors = _errors_from_standin(standin, make_vendor)
    for error in errors:
        _assert_clean(_rendered(error), standin.api_key, "tk_wrong_but_secret_999")
    _assert_clean(repr(logs), standin.api_key, "tk_wrong_but_secret_999")
    assert any(e["event"] == "vendor.order.placed" for e in logs)


KEY = "tk_mock_secret_key_0123456789"


def _evil(status: int, **extra: Any) -> Callable[[httpx.Request], httpx.Response]:
    """A vendor that quotes our key and a link back in its error text."""
    def handler(request: httpx.Request) -> httpx.Response:
        message = f"Key Bearer {KEY} rejected; your reward is at {EVIL_LINK} {KEY}"
        return httpx.Response(status, json={"errors": {"message": message, "payload": {}}},
                              **extra)
    return handler


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 422, 429, 500, 503])
def test_vendor_text_is_scrubbed(status: int, logs: list[MutableMapping[str, Any]]) -> None:
    vendor = TremendousVendor(
        "https://tremendous.mock/api/v2", KEY, policy=FAST,
        transport=httpx.MockTransport(_evil(status)), sleep=lambda _s: None,
    )
    with pytest.raises(VendorError) as caught:
        vendor.place_order(make_request("s-evil"))
    text = _rendered(caught.value)
    _assert_clean(text, KEY)
    assert f"HTTP {status}" in text
    assert "rejected; your reward is at <link>" in text
    if status == 404:
        assert vendor.lookup("s-evil") is None  # Tremendous-shaped 404: no such order
    else:
        with pytest.raises(VendorError) as on_lookup:
            vendor.lookup("s-evil")
        _assert_clean(_rendered(on_lookup.value), KEY)
    _assert_clean(repr(logs), KEY)


def test_transport_errors_are_clean() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    vendor = TremendousVendor(
        "https://tremendous.mock/api/v2", KEY, policy=FAST,
        transport=httpx.MockTransport(handler), sleep=lambda _s: None,
    )
    with pytest.raises(VendorError) as on_create:
        vendor.place_order(make_request("s-t"))
    _assert_clean(_rendered(on_create.value), KEY)
    with pytest.raises(VendorError) as on_lookup:
        vendor.lookup("k")
    _assert_clean(_rendered(on_lookup.value), KEY)


def test_reprs_are_clean(standin: Standin) -> None:
    vendor = TremendousVendor(standin.base_url, standin.api_key)
    try:
        assert standin.api_key not in repr(vendor)
        assert standin.api_key not in str(vars(vendor))
    finally:
        vendor.close()
    assert standin.api_key not in repr(standin.state)
    fake = FakeVendor()
    result = fake.place_order(make_request("s-fake"))
    assert result.link is not None and result.link not in repr(result)


_SCRUBBER = TremendousVendor(
    "https://tremendous.mock/api/v2", KEY, transport=httpx.MockTransport(_evil(500)),
)


@given(before=st.text(), between=st.text(), after=st.text(),
       path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-_?=&", max_size=30))
def test_scrub_never_lets_the_key_or_a_url_through(
    before: str, between: str, after: str, path: str,
) -> None:
    text = f"{before}{KEY}{between} https://x.invalid/{path}{after}"
    scrubbed = _SCRUBBER._scrub(text)
    assert KEY not in scrubbed
    assert "https://" not in scrubbed or "https://" in before + between + after
    assert len(scrubbed) <= 300
