"""Tango's platform key, Giftbit's token, the HTTP vendor's HMAC secret, reward links and
claim codes never reach an exception, a repr or a log line."""

from __future__ import annotations

import base64
import traceback
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from poller.domain.errors import VendorError
from poller.sandbox.server import free_port
from poller.sandbox.tango import LINK_BASE as TANGO_LINK_BASE
from poller.vendors.giftbit import GiftbitVendor
from poller.vendors.http import HttpVendor
from poller.vendors.tango import TangoVendor

from .support import FAST, giftbit_standin, make_request, receiver_standin, tango_standin

EVIL_LINK = "https://rewards.evil.invalid/claim/s3cr3t-t0ken"
KEY = "very_secret_key_0123456789"


def _rendered(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
    assert TANGO_LINK_BASE not in text
    assert EVIL_LINK not in text
    assert "s3cr3t" not in text


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def _collect(calls: list[Callable[[], object]], reset: Callable[[], None]) -> list[VendorError]:
    errors: list[VendorError] = []
    for call in calls:
        try:
            call()
        except VendorError as exc:
            errors.append(exc)
        finally:
            reset()
    return errors


def test_tango_errors_and_logs_are_clean(logs: list[MutableMapping[str, Any]]) -> None:
    standin = tango_standin()
    state = standin.state

    def make(**kw: Any) -> TangoVendor:
        args: dict[str, Any] = {"platform_key": standin.platform_key,
                                "base_url": standin.base_url}
        args.update(kw)
        return TangoVendor(args["base_url"], standin.platform_name, args["platform_key"],
                           standin.customer, standin.account, policy=FAST,
                           sleep=lambda _s: None, min_order_interval=0.0)

    vendor = make()
    placed = vendor.place_order(make_request("ts-ok", product="U561593"))
    assert placed.link is not None and placed.link.startswith(TANGO_LINK_BASE)
    code = state.find(make_request("ts-ok").idempotency_key)["reward"]["credentials"][
        "Claim Code"]

    def place(rid: str, v: TangoVendor = vendor, **kw: Any) -> Callable[[], object]:
        kw.setdefault("product", "U561593")
        return lambda: v.place_order(make_request(rid, **kw))

    def arrange(setup: Callable[[], object], call: Callable[[], object]) -> Callable[[], object]:
        return lambda: (setup(), call())

    errors = _collect([
        place("ts-401", make(platform_key="tango_wrong_but_secret_77")),
        arrange(lambda: state.set_balance(0), place("ts-funds")),
        place("ts-item", product="UNAVAILABLE"),
        place("ts-email", email="x@invalid.example"),
        arrange(lambda: state.fail(429, None), place("ts-429")),
        arrange(lambda: state.fail(500, None), place("ts-500")),
        arrange(lambda: state.lose_answers(FAST.attempts), place("ts-lost")),
        arrange(lambda: state.garbage(1), place("ts-garbage")),
        place("ts-refused", make(base_url=f"http://127.0.0.1:{free_port()}/raas/v2")),
    ], lambda: (state.clear_faults(), state.set_balance("10000")))
    assert len(errors) == 9
    basic = base64.b64encode(f"{standin.platform_name}:{standin.platform_key}".encode())
    secrets = (standin.platform_key, "tango_wrong_but_secret_77", basic.decode(), code)
    for error in errors:
        _assert_clean(_rendered(error), *secrets)
    _assert_clean(repr(logs), *secrets)
    assert standin.platform_key not in repr(vendor)
    assert placed.link not in repr(placed)


def test_giftbit_errors_and_logs_are_clean(logs: list[MutableMapping[str, Any]]) -> None:
    standin = giftbit_standin()
    state = standin.state
    vendor = GiftbitVendor(standin.base_url, standin.api_key, policy=FAST, sleep=lambda _s: None)
    wrong = GiftbitVendor(standin.base_url, "gb_wrong_but_secret_77", policy=FAST)

    def place(rid: str, v: GiftbitVendor = vendor, **kw: Any) -> Callable[[], object]:
        kw.setdefault("product", "amazonus")
        return lambda: v.place_order(make_request(rid, **kw))

    def arrange(setup: Callable[[], object], call: Callable[[], object]) -> Callable[[], object]:
        return lambda: (setup(), call())

    errors = _collect([
        place("gs-401", wrong),
        place("gs-brand", product="UNAVAILABLE"),
        place("gs-email", email="x@invalid.example"),
        arrange(lambda: state.fail(429, None), place("gs-429")),
        arrange(lambda: state.fail(500, None), place("gs-500")),
        arrange(lambda: state.lose_answers(FAST.attempts), place("gs-lost")),
        arrange(lambda: state.garbage(1), place("gs-garbage")),
    ], state.clear_faults)
    assert len(errors) == 7
    for error in errors:
        _assert_clean(_rendered(error), standin.api_key, "gb_wrong_but_secret_77")
    _assert_clean(repr(logs), standin.api_key, "gb_wrong_but_secret_77")
    assert standin.api_key not in repr(vendor) and standin.api_key not in str(vars(vendor))


def test_http_secret_is_never_sent_logged_or_shown(logs: list[MutableMapping[str, Any]]) -> None:
    receiver = receiver_standin()
    state = receiver.state
    vendor = HttpVendor(receiver.hook_url, receiver.secret, policy=FAST, sleep=lambda _s: None)
    vendor.place_order(make_request("hs-ok"))

    def place(rid: str, **kw: Any) -> Callable[[], object]:
        return lambda: vendor.place_order(make_request(rid, **kw))

    def arrange(setup: Callable[[], object], call: Callable[[], object]) -> Callable[[], object]:
        return lambda: (setup(), call())

    errors = _collect([
        arrange(lambda: state.set_secret("another-secret-000000"), place("hs-401")),
        place("hs-refused", product="UNAVAILABLE"),
        arrange(lambda: state.fail(503, None), place("hs-503")),
        arrange(lambda: state.fail(400, None), place("hs-400")),
        arrange(lambda: state.lose_answers(FAST.attempts), place("hs-lost")),
        arrange(lambda: state.garbage(1), place("hs-garbage")),
    ], lambda: (state.clear_faults(), state.set_secret(receiver.secret)))
    assert len(errors) == 6
    for error in errors:
        _assert_clean(_rendered(error), receiver.secret)
    _assert_clean(repr(logs), receiver.secret)
    assert receiver.secret not in repr(vendor) and receiver.secret not in str(vars(vendor))


# --- vendor texts that quote our secrets back ---------------------------------------------


def _tango_evil(status: int) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        message = f"Key {KEY} rejected; your card is at {EVIL_LINK} {KEY}"
        return httpx.Response(status, json={"httpCode": status, "requestId": "r1",
                                            "errors": [{"path": "x", "message": message}]})
    return handler


def _giftbit_evil(status: int) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        message = f"Bearer {KEY} rejected; your card is at {EVIL_LINK}"
        return httpx.Response(status, json={"error": {"code": "ERROR_X", "name": "x",
                                                      "message": message}, "status": status})
    return handler


def _hook_evil(status: int) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"message": f"see {EVIL_LINK}"}
        if 200 <= status < 300:
            body["status"] = "refused"
        return httpx.Response(status, json=body)
    return handler


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 429, 500, 503])
def test_vendor_texts_are_scrubbed(status: int, logs: list[MutableMapping[str, Any]]) -> None:
    tango = TangoVendor("https://tango.mock/raas/v2", "p", KEY, "c", "a", policy=FAST,
                        transport=httpx.MockTransport(_tango_evil(status)),
                        sleep=lambda _s: None, min_order_interval=0.0)
    giftbit = GiftbitVendor("https://giftbit.mock/papi/v1", KEY, policy=FAST,
                            transport=httpx.MockTransport(_giftbit_evil(status)),
                            sleep=lambda _s: None)
    for vendor in (tango, giftbit):
        with pytest.raises(VendorError) as caught:
            vendor.place_order(make_request("evil", product="X1"))
        text = _rendered(caught.value)
        _assert_clean(text, KEY)
        assert f"HTTP {status}" in text
        assert "<link>" in text
    _assert_clean(repr(logs), KEY)


@pytest.mark.parametrize("status", [200, 400, 500])
def test_receiver_texts_are_scrubbed(status: int) -> None:
    vendor = HttpVendor("https://hooks.mock/x", KEY, policy=FAST,
                        transport=httpx.MockTransport(_hook_evil(status)), sleep=lambda _s: None)
    with pytest.raises(VendorError) as caught:
        vendor.place_order(make_request("evil"))
    _assert_clean(_rendered(caught.value), KEY)
    assert EVIL_LINK not in getattr(caught.value, "advocate_message", "")
