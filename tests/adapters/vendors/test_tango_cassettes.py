"""The Tango Card adapter against Tango's own documented answers (vcrpy, offline).

The cassettes in ``cassettes/tango/`` were composed by hand from Tango's official client
(tangocard-raas-client-starter: swagger.json for the order, list, account and catalog
bodies; ApiError for the error body; messages.properties for each i18nKey's text) and
developers.tangocard.com (order states, idempotency, response classes and its example
error); each file's header names its source and what was adapted (see
``doc_cassettes.py``). Tango publishes schemas with placeholder values, so most bodies are
"schema, no example" with values chosen and credentials REDACTED.

Cases the documentation does not describe have no cassette; the stand-in tests cover them
(``test_tango.py``): a wrong ``base_url`` (a 404 without a Tango key), a Retry-After on 429
(none is documented), a 2xx that is not an order, lost answers and refused connections.
"""

from __future__ import annotations

import base64
import re
from decimal import Decimal
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
from poller.sandbox import tango as standin
from poller.vendors.tango import IN_PROCESS_WAIT, SANDBOX_URL, TangoVendor

from .doc_cassettes import (
    CASSETTES,
    assert_sources_named,
    cassette_files,
    data_text,
    documented_creates,
    interactions,
    replayer,
    response_json,
)
from .support import FAST, make_request

LIBRARY = CASSETTES / "tango"
AMAZON = "U561593"
REDACTED = "REDACTED"
EXPECTED = {
    "create_and_lookup.yaml", "repeat_create.yaml", "lookup_unknown.yaml",
    "pending_then_approved.yaml", "auth_401.yaml", "funds_402.yaml", "item_400.yaml",
    "item_unavailable_400.yaml", "in_process_409.yaml", "exists_409.yaml", "partial.yaml",
    "lookup_404_110.yaml", "recipient_400.yaml", "rate_limit_429.yaml",
    "server_error_then_success.yaml", "processed_then_5xx.yaml", "server_error_forever.yaml",
    "check.yaml",
}
REQUIRED = frozenset({
    "customerIdentifier", "accountIdentifier", "utid", "amount", "sendEmail",
    "recipient.email", "recipient.firstName", "externalRefID",
})
"""What POST /orders takes (swagger CreateOrderCriteria: amount always, recipient email and
firstName when sendEmail is true; externalRefID for idempotency)."""

TAPE = replayer(LIBRARY)


def vendor(sleeps: list[float] | None = None, **overrides: Any) -> TangoVendor:
    key = overrides.get("platform_key", "not-a-real-key")
    return TangoVendor(SANDBOX_URL, standin.PLATFORM_NAME, key, standin.CUSTOMER,
                       standin.ACCOUNT, policy=FAST,
                       sleep=(sleeps if sleeps is not None else []).append,
                       min_order_interval=0.0)


def req(rid: str, **kw: Any) -> Any:
    kw.setdefault("product", AMAZON)
    return make_request(rid, vendor="tango", **kw)


def codes(cassette: Any) -> list[int]:
    return [r["status"]["code"] for r in cassette.responses]


def test_create_and_lookup() -> None:
    request = req("tc-create")
    with TAPE.use_cassette("create_and_lookup.yaml") as cassette:
        v = vendor()
        placed = v.place_order(request)
        found = v.lookup(request.idempotency_key)
        v.close()
    assert placed.status is OrderStatus.COMPLETE
    assert placed.delivery == "sent by email to a***@example.com"
    assert placed.link is None  # the credentials are REDACTED, not a URL
    assert found is not None and found.vendor_order_id == placed.vendor_order_id
    assert found.status is OrderStatus.COMPLETE
    assert codes(cassette) == [201, 200]


def test_repeat_create() -> None:
    request = req("tc-repeat")
    with TAPE.use_cassette("repeat_create.yaml") as cassette:
        v = vendor()
        first = v.place_order(request)
        second = v.place_order(request)
    assert second.vendor_order_id == first.vendor_order_id
    assert codes(cassette) == [201, 200]


def test_lookup_unknown() -> None:
    with TAPE.use_cassette("lookup_unknown.yaml") as cassette:
        assert vendor().lookup("rptcneverplaced") is None
    assert cassette.all_played


def test_pending_then_approved() -> None:
    request = req("tc-pending", product="PENDING")
    with TAPE.use_cassette("pending_then_approved.yaml") as cassette:
        v = vendor()
        placed = v.place_order(request)
        still = v.lookup(request.idempotency_key)
        done = v.lookup(request.idempotency_key)
    assert placed.status is OrderStatus.PENDING
    assert still is not None and still.status is OrderStatus.PENDING
    assert done is not None and done.status is OrderStatus.COMPLETE
    assert cassette.all_played


def _raises(name: str, error: type[Exception], request: Any, sleeps: list[float] | None = None,
            **vendor_kw: Any) -> Any:
    with TAPE.use_cassette(name) as cassette, pytest.raises(error) as caught:
        vendor(sleeps, **vendor_kw).place_order(request)
    assert cassette.all_played
    return caught.value


def test_auth_401() -> None:
    error = _raises("auth_401.yaml", OperatorFacingError, req("tc-401"),
                    platform_key="tango_wrong_key")
    assert error.status == 401 and not isinstance(error, ConfigFixable)


def test_funds_402() -> None:
    error = _raises("funds_402.yaml", OperatorFacingError, req("tc-funds"))
    assert error.status == 402 and not isinstance(error, ConfigFixable)
    assert "not enough funds" in str(error) and "402.001" in str(error)


def test_item_400() -> None:
    """Tango's own example error: the key is only in ``errors[]``. The catalog, read after
    the refusal, does not list the UTID: the config."""
    error = _raises("item_400.yaml", ConfigFixable, req("tc-item", product="U000000"))
    assert error.status == 400 and "422.024" in str(error)
    assert "does not list product" in str(error)


def test_item_unavailable_400() -> None:
    """422.097 for an item the catalog lists at this currency and value: unavailable."""
    error = _raises("item_unavailable_400.yaml", ProductUnavailable,
                    req("tc-item-gone", product="UNAVAILABLE"))
    assert error.status == 400 and "422.097" in str(error)
    assert "catalog lists it" in str(error)


def test_in_process_409() -> None:
    sleeps: list[float] = []
    with TAPE.use_cassette("in_process_409.yaml") as cassette:
        placed = vendor(sleeps).place_order(req("tc-inprocess"))
    assert placed.status is OrderStatus.COMPLETE
    assert codes(cassette) == [409, 201]
    assert sleeps == [IN_PROCESS_WAIT]


def test_exists_409() -> None:
    request = req("tc-exists")
    with TAPE.use_cassette("exists_409.yaml") as cassette:
        v = vendor()
        first = v.place_order(request)
        again = v.place_order(request)
    assert again.vendor_order_id == first.vendor_order_id
    assert codes(cassette) == [201, 409, 200]


def test_partial() -> None:
    request = req("tc-partial")
    with TAPE.use_cassette("partial.yaml") as cassette:
        v = vendor()
        v.place_order(request)
        found = v.lookup(request.idempotency_key)
    assert found is not None and found.status is OrderStatus.NEEDS_PERSON
    assert cassette.all_played


def test_lookup_404_110() -> None:
    with TAPE.use_cassette("lookup_404_110.yaml") as cassette:
        assert vendor().lookup("rptcnothere") is None
    assert codes(cassette) == [404]


def test_recipient_400() -> None:
    error = _raises("recipient_400.yaml", AdvocateFacingError,
                    req("tc-recipient", email="x@invalid.example"))
    assert "recipient is invalid" in str(error) and "422.134" in str(error)


def test_rate_limit_429() -> None:
    sleeps: list[float] = []
    error = _raises("rate_limit_429.yaml", TransientVendorError, req("tc-429"), sleeps)
    assert error.status == 429 and error.retry_after is None
    assert len(sleeps) == FAST.attempts - 1


def test_server_error_then_success() -> None:
    with TAPE.use_cassette("server_error_then_success.yaml") as cassette:
        assert vendor().place_order(req("tc-503")).status is OrderStatus.COMPLETE
    assert codes(cassette) == [503, 503, 201]


def test_processed_then_5xx() -> None:
    """Tango's 5xx "may occasionally process": the replay with the same externalRefID
    answers with the order the failed attempt created."""
    with TAPE.use_cassette("processed_then_5xx.yaml") as cassette:
        result = vendor().place_order(req("tc-processed"))
    assert result.status is OrderStatus.COMPLETE
    assert codes(cassette) == [503, 200]


def test_server_error_forever() -> None:
    error = _raises("server_error_forever.yaml", TransientVendorError, req("tc-500"))
    assert error.status == 500


def test_check() -> None:
    with TAPE.use_cassette("check.yaml") as cassette:
        result = vendor().check([(AMAZON, Decimal("25"), "USD"),
                                 ("U561539", Decimal("25"), "USD")])
    assert result.credentials_ok and result.balance == "10,000.00 USD"
    assert [p.ok for p in result.products] == [True, False]
    assert "did you mean U561593" in result.products[1].detail
    assert cassette.all_played


def test_every_cassette_names_its_source() -> None:
    assert_sources_named(LIBRARY, EXPECTED)


def test_requests_carry_the_documented_keys() -> None:
    assert documented_creates(LIBRARY, SANDBOX_URL, REQUIRED) >= 15


def test_no_cassette_holds_a_secret() -> None:
    seen_credentials = 0
    for name, path in cassette_files(LIBRARY).items():
        text = data_text(path)
        for interaction in interactions(path):
            sent = {k.lower() for k in interaction["request"].get("headers") or {}}
            assert "authorization" not in sent, name
            body = response_json(interaction)
            reward = body.get("reward") if isinstance(body, dict) else None
            if isinstance(reward, dict):
                seen_credentials += 1
                assert set(reward["credentials"].values()) == {REDACTED}, name
                assert {c["value"] for c in reward["credentialList"]} == {REDACTED}, name
        for key in ("not-a-real-key", "tango_wrong_key"):
            basic = base64.b64encode(f"{standin.PLATFORM_NAME}:{key}".encode()).decode()
            assert basic not in text, name
        assert "not-a-real-key" not in text and "tango_wrong_key" not in text, name
        assert standin.LINK_BASE not in text and "127.0.0.1" not in text, name
        assert not re.search(r"https?://[^\s\"']*redeem", text), name
    assert seen_credentials > 0
