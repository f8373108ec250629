"""The Tremendous adapter replayed from recorded HTTP exchanges (vcrpy), offline.

The cassettes in ``cassettes/tremendous/`` were recorded once against the local stand-in
(no sandbox account is needed) and replay with record mode "none", so CI needs no network.
Re-record them with::

    REWARD_POLLER_VCR_RECORD=all .venv/bin/pytest tests/vendors/test_tremendous_cassettes.py

While recording, the stand-in runs on loopback with ``RECORDING_KEY``; the request URLs are
rewritten to ``REPLAY_ORIGIN``, the Authorization header is filtered out and reward links
in the answers are replaced, so the files hold no secret (``test_no_cassette_holds_a_secret``).

Not recordable, so covered only in ``test_tremendous.py``: lost answers (a dropped
connection or a timeout has no response to record) and connection refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import vcr

from poller.core.errors import (
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
    UnknownOutcome,
)
from poller.core.model import OrderStatus
from poller.standins.server import ServerThread
from poller.standins.tremendous import API_PREFIX, LINK_BASE, TremendousState, create_app
from poller.vendors.tremendous import TremendousVendor

from .support import FAST, make_request

CASSETTES = Path(__file__).parent / "cassettes" / "tremendous"
RECORD_MODE = os.environ.get("REWARD_POLLER_VCR_RECORD", "none")
RECORDING = RECORD_MODE != "none"
RECORDING_KEY = "tk_recording_only_6f0e2a9c4d7b1358"
"""The key the cassettes were recorded with; none of them may contain it."""
REPLAY_ORIGIN = "http://tremendous.standin"
REDACTED_LINK = "https://redacted.invalid/reward-link"

EXPECTED_CASSETTES = {
    "create_and_lookup.yaml", "repeat_create.yaml", "lookup_unknown.yaml", "auth_401.yaml",
    "funds_402.yaml", "product_422.yaml", "recipient_422.yaml", "config_422.yaml",
    "wrong_base_url_404.yaml", "rate_limit_429_retry_after.yaml", "rate_limit_429.yaml",
    "server_error_then_success.yaml", "server_error_forever.yaml", "garbage_2xx.yaml",
    "pending_then_approved.yaml", "accepted_202.yaml", "conflict_409.yaml",
    "bounced_delivery.yaml", "unknown_product_422.yaml",
}


def _redact_links(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED_LINK if k == "link" and isinstance(v, str) else _redact_links(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_links(v) for v in value]
    return value


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    body = response["body"]["string"]
    try:
        data = json.loads(body)
    except ValueError:
        return response
    scrubbed = json.dumps(_redact_links(data)).encode()
    response["body"]["string"] = scrubbed
    for name in response["headers"]:
        if name.lower() == "content-length":
            response["headers"][name] = [str(len(scrubbed))]
    return response


@dataclass
class Recorder:
    vcr: vcr.VCR
    origin: str
    state: TremendousState | None
    """The live stand-in's state while recording; None on replay."""
    sleeps: list[float]

    def vendor(self, **overrides: Any) -> TremendousVendor:
        kwargs: dict[str, Any] = {
            "base_url": self.origin + API_PREFIX,
            "api_key": RECORDING_KEY if RECORDING else "not-the-recording-key",
            "policy": FAST, "sleep": self.sleeps.append,
        }
        kwargs.update(overrides)
        return TremendousVendor(**kwargs)

    def arrange(self, setup: Callable[[TremendousState], object]) -> None:
        """Set the stand-in up; nothing to do on replay (the answers are on tape)."""
        if self.state is not None:
            setup(self.state)


@pytest.fixture(scope="module")
def _live() -> Iterator[tuple[str, TremendousState] | None]:
    if not RECORDING:
        yield None
        return
    for old in CASSETTES.glob("*.yaml"):  # "all" would keep their old interactions
        old.unlink()
    state = TremendousState()
    with ServerThread(create_app(state, api_key=RECORDING_KEY)) as url:
        yield url, state


@pytest.fixture
def rec(_live: tuple[str, TremendousState] | None) -> Recorder:
    live_origin = _live[0] if _live else REPLAY_ORIGIN
    state = _live[1] if _live else None
    if state is not None:
        state.reset()

    def to_replay_origin(request: Any) -> Any:
        request.uri = request.uri.replace(live_origin, REPLAY_ORIGIN, 1)
        return request

    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=RECORD_MODE,
        filter_headers=["authorization", "host"],
        before_record_request=to_replay_origin,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )
    return Recorder(vcr=recorder, origin=live_origin, state=state, sleeps=[])


def test_create_and_lookup(rec: Recorder) -> None:
    request = make_request("cas-create")
    with rec.vcr.use_cassette("create_and_lookup.yaml") as cassette:
        vendor = rec.vendor()
        placed = vendor.place_order(request)
        found = vendor.lookup(request.idempotency_key)
        vendor.close()
    assert placed.status is OrderStatus.COMPLETE
    assert placed.delivery == "sent by email to a***@example.com"
    assert placed.link is not None
    assert found is not None and found.vendor_order_id == placed.vendor_order_id
    assert cassette.all_played or RECORDING


def test_repeat_create(rec: Recorder) -> None:
    request = make_request("cas-repeat")
    with rec.vcr.use_cassette("repeat_create.yaml") as cassette:
        vendor = rec.vendor()
        first = vendor.place_order(request)
        second = vendor.place_order(request)
        vendor.close()
    assert second.vendor_order_id == first.vendor_order_id
    assert [r["status"]["code"] for r in cassette.responses] == [200, 201]
    if rec.state is not None:
        assert rec.state.created_for(request.idempotency_key) == 1


def test_lookup_unknown(rec: Recorder) -> None:
    with rec.vcr.use_cassette("lookup_unknown.yaml") as cassette:
        assert rec.vendor().lookup("cas-never-placed") is None
    assert cassette.all_played or RECORDING


def _raises(rec: Recorder, cassette: str, error: type[Exception], redemption: str,
            vendor_kwargs: dict[str, Any] | None = None, **request_kwargs: Any) -> Any:
    with rec.vcr.use_cassette(cassette) as tape:
        vendor = rec.vendor(**(vendor_kwargs or {}))
        with pytest.raises(error) as caught:
            vendor.place_order(make_request(redemption, **request_kwargs))
        vendor.close()
    assert tape.all_played or RECORDING
    return caught.value


def test_auth_401(rec: Recorder) -> None:
    error = _raises(rec, "auth_401.yaml", OperatorFacingError, "cas-401",
                    {"api_key": "tk_wrong_key_for_recording"})
    assert error.status == 401


def test_funds_402(rec: Recorder) -> None:
    rec.arrange(lambda s: s.set_balance(0))
    error = _raises(rec, "funds_402.yaml", OperatorFacingError, "cas-402")
    assert error.status == 402 and "not enough funds" in str(error)


def test_product_422(rec: Recorder) -> None:
    # A 422 about a product GET /products/{id} lists at this value: unavailable, whatever
    # the words ("is not available").
    error = _raises(rec, "product_422.yaml", ProductUnavailable, "cas-422p",
                    product="UNAVAILABLE")
    assert "catalog lists it" in str(error) and "is not available" in str(error)


def test_unknown_product_422(rec: Recorder) -> None:
    error = _raises(rec, "unknown_product_422.yaml", ConfigFixable, "cas-422u",
                    product="UNKNOWN-GIFT")
    assert "routing config" in str(error)


def test_accepted_202(rec: Recorder) -> None:
    rec.arrange(lambda s: s.background(1))
    request = make_request("cas-202")
    with rec.vcr.use_cassette("accepted_202.yaml") as cassette:
        vendor = rec.vendor()
        placed = vendor.place_order(request)
        found = vendor.lookup(request.idempotency_key)
    assert placed.status is OrderStatus.PENDING
    assert found is not None and found.status is OrderStatus.COMPLETE
    assert [r["status"]["code"] for r in cassette.responses] == [202, 200]


def test_conflict_409(rec: Recorder) -> None:
    request = make_request("cas-409")
    with rec.vcr.use_cassette("conflict_409.yaml") as cassette:
        vendor = rec.vendor()
        first = vendor.place_order(request)
        rec.arrange(lambda s: s.fail(409, 1, method="POST"))
        again = vendor.place_order(request)
    assert again.vendor_order_id == first.vendor_order_id
    assert [r["status"]["code"] for r in cassette.responses] == [200, 409, 200]


def test_bounced_delivery(rec: Recorder) -> None:
    request = make_request("cas-bounce", email="ghost@bounce.example")
    with rec.vcr.use_cassette("bounced_delivery.yaml") as cassette:
        placed = rec.vendor().place_order(request)
    assert placed.status is OrderStatus.NEEDS_PERSON
    assert "bounced" in placed.detail and "g***@bounce.example" in placed.detail
    assert cassette.all_played or RECORDING


def test_recipient_422(rec: Recorder) -> None:
    error = _raises(rec, "recipient_422.yaml", AdvocateFacingError, "cas-422r",
                    email="someone@invalid.example")
    assert "recipient is invalid" in str(error)


def test_config_422(rec: Recorder) -> None:
    error = _raises(rec, "config_422.yaml", ConfigFixable, "cas-422c",
                    {"funding_source_id": "FS-UNKNOWN"})
    assert error.status == 422


def test_wrong_base_url_404(rec: Recorder) -> None:
    error = _raises(rec, "wrong_base_url_404.yaml", OperatorFacingError, "cas-404",
                    {"base_url": rec.origin + "/api/v1"})
    assert error.status == 404 and "base_url" in str(error)


def test_rate_limit_429_retry_after(rec: Recorder) -> None:
    rec.arrange(lambda s: s.set_rate_limit(0, retry_after="3"))
    error = _raises(rec, "rate_limit_429_retry_after.yaml", TransientVendorError, "cas-429ra")
    assert error.retry_after == 3.0
    assert rec.sleeps == [3.0] * (FAST.attempts - 1)


def test_rate_limit_429(rec: Recorder) -> None:
    rec.arrange(lambda s: s.set_rate_limit(0))
    error = _raises(rec, "rate_limit_429.yaml", TransientVendorError, "cas-429")
    assert error.status == 429 and error.retry_after is None
    assert "Too Many Requests" in str(error)  # read from the singular "error" key


def test_server_error_then_success(rec: Recorder) -> None:
    rec.arrange(lambda s: s.fail(503, 2))
    request = make_request("cas-503")
    with rec.vcr.use_cassette("server_error_then_success.yaml") as cassette:
        result = rec.vendor().place_order(request)
    assert result.status is OrderStatus.COMPLETE
    assert [r["status"]["code"] for r in cassette.responses] == [503, 503, 200]


def test_server_error_forever(rec: Recorder) -> None:
    rec.arrange(lambda s: s.fail(500, None))
    error = _raises(rec, "server_error_forever.yaml", TransientVendorError, "cas-500")
    assert error.status == 500


def test_garbage_2xx(rec: Recorder) -> None:
    rec.arrange(lambda s: s.garbage(1))
    request = make_request("cas-garbage")
    with rec.vcr.use_cassette("garbage_2xx.yaml") as cassette:
        vendor = rec.vendor()
        with pytest.raises(UnknownOutcome):
            vendor.place_order(request)
        assert vendor.lookup(request.idempotency_key) is not None
    assert cassette.all_played or RECORDING


def test_pending_then_approved(rec: Recorder) -> None:
    request = make_request("cas-pending", product="PENDING")
    with rec.vcr.use_cassette("pending_then_approved.yaml") as cassette:
        vendor = rec.vendor()
        assert vendor.place_order(request).status is OrderStatus.PENDING
        rec.arrange(lambda s: s.approve(request.idempotency_key))
        found = vendor.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.COMPLETE
    assert cassette.all_played or RECORDING


def test_no_cassette_holds_a_secret() -> None:
    files = {p.name: p.read_text() for p in CASSETTES.glob("*.yaml")}
    assert set(files) >= EXPECTED_CASSETTES, "cassettes missing: record them (see docstring)"
    for name, text in files.items():
        assert RECORDING_KEY not in text, name
        assert "tk_wrong_key_for_recording" not in text, name
        assert not re.search(r"(?i)authorization", text), name
        assert "Bearer" not in text, name
        assert LINK_BASE not in text, name
        assert "127.0.0.1" not in text, name
