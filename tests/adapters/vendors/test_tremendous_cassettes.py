"""The Tremendous adapter against Tremendous' own documented answers (vcrpy, offline).

The cassettes in ``cassettes/tremendous/`` were composed by hand from Tremendous'
documentation (developers.tremendous.com: error handling, rate limiting, link delivery,
the order and reward objects) and its OpenAPI spec and official SDKs; each file's header
names its source and what was adapted (see ``doc_cassettes.py``). They replay against the
sandbox host with record mode "none".

Cases the documentation does not describe have no cassette; the stand-in tests cover them
(``test_tremendous.py``): a wrong ``base_url`` (what another path answers is undocumented),
a Retry-After on 429 (none is documented), a 2xx that is not an order, lost answers and
refused connections. A product refused although listed has one, composed from the
documented error object and product (its header says what is chosen).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from poller.domain.errors import (
    AdvocateFacingError,
    ConfigFixable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
)
from poller.domain.model import OrderStatus
from poller.sandbox.tremendous import LINK_BASE
from poller.vendors.tremendous import SANDBOX_URL, TremendousVendor

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

LIBRARY = CASSETTES / "tremendous"
AMAZON = "OKMHM2X2OHYV"
"""The Amazon.com gift card in Tremendous' own examples."""
REDACTED_LINK = "https://redacted.invalid/reward-link"
EXPECTED = {
    "create_and_lookup.yaml", "repeat_create.yaml", "lookup_unknown.yaml", "auth_401.yaml",
    "funds_402.yaml", "product_422.yaml", "unknown_product_422.yaml", "recipient_422.yaml",
    "config_422.yaml", "rate_limit_429.yaml", "server_error_then_success.yaml",
    "server_error_forever.yaml", "pending_then_approved.yaml", "accepted_202.yaml",
    "conflict_409.yaml", "bounced_delivery.yaml",
}
REQUIRED = frozenset({
    "external_id", "payment.funding_source_id", "reward.products",
    "reward.value.denomination", "reward.value.currency_code", "reward.recipient.name",
    "reward.recipient.email", "reward.delivery.method",
})
"""What POST /orders takes (the create-order reference, one reward with its products)."""

TAPE = replayer(LIBRARY)


def vendor(sleeps: list[float] | None = None, **overrides: Any) -> TremendousVendor:
    args: dict[str, Any] = {"base_url": SANDBOX_URL, "api_key": "not-a-real-key",
                            "policy": FAST, "sleep": (sleeps if sleeps is not None else
                                                      []).append}
    args.update(overrides)
    return TremendousVendor(**args)


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", AMAZON)
    return make_request(rid, **kw)


def codes(cassette: Any) -> list[int]:
    return [r["status"]["code"] for r in cassette.responses]


def test_create_and_lookup() -> None:
    request = req("cas-create")
    with TAPE.use_cassette("create_and_lookup.yaml") as cassette:
        v = vendor()
        placed = v.place_order(request)
        found = v.lookup(request.idempotency_key)
        v.close()
    assert placed.status is OrderStatus.COMPLETE
    assert placed.delivery == "sent by email to a***@example.com"
    assert placed.link == REDACTED_LINK
    assert found is not None and found.vendor_order_id == placed.vendor_order_id
    assert cassette.all_played


def test_repeat_create() -> None:
    request = req("cas-repeat")
    with TAPE.use_cassette("repeat_create.yaml") as cassette:
        v = vendor()
        first = v.place_order(request)
        second = v.place_order(request)
    assert second.vendor_order_id == first.vendor_order_id
    assert second.status is OrderStatus.COMPLETE
    assert codes(cassette) == [200, 201]


def test_lookup_unknown() -> None:
    with TAPE.use_cassette("lookup_unknown.yaml") as cassette:
        assert vendor().lookup("cas-never-placed") is None
    assert cassette.all_played


def _raises(name: str, error: type[Exception], request: Any, sleeps: list[float] | None = None,
            **vendor_kw: Any) -> Any:
    with TAPE.use_cassette(name) as cassette, pytest.raises(error) as caught:
        vendor(sleeps, **vendor_kw).place_order(request)
    assert cassette.all_played
    return caught.value


def test_auth_401() -> None:
    error = _raises("auth_401.yaml", OperatorFacingError, req("cas-401"),
                    api_key="tk_wrong_key")
    assert error.status == 401 and not isinstance(error, ConfigFixable)
    assert "Production Access not available" in str(error)


def test_funds_402() -> None:
    error = _raises("funds_402.yaml", OperatorFacingError, req("cas-402"))
    assert error.status == 402 and not isinstance(error, ConfigFixable)
    assert "not enough funds" in str(error)


def test_product_422() -> None:
    # A 422 about a product GET /products/{id} lists at this currency and value: unavailable,
    # decided by the catalog, whatever the words.
    error = _raises("product_422.yaml", ProductUnavailable,
                    req("cas-422p", product="UNAVAILABLE"))
    assert error.status == 422 and "catalog lists it" in str(error)


def test_unknown_product_422() -> None:
    # The same kind of 422 for a product GET /products/{id} does not know (404): the config.
    error = _raises("unknown_product_422.yaml", ConfigFixable,
                    req("cas-422u", product="UNKNOWN-GIFT"))
    assert error.status == 422 and "does not list product" in str(error)
    assert "routing config" in str(error)


def test_recipient_422() -> None:
    error = _raises("recipient_422.yaml", AdvocateFacingError,
                    req("cas-422r", email="someone@invalid.example"))
    assert "recipient is invalid" in str(error)


def test_config_422() -> None:
    error = _raises("config_422.yaml", ConfigFixable, req("cas-422c"),
                    funding_source_id="FS-UNKNOWN")
    assert error.status == 422 and "[vendors.tremendous]" in str(error)


def test_rate_limit_429() -> None:
    sleeps: list[float] = []
    error = _raises("rate_limit_429.yaml", TransientVendorError, req("cas-429"), sleeps)
    assert error.status == 429 and error.retry_after is None
    assert "Too many requests" in str(error)  # read from the singular "error" key
    assert len(sleeps) == FAST.attempts - 1


def test_server_error_then_success() -> None:
    with TAPE.use_cassette("server_error_then_success.yaml") as cassette:
        result = vendor().place_order(req("cas-500"))
    assert result.status is OrderStatus.COMPLETE
    assert codes(cassette) == [500, 500, 200]


def test_server_error_forever() -> None:
    error = _raises("server_error_forever.yaml", TransientVendorError, req("cas-500f"))
    assert error.status == 500 and "Something went wrong" in str(error)


def test_pending_then_approved() -> None:
    request = req("cas-pending", product="PENDING")
    with TAPE.use_cassette("pending_then_approved.yaml") as cassette:
        v = vendor()
        placed = v.place_order(request)
        found = v.lookup(request.idempotency_key)
    assert placed.status is OrderStatus.PENDING and placed.link is None
    assert found is not None and found.status is OrderStatus.COMPLETE
    assert cassette.all_played


def test_accepted_202() -> None:
    request = req("cas-202")
    with TAPE.use_cassette("accepted_202.yaml") as cassette:
        v = vendor()
        placed = v.place_order(request)
        found = v.lookup(request.idempotency_key)
    assert placed.status is OrderStatus.PENDING
    assert found is not None and found.status is OrderStatus.COMPLETE
    assert codes(cassette) == [202, 200]


def test_conflict_409() -> None:
    """The same external_id with another amount: 409, and the first order is found."""
    first_request = req("cas-409")
    changed = req("cas-409", amount="50")
    assert changed.idempotency_key == first_request.idempotency_key
    with TAPE.use_cassette("conflict_409.yaml") as cassette:
        v = vendor()
        first = v.place_order(first_request)
        again = v.place_order(changed)
    assert again.vendor_order_id == first.vendor_order_id
    assert codes(cassette) == [200, 409, 200]


def test_bounced_delivery() -> None:
    with TAPE.use_cassette("bounced_delivery.yaml") as cassette:
        placed = vendor().place_order(req("cas-bounce", email="ghost@bounce.example"))
    assert placed.status is OrderStatus.NEEDS_PERSON
    assert "bounced" in placed.detail and "g***@bounce.example" in placed.detail
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
        assert "Bearer " not in text, name
        assert "not-a-real-key" not in text and "tk_wrong_key" not in text, name
        assert "/rewards/payout/" not in text and LINK_BASE not in text, name
        assert "127.0.0.1" not in text, name
        for link in re.findall(r'"link": "([^"]+)"', text):
            assert link == REDACTED_LINK, name


def test_a_request_unlike_the_cassettes_is_not_answered() -> None:
    """The JSON body is part of the match: another amount finds no answer on tape."""
    from vcr.errors import CannotOverwriteExistingCassetteException

    with TAPE.use_cassette("funds_402.yaml"), \
            pytest.raises(CannotOverwriteExistingCassetteException):
        vendor().place_order(req("cas-402", amount="26"))
