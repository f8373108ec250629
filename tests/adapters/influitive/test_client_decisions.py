"""InfluitiveClient.fulfill / refuse against the stand-in."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from poller.domain.errors import AlreadyDecided, SourceAuthError, SourceUnavailable
from poller.sandbox.influitive import Fault
from poller.sandbox.server import free_port
from poller.sources.influitive.client import InfluitiveClient

from .conftest import FAST, ORG, TOKEN, Sleeps, Standin, item

MakeClient = Callable[..., InfluitiveClient]


def test_fulfill_decides_and_the_redemption_leaves_the_list(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1), item(2)])
    client = make_client()

    client.fulfill("1", "Your gift card is on its way")

    (decision,) = standin.state.decisions()
    assert (decision.id, decision.verb, decision.message, decision.accepted) == (
        "1", "fulfill", "Your gift card is on its way", True)
    assert standin.state.decided("1") == "fulfilled"
    assert [r.id for r in client.poll().redemptions] == ["2"]


def test_refuse_decides_with_the_message(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])

    make_client().refuse("1", "Sorry, this reward is out of stock; your points are back")

    (decision,) = standin.state.decisions()
    assert (decision.verb, decision.accepted, decision.status) == ("refuse", True, 200)
    assert decision.message == "Sorry, this reward is out of stock; your points are back"
    assert standin.state.decided("1") == "refused"


def test_second_decision_is_already_decided(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])
    client = make_client()
    client.fulfill("1", "sent")

    with pytest.raises(AlreadyDecided) as raised:
        client.refuse("1", "no")

    assert "HTTP 422" in str(raised.value)
    assert "already been fulfilled" in str(raised.value)  # the server's own words
    assert [d.accepted for d in standin.state.decisions()] == [True, False]
    assert len(standin.state.requests()) == 2  # a 422 is not retried


def test_decided_by_an_admin_in_the_ui_is_already_decided(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1)])
    standin.state.decide("1", "refuse", "declined by hand", source="admin")

    with pytest.raises(AlreadyDecided, match="already been refused"):
        make_client().fulfill("1", "sent")


def test_unknown_redemption_is_already_decided(standin: Standin, make_client: MakeClient) -> None:
    with pytest.raises(AlreadyDecided, match="HTTP 404"):
        make_client().fulfill("999", "sent")


def test_409_is_already_decided() -> None:
    client = InfluitiveClient(
        "https://api.example.test", TOKEN, ORG, policy=FAST,
        transport=httpx.MockTransport(lambda r: httpx.Response(409, json={"error": "conflict"})),
    )
    with pytest.raises(AlreadyDecided, match=r"HTTP 409\) \(conflict\)"):
        client.fulfill("1", "x")


def test_refuse_verb_reject(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])
    standin.state.configure(refuse_verbs=["reject"])

    make_client(refuse_verb="reject").refuse("1", "no")

    (decision,) = standin.state.decisions()
    assert (decision.verb, decision.accepted) == ("reject", True)
    assert standin.state.requests()[0].path == "/reward_redemptions/1/decision/reject"


def test_wrong_refuse_verb_looks_like_already_decided(
    standin: Standin, make_client: MakeClient
) -> None:
    """The hazard of the assumed 404: a verb the hub does not know answers 404 too."""
    standin.state.seed([item(1)])
    standin.state.configure(refuse_verbs=["reject"])

    with pytest.raises(AlreadyDecided, match="HTTP 404"):
        make_client().refuse("1", "no")
    assert standin.state.outstanding_ids() == ["1"]


def test_auth_errors(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])
    with pytest.raises(SourceAuthError, match=r"token or org id \(HTTP 401\)"):
        make_client(api_token="wrong").fulfill("1", "x")
    standin.state.add_faults(Fault(status=403,
                                   headers=(("WWW-Authenticate", "Token realm=Api"),)))
    with pytest.raises(SourceAuthError, match=r"\(HTTP 403\)"):
        make_client().fulfill("1", "x")
    assert standin.state.outstanding_ids() == ["1"]
    assert [d.status for d in standin.state.decisions()] == [401, 403]
    assert not any(d.accepted for d in standin.state.decisions())


def test_5xx_then_success(standin: Standin, make_client: MakeClient, sleeps: Sleeps) -> None:
    standin.state.seed([item(1)])
    standin.state.fail_next(500, 502)

    make_client().fulfill("1", "sent")

    assert [(d.accepted, d.status) for d in standin.state.decisions()] == [
        (False, 500), (False, 502), (True, 200)]
    assert len(sleeps) == 2


def test_lost_answer_replayed_ends_as_already_decided(
    standin: Standin, make_client: MakeClient
) -> None:
    """The decision took effect but the answer was a 500: the retry says "already decided",
    which the caller treats as the end. Nothing is decided twice."""
    standin.state.seed([item(1)])
    standin.state.add_faults(Fault(status=500, after=True))

    with pytest.raises(AlreadyDecided):
        make_client().fulfill("1", "sent")

    assert [(d.accepted, d.status) for d in standin.state.decisions()] == [
        (True, 500), (False, 422)]


def test_5xx_forever_is_unavailable(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])
    standin.state.fail_next(503, 503, 503)

    with pytest.raises(SourceUnavailable, match="HTTP 503"):
        make_client().fulfill("1", "sent")
    assert standin.state.outstanding_ids() == ["1"]


def test_429_with_retry_after_then_success(
    standin: Standin, make_client: MakeClient, sleeps: Sleeps
) -> None:
    standin.state.seed([item(1)])
    standin.state.fail_next(429, retry_after="2")

    make_client().refuse("1", "no")

    assert sleeps == [2.0]
    assert standin.state.decided("1") == "refused"


def test_429_with_a_long_retry_after_is_unavailable_with_the_wait(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1)])
    standin.state.fail_next(429, retry_after="600")

    with pytest.raises(SourceUnavailable) as raised:
        make_client().fulfill("1", "sent")

    assert raised.value.retry_after == 600.0


def test_unreachable_is_unavailable(sleeps: Sleeps) -> None:
    client = InfluitiveClient(f"http://127.0.0.1:{free_port()}", TOKEN, ORG, policy=FAST,
                              sleep=sleeps)
    with pytest.raises(SourceUnavailable, match="ConnectError"):
        client.fulfill("1", "x")


def test_unexpected_status_is_unavailable() -> None:
    client = InfluitiveClient(
        "https://api.example.test", TOKEN, ORG, policy=FAST,
        transport=httpx.MockTransport(lambda r: httpx.Response(400, text="bad")),
    )
    with pytest.raises(SourceUnavailable, match="HTTP 400"):
        client.fulfill("1", "x")


def test_decision_request_shape_and_id_quoting() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = InfluitiveClient("https://api.example.test/api", TOKEN, ORG, policy=FAST,
                              transport=httpx.MockTransport(answer), refuse_verb="reject")
    client.fulfill("a/b?c", "m1")
    client.refuse("7", "")

    assert seen[0].method == "POST"
    assert seen[0].url.raw_path == b"/api/reward_redemptions/a%2Fb%3Fc/decision/fulfill"
    assert json.loads(seen[0].content) == {"message": "m1"}
    assert seen[0].headers["Content-Type"] == "application/json"
    assert seen[1].url.raw_path == b"/api/reward_redemptions/7/decision/reject"
    assert json.loads(seen[1].content) == {"message": ""}


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_unusable_ids_are_refused_locally(bad: str) -> None:
    client = InfluitiveClient("https://api.example.test", TOKEN, ORG)
    with pytest.raises(ValueError):
        client.fulfill(bad, "x")
