"""The Giftbit adapter replayed from recorded HTTP exchanges (vcrpy), offline.

Recorded against the local stand-in (see ``recording.py`` to re-record). Not recordable, so
covered only in ``test_giftbit.py``: lost answers and refused connections.
"""

from __future__ import annotations

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
from poller.standins import giftbit as standin
from poller.standins.server import ServerThread
from poller.vendors.giftbit import GiftbitVendor

from .recording import RECORDING, Tape, cassette_texts, start_recording, tape
from .support import FAST, make_request

RECORDING_KEY = "gb_recording_only_8f2a61c0d9e4"
REPLAY_ORIGIN = "http://giftbit.standin"
EXPECTED = {
    "create_and_lookup.yaml", "repeat_create.yaml", "lookup_unknown.yaml",
    "awaiting_funds_then_sent.yaml", "auth_401.yaml", "invalid_brand_422.yaml",
    "brand_unavailable_422.yaml",
    "recipient_422.yaml", "rate_limit_429.yaml", "server_error_forever.yaml",
    "garbage_200.yaml", "check.yaml", "undeliverable.yaml",
}


@pytest.fixture(scope="module")
def _live() -> Iterator[tuple[str, Any] | None]:
    if not RECORDING:
        yield None
        return
    start_recording("giftbit")
    state = standin.GiftbitState()
    with ServerThread(standin.create_app(state, api_key=RECORDING_KEY)) as url:
        yield url, state


@pytest.fixture
def rec(_live: tuple[str, Any] | None) -> Tape:
    return tape("giftbit", REPLAY_ORIGIN, _live)


def vendor(rec: Tape, **overrides: Any) -> GiftbitVendor:
    args: dict[str, Any] = {
        "base_url": rec.origin + standin.API_PREFIX,
        "api_key": RECORDING_KEY if RECORDING else "not-the-recording-key",
        "policy": FAST, "sleep": rec.sleeps.append,
    }
    args.update(overrides)
    return GiftbitVendor(**args)


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", "amazonus")
    return make_request(rid, vendor="giftbit", **kw)


def test_create_and_lookup(rec: Tape) -> None:
    request = req("gc-create")
    with rec.vcr.use_cassette("create_and_lookup.yaml") as cassette:
        v = vendor(rec)
        placed = v.place_order(request)
        found = v.lookup(request.idempotency_key)
    assert placed.status is OrderStatus.PENDING and "API_CREATING" in placed.detail
    assert found is not None and found.vendor_order_id == placed.vendor_order_id
    assert found.status is OrderStatus.COMPLETE and "DELIVERED" in found.detail
    assert [r.uri.split("/papi/v1/")[1] for r in cassette.requests] == [
        "campaign", f"campaign/{placed.vendor_order_id}",
        f"gifts?campaign_id={placed.vendor_order_id}"]
    assert cassette.all_played or RECORDING


def test_undeliverable(rec: Tape) -> None:
    request = req("gc-bounce", email="ghost@bounce.example")
    with rec.vcr.use_cassette("undeliverable.yaml") as cassette:
        v = vendor(rec)
        v.place_order(request)
        found = v.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.NEEDS_PERSON
    assert "UNDELIVERABLE" in found.detail and "g***@bounce.example" in found.detail
    assert cassette.all_played or RECORDING


def test_repeat_create(rec: Tape) -> None:
    """The stand-in answers a repeated id with a duplicate error (Giftbit's real answer is
    unconfirmed); the adapter then finds the campaign by id."""
    request = req("gc-repeat")
    with rec.vcr.use_cassette("repeat_create.yaml") as cassette:
        v = vendor(rec)
        first = v.place_order(request)
        second = v.place_order(request)
    assert second.vendor_order_id == first.vendor_order_id
    assert [r["status"]["code"] for r in cassette.responses] == [200, 422, 200, 200]
    assert second.status is OrderStatus.COMPLETE
    if rec.state is not None:
        assert rec.state.created_for(first.vendor_order_id) == 1


def test_lookup_unknown(rec: Tape) -> None:
    with rec.vcr.use_cassette("lookup_unknown.yaml") as cassette:
        assert vendor(rec).lookup("rpgcneverplaced") is None
    assert cassette.all_played or RECORDING


def test_awaiting_funds_then_sent(rec: Tape) -> None:
    rec.arrange(lambda s: s.set_funds("USD", 0))
    request = req("gc-funds")
    with rec.vcr.use_cassette("awaiting_funds_then_sent.yaml") as cassette:
        v = vendor(rec)
        placed = v.place_order(request)
        rec.arrange(lambda s: s.set_funds("USD", 100_000))
        done = v.lookup(request.idempotency_key)
    assert placed.status is OrderStatus.PENDING
    assert done is not None and done.status is OrderStatus.COMPLETE
    assert cassette.all_played or RECORDING


def _raises(rec: Tape, name: str, error: type[Exception], request: Any,
            **vendor_kw: Any) -> Any:
    with rec.vcr.use_cassette(name) as cassette, pytest.raises(error) as caught:
        vendor(rec, **vendor_kw).place_order(request)
    assert cassette.all_played or RECORDING
    return caught.value


def test_auth_401(rec: Tape) -> None:
    error = _raises(rec, "auth_401.yaml", OperatorFacingError, req("gc-401"),
                    api_key="gb_wrong_key_for_recording")
    assert error.status == 401


def test_invalid_brand_422(rec: Tape) -> None:
    # A brand GET /brands/{code} does not know: the config.
    error = _raises(rec, "invalid_brand_422.yaml", ConfigFixable,
                    req("gc-brand", product="UNAVAILABLE"))
    assert "ERROR_CAMPAIGN_INVALID_BRAND" in str(error) and "does not list" in str(error)


def test_brand_unavailable_422(rec: Tape) -> None:
    # A brand that takes this price and currency, yet Giftbit will not supply it.
    error = _raises(rec, "brand_unavailable_422.yaml", ProductUnavailable,
                    req("gc-soldout", product="soldoutus"))
    assert "ERROR_CAMPAIGN_INVALID_BRAND" in str(error) and "catalog lists it" in str(error)


def test_recipient_422(rec: Tape) -> None:
    error = _raises(rec, "recipient_422.yaml", AdvocateFacingError,
                    req("gc-email", email="x@invalid.example"))
    assert "ERROR_CAMPAIGN_NO_CONTACTS" in str(error)


def test_rate_limit_429(rec: Tape) -> None:
    rec.arrange(lambda s: s.fail(429, None))
    error = _raises(rec, "rate_limit_429.yaml", TransientVendorError, req("gc-429"))
    assert error.status == 429


def test_server_error_forever(rec: Tape) -> None:
    rec.arrange(lambda s: s.fail(500, None))
    error = _raises(rec, "server_error_forever.yaml", TransientVendorError, req("gc-500"))
    assert error.status == 500


def test_garbage_200(rec: Tape) -> None:
    rec.arrange(lambda s: s.garbage(1))
    request = req("gc-garbage")
    with rec.vcr.use_cassette("garbage_200.yaml") as cassette:
        v = vendor(rec)
        with pytest.raises(UnknownOutcome):
            v.place_order(request)
        assert v.lookup(request.idempotency_key) is not None
    assert cassette.all_played or RECORDING


def test_check(rec: Tape) -> None:
    with rec.vcr.use_cassette("check.yaml") as cassette:
        result = vendor(rec).check([("amazonus", Decimal("25"), "USD"),
                                    ("amazonuss", Decimal("25"), "USD"),
                                    ("starbucksus", Decimal("20"), "USD")])
    assert result.credentials_ok and "USD" in (result.balance or "")
    assert [p.ok for p in result.products] == [True, False, False]
    assert "did you mean amazonus" in result.products[1].detail
    assert "not one of the brand's prices (5.00, 10.00, 25.00)" in result.products[2].detail
    assert any('"ERROR_BRANDS_NO_SUCH_BRAND"' in str(r["body"]["string"])
               for r in cassette.responses)
    assert cassette.all_played or RECORDING


def test_no_cassette_holds_a_secret() -> None:
    files = cassette_texts("giftbit")
    assert set(files) >= EXPECTED, "cassettes missing: record them (see recording.py)"
    for name, text in files.items():
        for secret in (RECORDING_KEY, "gb_wrong_key_for_recording", "Bearer"):
            assert secret not in text, name
        assert not re.search(r"(?i)authorization", text), name
        assert "127.0.0.1" not in text, name
