"""The Giftbit adapter against Giftbit's own documented answers (vcrpy, offline).

The cassettes in ``cassettes/giftbit/`` were composed by hand from Giftbit's API reference
(Giftbit/Giftbit-API-Docs ``apiary.apib``: its request/response examples for POST
/campaign, GET /campaign/{id}, GET /gifts, GET /funds, GET /brands and /brands/{code},
and its error format); each file's header names its source and what was adapted (see
``doc_cassettes.py``).

Cases the documentation does not describe have no cassette; the stand-in tests cover them
(``test_giftbit.py``): what a repeated campaign id answers, what GET /campaign/{id}
answers for an id never used, ERROR_CAMPAIGN_NO_CONTACTS (not in the reference), a 200
that is not a campaign, lost answers and refused connections.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
)
from poller.domain.model import OrderStatus
from poller.vendors.giftbit import SANDBOX_URL, GiftbitVendor

from .doc_cassettes import (
    CASSETTES,
    assert_sources_named,
    cassette_files,
    data_text,
    documented_creates,
    interactions,
    replayer,
)
from .support import FAST, make_request

LIBRARY = CASSETTES / "giftbit"
EXPECTED = {
    "create_and_lookup.yaml", "undeliverable.yaml", "awaiting_funds_then_sent.yaml",
    "auth_401.yaml", "invalid_brand_422.yaml", "brand_unavailable_422.yaml",
    "rate_limit_429.yaml", "server_error_forever.yaml", "check.yaml",
}
REQUIRED = frozenset({"id", "contacts.*.email", "price_in_cents", "brand_codes", "subject",
                      "message"})
"""What POST /campaign takes without a template: id and contacts (required), the price,
the brands, and subject and message ("required if no supplied template")."""

TAPE = replayer(LIBRARY)


def vendor(sleeps: list[float] | None = None, **overrides: Any) -> GiftbitVendor:
    args: dict[str, Any] = {"base_url": SANDBOX_URL, "api_key": "not-a-real-key",
                            "policy": FAST,
                            "sleep": (sleeps if sleeps is not None else []).append}
    args.update(overrides)
    return GiftbitVendor(**args)


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", "amazonus")
    return make_request(rid, vendor="giftbit", **kw)


def test_create_and_lookup() -> None:
    request = req("gc-create")
    with TAPE.use_cassette("create_and_lookup.yaml") as cassette:
        v = vendor()
        placed = v.place_order(request)
        found = v.lookup(request.idempotency_key)
    assert placed.status is OrderStatus.PENDING and "API_CREATING" in placed.detail
    assert found is not None and found.vendor_order_id == placed.vendor_order_id
    assert found.status is OrderStatus.COMPLETE and "DELIVERED" in found.detail
    assert found.delivery == "sent by email to a***@example.com"
    assert [r.uri.split("/papi/v1/")[1] for r in cassette.requests] == [
        "campaign", f"campaign/{placed.vendor_order_id}",
        f"gifts?campaign_id={placed.vendor_order_id}"]
    assert cassette.all_played


def test_undeliverable() -> None:
    request = req("gc-bounce", email="ghost@bounce.example")
    with TAPE.use_cassette("undeliverable.yaml") as cassette:
        v = vendor()
        v.place_order(request)
        found = v.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.NEEDS_PERSON
    assert "UNDELIVERABLE" in found.detail and "g***@bounce.example" in found.detail
    assert cassette.all_played


def test_awaiting_funds_then_sent() -> None:
    request = req("gc-funds")
    with TAPE.use_cassette("awaiting_funds_then_sent.yaml") as cassette:
        v = vendor()
        placed = v.place_order(request)
        done = v.lookup(request.idempotency_key)
    assert placed.status is OrderStatus.PENDING and "top-up" in placed.detail
    assert done is not None and done.status is OrderStatus.COMPLETE
    assert cassette.all_played


def _raises(name: str, error: type[Exception], request: Any, sleeps: list[float] | None = None,
            **vendor_kw: Any) -> Any:
    with TAPE.use_cassette(name) as cassette, pytest.raises(error) as caught:
        vendor(sleeps, **vendor_kw).place_order(request)
    assert cassette.all_played
    return caught.value


def test_auth_401() -> None:
    error = _raises("auth_401.yaml", OperatorFacingError, req("gc-401"),
                    api_key="gb_wrong_key")
    assert error.status == 401 and not isinstance(error, ConfigFixable)
    assert "ERROR_UNAUTHORIZED" in str(error)


def test_invalid_brand_422() -> None:
    # A brand GET /brands/{code} does not know (ERROR_BRANDS_NO_SUCH_BRAND): the config.
    error = _raises("invalid_brand_422.yaml", ConfigFixable,
                    req("gc-brand", product="UNAVAILABLE"))
    assert "ERROR_CAMPAIGN_INVALID_BRAND" in str(error)
    assert "does not list product" in str(error)


def test_brand_unavailable_422() -> None:
    # The same refusal for a brand GET /brands/{code} lists at this price and currency:
    # unavailable, decided by the brand, not by the words.
    error = _raises("brand_unavailable_422.yaml", ProductUnavailable,
                    req("gc-soldout", product="soldoutus"))
    assert "ERROR_CAMPAIGN_INVALID_BRAND" in str(error) and "catalog lists it" in str(error)


def test_rate_limit_429() -> None:
    sleeps: list[float] = []
    error = _raises("rate_limit_429.yaml", TransientVendorError, req("gc-429"), sleeps)
    assert error.status == 429 and error.retry_after is None
    assert len(sleeps) == FAST.attempts - 1


def test_server_error_forever_with_a_page_that_is_not_json() -> None:
    error = _raises("server_error_forever.yaml", TransientVendorError, req("gc-500"))
    assert error.status == 500


def test_check() -> None:
    with TAPE.use_cassette("check.yaml") as cassette:
        result = vendor().check([("amazonus", Decimal("25"), "USD"),
                                 ("amazonuss", Decimal("25"), "USD"),
                                 ("starbucksus", Decimal("20"), "USD")])
    assert result.credentials_ok and result.balance is not None
    assert "1,965.25 USD" in result.balance
    assert [p.ok for p in result.products] == [True, False, False]
    assert "did you mean amazonus" in result.products[1].detail
    assert "not one of the brand's prices (5.00, 10.00, 25.00)" in result.products[2].detail
    assert any('"ERROR_BRANDS_NO_SUCH_BRAND"' in str(r["body"]["string"])
               for r in cassette.responses)
    assert cassette.all_played


def test_every_cassette_names_its_source() -> None:
    assert_sources_named(LIBRARY, EXPECTED)


def test_requests_carry_the_documented_keys() -> None:
    assert documented_creates(LIBRARY, SANDBOX_URL, REQUIRED) >= len(EXPECTED) - 1


def test_no_cassette_holds_a_secret() -> None:
    for name, path in cassette_files(LIBRARY).items():
        text = data_text(path)
        for interaction in interactions(path):
            sent = {k.lower() for k in interaction["request"].get("headers") or {}}
            assert "authorization" not in sent, name
        for secret in ("not-a-real-key", "gb_wrong_key", "Bearer "):
            assert secret not in text, name
        assert "127.0.0.1" not in text, name
        assert not re.search(r"giftbit\.com/campaign/campaignInfo", text), name
