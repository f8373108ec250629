"""The Tango, Giftbit and HTTP-receiver stand-ins driven over HTTP, the way a demo or a test
in another process drives them: documented shapes, records per key, the admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from poller.sandbox import http_receiver
from poller.vendors.http import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, order_body, signature

from .support import (
    GiftbitStandin,
    ReceiverStandin,
    TangoStandin,
    giftbit_standin,
    make_request,
    receiver_standin,
    tango_standin,
)


@pytest.fixture
def tango() -> Iterator[tuple[TangoStandin, httpx.Client, httpx.Client]]:
    standin = tango_standin()
    with httpx.Client(base_url=standin.url, timeout=5) as admin, httpx.Client(
        base_url=standin.base_url + "/", timeout=5,
        auth=(standin.platform_name, standin.platform_key),
    ) as api:
        yield standin, admin, api


def _tango_order(ref: str | None, utid: str = "U561593", amount: float = 25.0,
                 email: str = "alice@example.com") -> dict[str, Any]:
    body: dict[str, Any] = {
        "customerIdentifier": "standin-customer", "accountIdentifier": "standin-account",
        "utid": utid, "amount": amount, "sendEmail": True,
        "recipient": {"firstName": "Alice", "email": email},
    }
    if ref is not None:
        body["externalRefID"] = ref
    return body


def test_tango_create_repeat_lookup_and_records(
    tango: tuple[TangoStandin, httpx.Client, httpx.Client],
) -> None:
    _, admin, api = tango
    first = api.post("orders", json=_tango_order("ext1"))
    repeat = api.post("orders", json=_tango_order("ext1"))
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json() == first.json()
    ref = first.json()["referenceOrderID"]
    assert api.get(f"orders/{ref}").json() == first.json()
    listed = api.get("orders", params={"externalRefID": "EXT1"}).json()["orders"]
    # The list carries no reward (swagger OrderListItemView): credentials only by id.
    assert [o["referenceOrderID"] for o in listed] == [ref] and "reward" not in listed[0]
    assert {k: v for k, v in first.json().items() if k != "reward"}.items() <= listed[0].items()
    assert api.get("orders", params={"externalRefID": "nope"}).json()["orders"] == []
    assert api.get("orders/RA-none").status_code == 404
    records = admin.get("/_standin/orders").json()
    assert records["counts"] == {"ext1": {"received": 2, "created": 1}}
    assert records["balance"] == "9975.00"


def test_tango_errors_have_the_documented_shape(
    tango: tuple[TangoStandin, httpx.Client, httpx.Client],
) -> None:
    standin, _, api = tango
    cases = [
        (_tango_order("e1", utid="UNAVAILABLE"), "utid"),
        (_tango_order("e2", utid="U000"), "utid"),
        (_tango_order("e3", utid="U426141", amount=30), "amount"),
        (_tango_order("e4", email="x@invalid.example"), "recipient.email"),
        (_tango_order("bad-ref!"), "externalRefID"),
    ]
    for body, path in cases:
        answer = api.post("orders", json=body)
        assert answer.status_code == 400
        data = answer.json()
        assert set(data) >= {"timestamp", "requestId", "path", "httpCode", "httpPhrase",
                             "errors"}
        assert data["errors"][0]["path"] == path
    unauthorized = httpx.get(standin.base_url + "/catalogs")
    assert unauthorized.status_code == 401 and unauthorized.json()["httpCode"] == 401


def test_tango_admin_knobs(tango: tuple[TangoStandin, httpx.Client, httpx.Client]) -> None:
    standin, admin, api = tango
    assert admin.post("/_standin/faults", json={"status": 503, "count": 1}).status_code == 200
    assert api.get("catalogs").status_code == 503
    assert api.get("catalogs").status_code == 200
    assert standin.state.catalog_calls == 1
    admin.post("/_standin/process_then_fail", json={"status": 502})
    assert api.post("orders", json=_tango_order("ptf")).status_code == 502
    assert api.post("orders", json=_tango_order("ptf")).status_code == 200
    admin.post("/_standin/balance", json={"amount": 5})
    poor = api.post("orders", json=_tango_order("poor"))
    assert poor.status_code == 402 and poor.json()["i18nKey"] == "402.001"
    bad = api.post("orders", json=_tango_order("bad", utid="U000000"))
    assert bad.status_code == 400
    # A field error as in Tango's example: the key in errors[] only.
    assert bad.json()["errors"][0]["i18nKey"] == "422.024" and "i18nKey" not in bad.json()
    admin.post("/_standin/balance", json={"amount": 500})
    pending = api.post("orders", json=_tango_order("pend", utid="PENDING")).json()
    assert pending["status"] == "PENDING" and "reward" not in pending
    approved = admin.post("/_standin/orders/pend/approve").json()
    assert approved["status"] == "COMPLETE" and "reward" in approved
    assert admin.post("/_standin/orders/pend/status", json={"status": "FAILED"}).json()[
        "status"] == "FAILED"
    admin.post("/_standin/garbage", json={"count": 1})
    assert api.get("catalogs").text.startswith('{"referenceOrderID": "RA<html>')
    admin.post("/_standin/rate_limit", json={"per_second": 1, "retry_after": "1"})
    api.get("catalogs")
    limited = api.get("catalogs")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    admin.post("/_standin/reset")
    assert admin.get("/_standin/orders").json()["orders"] == []


@pytest.fixture
def giftbit() -> Iterator[tuple[GiftbitStandin, httpx.Client, httpx.Client]]:
    standin = giftbit_standin()
    with httpx.Client(base_url=standin.url, timeout=5) as admin, httpx.Client(
        base_url=standin.base_url + "/", timeout=5,
        headers={"Authorization": f"Bearer {standin.api_key}"},
    ) as api:
        yield standin, admin, api


def _campaign(ident: str, brand: str = "amazonus", cents: int = 2500,
              email: str = "alice@example.com") -> dict[str, Any]:
    return {"id": ident, "contacts": [{"firstname": "A", "lastname": "B", "email": email}],
            "price_in_cents": cents, "brand_codes": [brand], "subject": "s", "message": "m"}


def test_giftbit_campaigns_and_records(
    giftbit: tuple[GiftbitStandin, httpx.Client, httpx.Client],
) -> None:
    _, admin, api = giftbit
    first = api.post("campaign", json=_campaign("c1"))
    assert first.status_code == 200
    assert first.json()["campaign"]["status"] == "API_CREATING"
    assert first.json()["info"]["code"] == "INFO_CAMPAIGN_CREATED"
    assert api.post("campaign", json=_campaign("c1")).json()["error"]["code"] == \
        "ERROR_DUPLICATE_CAMPAIGN_ID"
    admin.post("/_standin/repeat_mode", json={"mode": "replay"})
    sent = api.get("campaign/c1").json()
    assert sent["campaign"]["status"] == "CAMPAIGN_CREATED"
    assert sent["info"]["code"] == "INFO_CAMPAIGN_RETRIEVED"
    assert api.post("campaign", json=_campaign("c1")).json()["campaign"] == sent["campaign"]
    gifts = api.get("gifts", params={"campaign_id": "c1"}).json()
    assert [g["delivery_status"] for g in gifts["gifts"]] == ["DELIVERED"]
    assert gifts["total_count"] == 1
    admin.post("/_standin/campaigns/c1/delivery", json={"delivery_status": "COMPLAINT"})
    assert api.get("gifts", params={"campaign_id": "c1"}).json()["gifts"][0][
        "delivery_status"] == "COMPLAINT"
    assert api.get("campaign/none").status_code == 404
    assert api.post("campaign", json=_campaign("bad-id")).status_code == 422
    records = admin.get("/_standin/campaigns").json()
    assert records["counts"]["c1"] == {"received": 3, "created": 1}
    assert records["funds"]["USD"] == 1_000_000 - 2500


def test_giftbit_funds_and_approvals(
    giftbit: tuple[GiftbitStandin, httpx.Client, httpx.Client],
) -> None:
    _, admin, api = giftbit
    admin.post("/_standin/funds", json={"currency": "USD", "cents": 1000})
    waiting = api.post("campaign", json=_campaign("w1")).json()
    assert waiting["info"]["code"] == "INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED"
    assert waiting["campaign"]["status"] == "AWAITING_FUNDS"
    assert api.get("funds").json()["fundsbycurrency"]["USD"]["available_in_cents"] == 1000
    admin.post("/_standin/funds", json={"currency": "USD", "cents": 3000})
    assert api.get("campaign/w1").json()["campaign"]["status"] == "CAMPAIGN_CREATED"
    assert api.get("funds").json()["fundsbycurrency"]["USD"]["available_in_cents"] == 500
    held = api.post("campaign", json=_campaign("p1", brand="PENDING")).json()
    assert held["campaign"]["status"] == "API_CREATING"
    assert api.get("gifts", params={"campaign_id": "p1"}).json()["gifts"] == []
    assert admin.post("/_standin/campaigns/p1/approve").json()["campaign"]["status"] == \
        "CAMPAIGN_CREATED"
    for body, code in ((_campaign("x1", brand="UNAVAILABLE"), "ERROR_CAMPAIGN_INVALID_BRAND"),
                       (_campaign("x2", cents=100), "ERROR_CAMPAIGN_INVALID_BRAND"),
                       (_campaign("x4", brand="starbucksus", cents=750),
                        "ERROR_CAMPAIGN_INVALID_BRAND"),
                       (_campaign("x5", brand="soldoutus"), "ERROR_CAMPAIGN_INVALID_BRAND"),
                       (_campaign("x3", email="a@invalid.example"),
                        "ERROR_CAMPAIGN_NO_CONTACTS")):
        answer = api.post("campaign", json=body)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == code
    brand = api.get("brands/starbucksus").json()["brand"]
    assert brand["fund_currencyisocode"] == "USD" and brand["variable_price"] is False
    assert brand["allowed_prices_in_cents"] == [500, 1000, 2500]
    unknown = api.get("brands/nope")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "ERROR_BRANDS_NO_SUCH_BRAND"
    assert api.get("brands/soldoutus").json()["brand"]["brand_code"] == "soldoutus"
    assert len(api.get("brands").json()["brands"]) == 5


@pytest.fixture
def receiver() -> Iterator[tuple[ReceiverStandin, httpx.Client]]:
    standin = receiver_standin()
    with httpx.Client(base_url=standin.url, timeout=5) as admin:
        yield standin, admin


def _post(standin: ReceiverStandin, rid: str, **kw: Any) -> httpx.Response:
    request = make_request(rid, vendor="http", **kw)
    body = order_body(request)
    return httpx.post(standin.hook_url, content=body, headers={
        IDEMPOTENCY_HEADER: request.idempotency_key,
        SIGNATURE_HEADER: signature(standin.secret, body, int(time.time())),
    })


def test_receiver_rules_and_admin(receiver: tuple[ReceiverStandin, httpx.Client]) -> None:
    standin, admin = receiver
    assert _post(standin, "r1").json()["status"] == "accepted"
    assert _post(standin, "r1").json()["status"] == "accepted"
    refused = _post(standin, "r2", product="UNAVAILABLE").json()
    assert refused == {"status": "refused", "order_id": "HOOK-000002",
                       "message": http_receiver.OUT_OF_STOCK}
    assert _post(standin, "r3", email="b@invalid.example").json()["message"] == \
        http_receiver.BAD_EMAIL
    key = make_request("r4").idempotency_key
    assert _post(standin, "r4", product="PENDING").json()["status"] == "pending"
    assert admin.post(f"/_standin/orders/{key}/approve").json()["status"] == "accepted"
    assert _post(standin, "r4", product="PENDING").json()["status"] == "accepted"
    admin.post("/_standin/faults", json={"status": 500, "count": 1})
    assert _post(standin, "r5").status_code == 500
    admin.post("/_standin/secret", json={"secret": "rotated-secret-000000"})
    assert _post(standin, "r6").status_code == 401
    records = admin.get("/_standin/orders").json()
    assert records["counts"][make_request("r1").idempotency_key] == {"received": 2,
                                                                     "created": 1}
    assert [r["outcome"] for r in records["received"]][-2:] == ["forced", "bad_signature"]
    admin.post("/_standin/reset")
    assert _post(standin, "r6").status_code == 200  # the secret is back


def test_tango_conflict_and_lookup_switches_over_http(
    tango: tuple[TangoStandin, httpx.Client, httpx.Client],
) -> None:
    standin, admin, api = tango
    admin.post("/_standin/in_process", json={"count": 1})
    busy = api.post("orders", json=_tango_order("sw"))
    assert busy.status_code == 409 and busy.json()["i18nKey"] == "409.002"
    assert api.post("orders", json=_tango_order("sw")).status_code == 201
    admin.post("/_standin/switches", json={"repeat_conflict": True, "empty_lookup_404": True})
    exists = api.post("orders", json=_tango_order("sw"))
    assert exists.status_code == 409 and exists.json()["i18nKey"] == "409.024"
    empty = api.get("orders", params={"externalRefID": "nothere"})
    assert empty.status_code == 404 and empty.json()["i18nKey"] == "404.110"
    assert standin.state.created_for("sw") == 1
