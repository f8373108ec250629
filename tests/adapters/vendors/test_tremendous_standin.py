"""The Tremendous stand-in, driven over HTTP the way a test in another process drives it."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest

from poller.sandbox.tremendous import create_app

from .support import Standin


@pytest.fixture
def admin(standin: Standin) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin.url, timeout=5) as client:
        yield client


@pytest.fixture
def api(standin: Standin) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=standin.base_url + "/",
        headers={"Authorization": f"Bearer {standin.api_key}"}, timeout=5,
    ) as client:
        yield client


def _order_body(external_id: str | None, *, product: str = "AMZN-US",
                email: str = "alice@example.com", amount: float = 25.0) -> dict[str, object]:
    body: dict[str, object] = {
        "payment": {"funding_source_id": "balance"},
        "reward": {
            "products": [product],
            "value": {"denomination": amount, "currency_code": "USD"},
            "recipient": {"name": "Alice", "email": email},
            "delivery": {"method": "EMAIL"},
        },
    }
    if external_id is not None:
        body["external_id"] = external_id
    return body


def test_auth_is_required(standin: Standin) -> None:
    with httpx.Client(base_url=standin.base_url + "/") as anonymous:
        answer = anonymous.get("products")
        assert answer.status_code == 401
        assert answer.json()["errors"]["message"]
        wrong = anonymous.get("products", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_create_repeat_and_records(api: httpx.Client, admin: httpx.Client) -> None:
    first = api.post("orders", json=_order_body("ext-1"))
    repeat = api.post("orders", json=_order_body("ext-1"))
    assert first.status_code == 200  # new
    assert repeat.status_code == 201  # the external_id was used: the first order
    assert repeat.json() == first.json()
    assert api.get("orders/ext-1").json() == first.json()
    order_id = first.json()["order"]["id"]
    assert api.get(f"orders/{order_id}").json() == first.json()
    assert api.get("orders/ext-unknown").status_code == 404

    records = admin.get("/_standin/orders").json()
    assert records["counts"] == {"ext-1": {"received": 2, "created": 1}}
    assert [r["outcome"] for r in records["received"]] == ["created", "repeat"]
    assert len(records["orders"]) == 1
    assert records["balance_cents"] == 1_000_000 - 2500


def test_without_external_id_every_create_is_new(api: httpx.Client, standin: Standin) -> None:
    assert api.post("orders", json=_order_body(None)).status_code == 200
    assert api.post("orders", json=_order_body(None)).status_code == 200
    assert len(standin.state.orders) == 2


def test_built_in_refusals(api: httpx.Client) -> None:
    product = api.post("orders", json=_order_body("e1", product="UNAVAILABLE"))
    assert product.status_code == 422
    assert "products" in product.json()["errors"]["payload"]["reward"]
    recipient = api.post("orders", json=_order_body("e2", email="x@invalid.example"))
    assert recipient.status_code == 422
    assert "recipient" in recipient.json()["errors"]["payload"]["reward"]
    assert api.post("orders", content=b"{not json").status_code == 400


def test_balance_and_402(api: httpx.Client, admin: httpx.Client) -> None:
    assert admin.post("/_standin/balance", json={"cents": 1000}).status_code == 200
    assert api.get("funding_sources").json()["funding_sources"][0]["meta"][
        "available_cents"] == 1000
    assert api.post("orders", json=_order_body("e-poor")).status_code == 402
    admin.post("/_standin/balance", json={"cents": 5000})
    assert api.post("orders", json=_order_body("e-poor")).status_code == 200
    assert api.get("funding_sources").json()["funding_sources"][0]["meta"][
        "available_cents"] == 2500


def test_catalog(api: httpx.Client) -> None:
    ids = [p["id"] for p in api.get("products").json()["products"]]
    assert "AMZN-US" in ids and "PENDING" in ids
    assert api.get("products/ANYTHING").json()["product"]["id"] == "ANYTHING"
    assert api.get("products/UNKNOWN-GIFT").status_code == 404
    assert api.get("products/UNAVAILABLE").json()["product"]["id"] == "UNAVAILABLE"
    assert "UNAVAILABLE" in ids  # listed, yet every order for it is refused


def test_pending_approve_and_status(api: httpx.Client, admin: httpx.Client) -> None:
    created = api.post("orders", json=_order_body("e-p", product="PENDING")).json()["order"]
    assert created["status"] == "PENDING APPROVAL"
    assert created["rewards"][0]["delivery"]["status"] == "PENDING"
    approved = admin.post("/_standin/orders/e-p/approve")
    assert approved.json()["order"]["status"] == "EXECUTED"
    assert api.get("orders/e-p").json()["order"]["rewards"][0]["delivery"]["status"] == "SUCCEEDED"
    admin.post(f"/_standin/orders/{created['id']}/status", json={"status": "CANCELED"})
    assert api.get("orders/e-p").json()["order"]["status"] == "CANCELED"
    assert admin.post("/_standin/orders/nope/approve").status_code == 404


def test_forced_faults(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/_standin/faults", json={"status": 503, "count": 2})
    admin.post("/_standin/faults", json={"status": 429, "count": 1, "retry_after": "7"})
    assert api.get("products").status_code == 503
    assert api.get("products").status_code == 503
    limited = api.get("products")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert api.get("products").status_code == 200


def test_faults_filtered_by_method_and_path_and_cleared(
    api: httpx.Client, admin: httpx.Client, standin: Standin,
) -> None:
    admin.post("/_standin/faults", json={"status": 500, "count": None, "method": "POST",
                                         "path": "/orders"})
    assert api.get("orders/x").status_code == 404
    for _ in range(3):
        assert api.post("orders", json=_order_body("e-f")).status_code == 500
    assert standin.state.counts()["e-f"] == {"received": 3, "created": 0}
    admin.post("/_standin/faults/clear")
    assert api.post("orders", json=_order_body("e-f")).status_code == 200


def test_rate_limit(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/_standin/rate_limit", json={"per_second": 2, "retry_after": "1"})
    codes = [api.get("products").status_code for _ in range(4)]
    assert codes[:2] == [200, 200]
    assert 429 in codes[2:]
    admin.post("/_standin/rate_limit", json={"per_second": None})
    assert api.get("products").status_code == 200


def test_delay(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/_standin/delay", json={"seconds": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        api.get("products", timeout=0.1)
    admin.post("/_standin/delay", json={"seconds": 0})
    assert api.get("products").status_code == 200


@pytest.mark.parametrize("mode", ["drop", "hang"])
def test_lose_answer_creates_the_order(
    api: httpx.Client, admin: httpx.Client, standin: Standin, mode: str,
) -> None:
    admin.post("/_standin/lose", json={"count": 1, "mode": mode, "hang_seconds": 5})
    with pytest.raises(httpx.TransportError):
        api.post("orders", json=_order_body("e-lost"), timeout=0.3)
    assert standin.state.created_for("e-lost") == 1
    assert api.post("orders", json=_order_body("e-lost")).status_code == 201


def test_hang_answers_late_when_the_client_waits(
    api: httpx.Client, standin: Standin,
) -> None:
    standin.state.lose_answers(1, mode="hang", hang_seconds=0.2)
    answer = api.post("orders", json=_order_body("e-late"), timeout=3)
    assert answer.status_code == 200


def test_garbage(api: httpx.Client, admin: httpx.Client, standin: Standin) -> None:
    admin.post("/_standin/garbage", json={"count": 1})
    answer = api.post("orders", json=_order_body("e-g"))
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()
    assert standin.state.created_for("e-g") == 1
    assert api.get("orders/e-g").status_code == 200


def test_reset(api: httpx.Client, admin: httpx.Client, standin: Standin) -> None:
    api.post("orders", json=_order_body("e-r"))
    admin.post("/_standin/faults", json={"status": 500, "count": None})
    admin.post("/_standin/reset")
    assert standin.state.orders == {}
    assert admin.get("/_standin/orders").json()["counts"] == {}
    assert api.get("products").status_code == 200


def test_concurrent_creates_with_one_key_make_one_order(
    api: httpx.Client, standin: Standin,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: api.post("orders", json=_order_body("e-c")).status_code,
                              range(16)))
    assert codes.count(200) == 1 and codes.count(201) == 15
    assert standin.state.counts()["e-c"] == {"received": 16, "created": 1}


def test_state_is_reachable_from_the_app() -> None:
    app = create_app()
    assert app.state.tremendous.orders == {}


def test_background_creates_answer_202_and_the_order_is_found(
    api: httpx.Client, admin: httpx.Client,
) -> None:
    admin.post("/_standin/background", json={"count": 1})
    assert api.post("orders", json=_order_body("e-bg")).status_code == 202
    assert api.get("orders/e-bg").status_code == 200


def test_a_bounced_address_is_executed_with_a_failed_delivery(
    api: httpx.Client, admin: httpx.Client,
) -> None:
    body = _order_body("e-bounce")
    body["reward"]["recipient"]["email"] = "bob@bounce.example"
    order = api.post("orders", json=body).json()["order"]
    assert order["status"] == "EXECUTED"
    assert order["rewards"][0]["delivery"]["status"] == "FAILED"
    admin.post("/_standin/orders/e-bounce/delivery", json={"status": "SUCCEEDED"})
    assert api.get("orders/e-bounce").json()["order"]["rewards"][0]["delivery"]["status"] == \
        "SUCCEEDED"


def test_a_429_uses_the_singular_error_key(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/_standin/rate_limit", json={"per_second": 1})
    codes = [api.get("products") for _ in range(3)]
    limited = next(a for a in codes if a.status_code == 429)
    assert "error" in limited.json() and "errors" not in limited.json()
