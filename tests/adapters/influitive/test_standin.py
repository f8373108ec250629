"""The stand-in's documented shapes and its admin API, driven over HTTP as a test in another
process would."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from poller.sandbox.influitive import Fault, InfluitiveState, create_app

from .conftest import ORG, TOKEN, Standin, item

AUTH = {"Authorization": f"Token {TOKEN}", "X_ORG_ID": ORG}


@pytest.fixture
def http(standin: Standin) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin.url, timeout=5) as client:
        yield client


def test_list_shape(standin: Standin, http: httpx.Client) -> None:
    standin.state.seed([item(1), item(2), item(3)])
    standin.state.configure(page_size=2)

    first = http.get("/reward_redemptions", headers=AUTH).json()
    last = http.get(first["links"]["next"], headers=AUTH).json()

    assert [i["id"] for i in first["reward_redemptions"]] == [1, 2]
    assert all("contact" not in i and "contact_id" in i for i in first["reward_redemptions"])
    assert [c["id"] for c in first["contacts"]] == [1001, 1002]
    assert first["links"] == {"self": "/reward_redemptions?page=1",
                              "next": "/reward_redemptions?page=2"}
    assert last["links"] == {"self": "/reward_redemptions?page=2", "next": None}
    assert [i["id"] for i in last["reward_redemptions"]] == [3]


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": f"Token {TOKEN}"}, {"X_ORG_ID": ORG},
    {"Authorization": f"Bearer {TOKEN}", "X_ORG_ID": ORG},
    {"Authorization": f"Token {TOKEN}", "X-ORG-ID": ORG},
])
def test_auth_is_checked(http: httpx.Client, headers: dict[str, str]) -> None:
    response = http.get("/reward_redemptions", headers=headers)
    assert (response.status_code, response.content) == (401, b"")
    assert response.headers["WWW-Authenticate"] == "Token realm=Api"


def test_admin_api_drives_everything(standin: Standin, http: httpx.Client) -> None:
    seeded = http.post("/_standin/redemptions", json={
        "reward_redemptions": [item(1), item(2)],
        "contacts": [{"id": 5, "email": "c@example.com"}],
    })
    assert seeded.status_code == 201 and seeded.json() == {"seeded": 2, "outstanding": 2}
    assert http.post("/_standin/redemptions", json=item(3)).json()["outstanding"] == 3
    assert http.post("/_standin/redemptions", json=[item(4)]).json()["outstanding"] == 4
    assert http.post("/_standin/redemptions", json="nope").status_code == 400

    faults = http.post("/_standin/faults", json={
        "page_size": 3, "absolute_links": True, "delay": 0,
        "queue": [{"status": 429, "retry_after": 7}, {"garbage": "html", "match": "page=2"}],
    })
    assert faults.status_code == 200
    assert faults.json()["page_size"] == 3
    assert [f["status"] for f in faults.json()["queue"]] == [429, None]

    limited = http.get("/reward_redemptions", headers=AUTH)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    page1 = http.get("/reward_redemptions", headers=AUTH).json()
    assert page1["links"]["next"] == f"{standin.url}/reward_redemptions?page=2"
    html = http.get(page1["links"]["next"], headers=AUTH)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")

    decided = http.post("/_standin/redemptions/2/decide", json={"verb": "refuse", "message": "m"})
    assert decided.status_code == 200
    again = http.post("/reward_redemptions/2/decision/fulfill", json={"message": "x"},
                      headers=AUTH)
    assert again.status_code == 422 and "already been refused" in again.json()["errors"][0]
    ok = http.post("/reward_redemptions/1/decision/fulfill", json={"message": "hi"},
                   headers=AUTH)
    assert ok.status_code == 200 and ok.json()["reward_redemption"]["stage"] == "fulfilled"

    decisions = http.get("/_standin/decisions").json()["decisions"]
    assert [(d["id"], d["verb"], d["message"], d["accepted"], d["source"]) for d in decisions] == [
        ("2", "refuse", "m", True, "admin"), ("2", "fulfill", "x", False, "api"),
        ("1", "fulfill", "hi", True, "api")]
    outstanding = http.get("/_standin/redemptions").json()["reward_redemptions"]
    assert [i["id"] for i in outstanding] == [3, 4]
    requests = http.get("/_standin/requests").json()["requests"]
    assert [r["status"] for r in requests] == [429, 200, 200, 422, 200]

    assert http.post("/_standin/faults", json={"queue": [{"bogus": 1}]}).status_code == 400
    assert http.post("/_standin/faults", json={"page_size": 0}).status_code == 400
    assert http.post("/_standin/reset").status_code == 200
    assert standin.state.outstanding() == [] and standin.state.decisions() == []
    assert http.get("/_standin/faults").json()["page_size"] == 25


def test_forced_status_applies_before_auth(standin: Standin, http: httpx.Client) -> None:
    standin.state.add_faults(Fault(status=503))
    assert http.get("/reward_redemptions").status_code == 503
    assert http.get("/reward_redemptions").status_code == 401


def test_truncated_is_half_the_real_page(standin: Standin, http: httpx.Client) -> None:
    standin.state.seed([item(1)])
    whole = http.get("/reward_redemptions", headers=AUTH).content
    standin.state.add_faults(Fault(garbage="truncated"))
    cut = http.get("/reward_redemptions", headers=AUTH).content
    assert whole[: len(cut)] == cut and len(cut) == len(whole) // 2


def test_app_factory_defaults() -> None:
    app = create_app()
    assert isinstance(app.state.influitive, InfluitiveState)


def test_delay_only_fault_answers_normally_late(standin: Standin, http: httpx.Client) -> None:
    standin.state.seed([item(1)])
    standin.state.add_faults(Fault(delay=0.2))
    started = time.monotonic()
    response = http.get("/reward_redemptions", headers=AUTH)
    assert time.monotonic() - started >= 0.2
    assert response.status_code == 200
    assert [i["id"] for i in response.json()["reward_redemptions"]] == [1]


def test_after_fault_replaces_one_answer_only(
    standin: Standin, http: httpx.Client
) -> None:
    standin.state.seed([item(1)])
    standin.state.add_faults(Fault(status=500, after=True))
    assert http.get("/reward_redemptions", headers=AUTH).status_code == 500
    assert http.get("/reward_redemptions", headers=AUTH).status_code == 200


def test_the_firewall_blocks_past_its_limit_as_aws_waf_does(
    standin: Standin, http: httpx.Client
) -> None:
    standin.state.seed([item(1)])
    knobs = http.post("/_standin/faults", json={"waf_limit": 2, "waf_window": 60}).json()
    assert (knobs["waf_limit"], knobs["waf_mode"]) == (2, "block")

    statuses = [http.get("/reward_redemptions", headers=AUTH) for _ in range(3)]
    decision = http.post("/reward_redemptions/1/decision/fulfill", headers=AUTH,
                         json={"message": "x"})

    assert [r.status_code for r in statuses] == [200, 200, 403]
    blocked = statuses[2]
    assert "www-authenticate" not in blocked.headers
    assert blocked.headers["content-type"].startswith("text/html")
    assert "403 Forbidden" in blocked.text
    assert decision.status_code == 403  # blocked requests count too: still past the limit
    assert standin.state.outstanding_ids() == ["1"]
    assert standin.state.waf_blocked() == 2
    assert [d.accepted for d in standin.state.decisions()] == [False]


def test_queued_firewall_answers(standin: Standin, http: httpx.Client) -> None:
    http.post("/_standin/faults", json={"queue": [{"waf": "challenge"}, {"waf": "captcha"}]})

    challenge = http.get("/reward_redemptions", headers=AUTH)
    captcha = http.get("/reward_redemptions", headers=AUTH)

    assert (challenge.status_code, challenge.headers["x-amzn-waf-action"]) == (202, "challenge")
    assert (captcha.status_code, captcha.headers["x-amzn-waf-action"]) == (405, "captcha")
    assert http.get("/reward_redemptions", headers=AUTH).status_code == 200
