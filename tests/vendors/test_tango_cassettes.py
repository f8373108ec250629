"""The Tango Card adapter replayed from recorded HTTP exchanges (vcrpy), offline.

Recorded against the local stand-in (see ``recording.py`` to re-record). Not recordable, so
covered only in ``test_tango.py``: lost answers and refused connections.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from poller.core.errors import (
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
    UnknownOutcome,
)
from poller.core.model import OrderStatus
from poller.standins import tango as standin
from poller.standins.server import ServerThread
from poller.vendors.tango import TangoVendor

from .recording import RECORDING, REDACTED, Tape, cassette_texts, start_recording, tape
from .support import FAST, make_request

RECORDING_KEY = "tango_recording_only_2c7e91f04ab3"
"""The platform key the cassettes were recorded with; none of them may contain it."""
REPLAY_ORIGIN = "http://tango.standin"
AMAZON = "U561593"
EXPECTED = {
    "create_and_lookup.yaml", "repeat_create.yaml", "lookup_unknown.yaml",
    "pending_then_approved.yaml", "auth_401.yaml", "funds_402.yaml", "item_400.yaml",
    "item_unavailable_400.yaml",
    "in_process_409.yaml", "exists_409.yaml", "partial.yaml", "lookup_404_110.yaml",
    "recipient_400.yaml", "wrong_base_url_404.yaml", "rate_limit_429_retry_after.yaml",
    "server_error_then_success.yaml", "processed_then_5xx.yaml", "server_error_forever.yaml",
    "garbage_2xx.yaml", "check.yaml",
}


def _scrub(value: Any) -> Any:
    """Reward credentials (links, claim codes, PINs) out of every answer."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "credentials" and isinstance(item, dict):
                out[key] = dict.fromkeys(item, REDACTED)
            elif key == "credentialList" and isinstance(item, list):
                out[key] = [{**e, "value": REDACTED} if isinstance(e, dict) else e
                            for e in item]
            else:
                out[key] = _scrub(item)
        return out
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


@pytest.fixture(scope="module")
def _live() -> Iterator[tuple[str, Any] | None]:
    if not RECORDING:
        yield None
        return
    start_recording("tango")
    state = standin.TangoState()
    with ServerThread(standin.create_app(state, platform_key=RECORDING_KEY)) as url:
        yield url, state


@pytest.fixture
def rec(_live: tuple[str, Any] | None) -> Tape:
    return tape("tango", REPLAY_ORIGIN, _live, scrub=_scrub)


def vendor(rec: Tape, **overrides: Any) -> TangoVendor:
    args: dict[str, Any] = {
        "base_url": rec.origin + standin.API_PREFIX,
        "platform_key": RECORDING_KEY if RECORDING else "not-the-recording-key",
    }
    args.update(overrides)
    return TangoVendor(args["base_url"], standin.PLATFORM_NAME, args["platform_key"],
                       standin.CUSTOMER, args.get("account", standin.ACCOUNT), policy=FAST,
                       sleep=rec.sleeps.append, min_order_interval=0.0)


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", AMAZON)
    return make_request(rid, vendor="tango", **kw)


def test_create_and_lookup(rec: Tape) -> None:
    request = req("tc-create")
    with rec.vcr.use_cassette("create_and_lookup.yaml") as cassette:
        v = vendor(rec)
        placed = v.place_order(request)
        found = v.lookup(request.idempotency_key)
        v.close()
    assert placed.status is OrderStatus.COMPLETE
    assert placed.delivery == "sent by email to a***@example.com"
    assert found is not None and found.vendor_order_id == placed.vendor_order_id
    assert cassette.all_played or RECORDING


def test_repeat_create(rec: Tape) -> None:
    request = req("tc-repeat")
    with rec.vcr.use_cassette("repeat_create.yaml") as cassette:
        v = vendor(rec)
        first = v.place_order(request)
        second = v.place_order(request)
    assert second.vendor_order_id == first.vendor_order_id
    assert [r["status"]["code"] for r in cassette.responses] == [201, 200]
    if rec.state is not None:
        assert rec.state.created_for(request.idempotency_key) == 1


def test_lookup_unknown(rec: Tape) -> None:
    with rec.vcr.use_cassette("lookup_unknown.yaml") as cassette:
        assert vendor(rec).lookup("rptcneverplaced") is None
    assert cassette.all_played or RECORDING


def test_pending_then_approved(rec: Tape) -> None:
    request = req("tc-pending", product="PENDING")
    with rec.vcr.use_cassette("pending_then_approved.yaml") as cassette:
        v = vendor(rec)
        assert v.place_order(request).status is OrderStatus.PENDING
        still = v.lookup(request.idempotency_key)
        rec.arrange(lambda s: s.approve(request.idempotency_key))
        done = v.lookup(request.idempotency_key)
    assert still is not None and still.status is OrderStatus.PENDING
    assert done is not None and done.status is OrderStatus.COMPLETE
    assert cassette.all_played or RECORDING


def _raises(rec: Tape, name: str, error: type[Exception], request: Any,
            **vendor_kw: Any) -> Any:
    with rec.vcr.use_cassette(name) as cassette, pytest.raises(error) as caught:
        vendor(rec, **vendor_kw).place_order(request)
    assert cassette.all_played or RECORDING
    return caught.value


def test_auth_401(rec: Tape) -> None:
    error = _raises(rec, "auth_401.yaml", OperatorFacingError, req("tc-401"),
                    platform_key="tango_wrong_key_for_recording")
    assert error.status == 401


def test_funds_402(rec: Tape) -> None:
    rec.arrange(lambda s: s.set_balance("1.00"))
    error = _raises(rec, "funds_402.yaml", OperatorFacingError, req("tc-funds"))
    assert error.status == 402 and not isinstance(error, ConfigFixable)
    assert "not enough funds" in str(error) and "402.001" in str(error)


def test_item_400(rec: Tape) -> None:
    # 422.024 for a UTID the catalog (read after the refusal) does not list: the config.
    error = _raises(rec, "item_400.yaml", ConfigFixable, req("tc-item", product="U000000"))
    assert "422.024" in str(error) and "does not list" in str(error)


def test_item_unavailable_400(rec: Tape) -> None:
    # 422.097 for an item the catalog lists at this value and currency: unavailable.
    error = _raises(rec, "item_unavailable_400.yaml", ProductUnavailable,
                    req("tc-item-gone", product="UNAVAILABLE"))
    assert "422.097" in str(error) and "catalog lists it" in str(error)


def test_in_process_409(rec: Tape) -> None:
    rec.arrange(lambda s: s.in_process(1))
    request = req("tc-inprocess")
    with rec.vcr.use_cassette("in_process_409.yaml") as cassette:
        placed = vendor(rec).place_order(request)
    assert placed.status is OrderStatus.COMPLETE
    assert [r["status"]["code"] for r in cassette.responses] == [409, 201]
    assert "409.002" in str(cassette.responses[0]["body"]["string"])
    assert rec.sleeps == [2.0]


def test_exists_409(rec: Tape) -> None:
    request = req("tc-exists")
    with rec.vcr.use_cassette("exists_409.yaml") as cassette:
        v = vendor(rec)
        first = v.place_order(request)
        rec.arrange(lambda s: s.set_repeat_conflict())
        again = v.place_order(request)
    assert again.vendor_order_id == first.vendor_order_id
    assert [r["status"]["code"] for r in cassette.responses] == [201, 409, 200]
    assert cassette.all_played or RECORDING


def test_partial(rec: Tape) -> None:
    request = req("tc-partial")
    with rec.vcr.use_cassette("partial.yaml") as cassette:
        v = vendor(rec)
        v.place_order(request)
        rec.arrange(lambda s: s.set_status(request.idempotency_key, "PARTIAL"))
        found = v.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.NEEDS_PERSON
    assert cassette.all_played or RECORDING


def test_lookup_404_110(rec: Tape) -> None:
    rec.arrange(lambda s: s.set_empty_lookup_404())
    with rec.vcr.use_cassette("lookup_404_110.yaml") as cassette:
        assert vendor(rec).lookup("rptcnothere") is None
    assert cassette.responses[0]["status"]["code"] == 404
    assert cassette.all_played or RECORDING


def test_recipient_400(rec: Tape) -> None:
    error = _raises(rec, "recipient_400.yaml", AdvocateFacingError,
                    req("tc-recipient", email="x@invalid.example"))
    assert "recipient is invalid" in str(error)


def test_wrong_base_url_404(rec: Tape) -> None:
    error = _raises(rec, "wrong_base_url_404.yaml", OperatorFacingError, req("tc-404"),
                    base_url=rec.origin + "/raas/v1")
    assert error.status == 404 and "base_url" in str(error)


def test_rate_limit_429_retry_after(rec: Tape) -> None:
    rec.arrange(lambda s: s.fail(429, None, retry_after="2"))
    error = _raises(rec, "rate_limit_429_retry_after.yaml", TransientVendorError, req("tc-429"))
    assert error.retry_after == 2.0
    assert rec.sleeps == [2.0] * (FAST.attempts - 1)


def test_server_error_then_success(rec: Tape) -> None:
    rec.arrange(lambda s: s.fail(503, 2))
    with rec.vcr.use_cassette("server_error_then_success.yaml") as cassette:
        assert vendor(rec).place_order(req("tc-503")).status is OrderStatus.COMPLETE
    assert [r["status"]["code"] for r in cassette.responses] == [503, 503, 201]


def test_processed_then_5xx(rec: Tape) -> None:
    """Tango's 5xx "may occasionally process": the replay with the same externalRefID
    answers 200 with the order the failed attempt created."""
    rec.arrange(lambda s: s.process_then_fail(503, 1))
    with rec.vcr.use_cassette("processed_then_5xx.yaml") as cassette:
        result = vendor(rec).place_order(req("tc-processed"))
    assert result.status is OrderStatus.COMPLETE
    assert [r["status"]["code"] for r in cassette.responses] == [503, 200]


def test_server_error_forever(rec: Tape) -> None:
    rec.arrange(lambda s: s.fail(500, None))
    error = _raises(rec, "server_error_forever.yaml", TransientVendorError, req("tc-500"))
    assert error.status == 500


def test_garbage_2xx(rec: Tape) -> None:
    rec.arrange(lambda s: s.garbage(1))
    request = req("tc-garbage")
    with rec.vcr.use_cassette("garbage_2xx.yaml") as cassette:
        v = vendor(rec)
        with pytest.raises(UnknownOutcome):
            v.place_order(request)
        assert v.lookup(request.idempotency_key) is not None
    assert cassette.all_played or RECORDING


def test_check(rec: Tape) -> None:
    with rec.vcr.use_cassette("check.yaml") as cassette:
        result = vendor(rec).check([(AMAZON, Decimal("25"), "USD"),
                                    ("U561539", Decimal("25"), "USD")])
    assert result.credentials_ok and result.balance == "10,000.00 USD"
    assert [p.ok for p in result.products] == [True, False]
    assert "did you mean U561593" in result.products[1].detail
    assert cassette.all_played or RECORDING


def test_no_cassette_holds_a_secret() -> None:
    files = cassette_texts("tango")
    assert set(files) >= EXPECTED, "cassettes missing: record them (see recording.py)"
    basic = base64.b64encode(f"{standin.PLATFORM_NAME}:{RECORDING_KEY}".encode()).decode()
    for name, text in files.items():
        for secret in (RECORDING_KEY, "tango_wrong_key_for_recording", basic, "Basic "):
            assert secret not in text, name
        assert not re.search(r"(?i)authorization", text), name
        assert standin.LINK_BASE not in text, name
        assert "127.0.0.1" not in text, name
    assert any(REDACTED in text for text in files.values())
