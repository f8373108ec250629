"""The generic HTTP vendor replayed from recorded exchanges with the receiver stand-in.

Recorded against ``poller.sandbox.http_receiver`` (see ``recording.py`` to re-record). The
signature header is filtered out of the files: with the body it would let anyone test
guesses of the secret offline. Not recordable, so covered only in ``test_http_vendor.py``:
lost answers and refused connections.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from poller.domain.errors import AdvocateFacingError, OperatorFacingError, TransientVendorError
from poller.domain.model import OrderStatus
from poller.sandbox import http_receiver as standin
from poller.sandbox.server import ServerThread
from poller.vendors.http import HttpVendor

from .recording import RECORDING, Tape, cassette_texts, start_recording, tape
from .support import FAST, make_request

RECORDING_SECRET = "whsec_recording_only_51d0c8e2a7"
REPLAY_ORIGIN = "http://hooks.standin"
EXPECTED = {
    "accepted_and_repeat.yaml", "pending_then_accepted.yaml", "refused.yaml",
    "wrong_secret_401.yaml", "bad_request_400.yaml", "server_error_503.yaml",
    "rate_limit_429.yaml", "garbage_2xx.yaml",
}


@pytest.fixture(scope="module")
def _live() -> Iterator[tuple[str, Any] | None]:
    if not RECORDING:
        yield None
        return
    start_recording("http")
    state = standin.ReceiverState(secret=RECORDING_SECRET)
    with ServerThread(standin.create_app(state)) as url:
        yield url, state


@pytest.fixture
def rec(_live: tuple[str, Any] | None) -> Tape:
    return tape("http", REPLAY_ORIGIN, _live,
                filter_headers=("authorization", "host", "x-reward-poller-signature"))


def vendor(rec: Tape, secret: str | None = None) -> HttpVendor:
    chosen = secret or (RECORDING_SECRET if RECORDING else "not-the-recording-secret")
    return HttpVendor(rec.origin + standin.HOOK_PATH, chosen, policy=FAST,
                      sleep=rec.sleeps.append)


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", "HOODIE-M")
    return make_request(rid, vendor="http", **kw)


def test_accepted_and_repeat(rec: Tape) -> None:
    request = req("hc-accept")
    with rec.vcr.use_cassette("accepted_and_repeat.yaml") as cassette:
        v = vendor(rec)
        first = v.place_order(request)
        second = v.place_order(request)
    assert first.status is OrderStatus.COMPLETE
    assert second.vendor_order_id == first.vendor_order_id
    bodies = [r.body for r in cassette.requests][-2:]  # "all" mode also holds the old ones
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    if rec.state is not None:
        assert rec.state.created_for(request.idempotency_key) == 1


def test_pending_then_accepted(rec: Tape) -> None:
    request = req("hc-pending", product="PENDING")
    with rec.vcr.use_cassette("pending_then_accepted.yaml") as cassette:
        v = vendor(rec)
        assert v.place_order(request).status is OrderStatus.PENDING
        rec.arrange(lambda s: s.approve(request.idempotency_key))
        done = v.place_order(request)  # a pending order is re-asked by the identical request
    assert done.status is OrderStatus.COMPLETE
    assert cassette.all_played or RECORDING


def _raises(rec: Tape, name: str, error: type[Exception], request: Any,
            secret: str | None = None) -> Any:
    with rec.vcr.use_cassette(name) as cassette, pytest.raises(error) as caught:
        vendor(rec, secret).place_order(request)
    assert cassette.all_played or RECORDING
    return caught.value


def test_refused(rec: Tape) -> None:
    error = _raises(rec, "refused.yaml", AdvocateFacingError, req("hc-refused",
                                                                  product="UNAVAILABLE"))
    assert error.advocate_message == standin.OUT_OF_STOCK


def test_wrong_secret_401(rec: Tape) -> None:
    error = _raises(rec, "wrong_secret_401.yaml", OperatorFacingError, req("hc-401"),
                    secret="whsec_wrong_for_recording")
    assert error.status == 401


def test_bad_request_400(rec: Tape) -> None:
    rec.arrange(lambda s: s.fail(400, None))
    error = _raises(rec, "bad_request_400.yaml", OperatorFacingError, req("hc-400"))
    assert error.status == 400


def test_server_error_503(rec: Tape) -> None:
    rec.arrange(lambda s: s.fail(503, None))
    error = _raises(rec, "server_error_503.yaml", TransientVendorError, req("hc-503"))
    assert error.status == 503


def test_rate_limit_429(rec: Tape) -> None:
    rec.arrange(lambda s: s.fail(429, None, retry_after="1"))
    error = _raises(rec, "rate_limit_429.yaml", TransientVendorError, req("hc-429"))
    assert error.retry_after == 1.0


def test_garbage_2xx(rec: Tape) -> None:
    rec.arrange(lambda s: s.garbage(1))
    error = _raises(rec, "garbage_2xx.yaml", OperatorFacingError, req("hc-garbage"))
    assert "documented answer" in str(error)


def test_no_cassette_holds_a_secret() -> None:
    files = cassette_texts("http")
    assert set(files) >= EXPECTED, "cassettes missing: record them (see recording.py)"
    for name, text in files.items():
        for secret in (RECORDING_SECRET, "whsec_wrong_for_recording"):
            assert secret not in text, name
        assert not re.search(r"(?i)x-reward-poller-signature|authorization", text), name
        assert "v1=" not in text, name
        assert "127.0.0.1" not in text, name
