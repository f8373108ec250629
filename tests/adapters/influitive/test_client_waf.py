"""Answers from Influitive's firewall (AWS WAF) are told apart from Influitive's own: a block
or challenge is SourceBlocked (nothing applied, retry later), never bad credentials and never
a decision taken; 404/409/422 are "perhaps already decided"; list pages are read up to a cap."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import httpx
import pytest

from poller.domain.errors import (
    AlreadyDecided,
    SourceAuthError,
    SourceBlocked,
    SourceUnavailable,
)
from poller.sandbox.influitive import Fault
from poller.sources.influitive.client import InfluitiveClient

from .conftest import FAST, ORG, TOKEN, Sleeps, Standin, item

MakeClient = Callable[..., InfluitiveClient]

REALM = (("WWW-Authenticate", "Token realm=Api"),)


# --- polls ------------------------------------------------------------------------------


def test_a_firewall_403_on_a_poll_is_blocked_not_bad_credentials(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1)])
    standin.state.add_faults(Fault(waf="block"))

    with pytest.raises(SourceBlocked, match="blocked by Influitive's firewall") as raised:
        make_client().poll()

    assert not isinstance(raised.value, SourceAuthError)
    assert "HTML" in str(raised.value)
    assert [r.status for r in standin.state.requests()] == [403]  # not retried at once


def test_a_403_with_the_token_realm_is_bad_credentials(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.add_faults(Fault(status=403, headers=REALM))

    with pytest.raises(SourceAuthError, match=r"HTTP 403"):
        make_client().poll()


def test_a_403_with_the_realm_but_an_html_body_is_blocked(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.add_faults(Fault(status=403, headers=(*REALM, ("Content-Type", "text/html")),
                                   body="<html><body>403 Forbidden</body></html>"))

    with pytest.raises(SourceBlocked):
        make_client().poll()


@pytest.mark.parametrize("page", [1, 2])
def test_a_202_challenge_is_not_a_page(
    standin: Standin, make_client: MakeClient, page: int
) -> None:
    standin.state.seed([item(1), item(2)])
    standin.state.configure(page_size=1)
    standin.state.add_faults(Fault(waf="challenge", match=None if page == 1 else "page=2"))

    with pytest.raises(SourceBlocked, match="x-amzn-waf-action: challenge"):
        make_client().poll()


def test_the_stand_in_firewall_in_challenge_mode(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.configure(waf_limit=1, waf_window=60, waf_mode="challenge")
    client = make_client()
    client.poll()

    with pytest.raises(SourceBlocked, match="challenge"):
        client.poll()
    assert [r.status for r in standin.state.requests()] == [200, 202]


def test_a_failed_first_page_raises_what_check_reports(
    standin: Standin, make_client: MakeClient,
) -> None:
    standin.state.add_faults(Fault(waf="block"))
    with pytest.raises(SourceBlocked):
        make_client().poll()
    with pytest.raises(SourceAuthError):
        make_client(api_token="wrong").poll()
    standin.state.fail_next(503, 503, 503)
    with pytest.raises(SourceUnavailable, match="HTTP 503"):
        make_client().poll()


# --- decisions --------------------------------------------------------------------------


@pytest.mark.parametrize("waf", ["challenge", "captcha", "block"])
def test_a_firewall_answer_to_a_decision_is_not_done(
    standin: Standin, make_client: MakeClient, waf: str
) -> None:
    standin.state.seed([item(1)])
    standin.state.add_faults({"waf": waf})

    with pytest.raises(SourceBlocked, match="not applied"):
        make_client().fulfill("1", "sent")

    assert standin.state.outstanding_ids() == ["1"]
    assert not any(d.accepted for d in standin.state.decisions())


def test_an_html_2xx_to_a_decision_is_not_done(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])
    standin.state.add_faults(Fault(garbage="html"))

    with pytest.raises(SourceBlocked, match="not Influitive's JSON"):
        make_client().refuse("1", "no")
    assert standin.state.outstanding_ids() == ["1"]


def _answering(status: int, body: bytes = b"", **headers: str) -> InfluitiveClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    return InfluitiveClient("https://api.example.test", TOKEN, ORG, policy=FAST,
                            transport=httpx.MockTransport(answer), sleep=lambda s: None)


def test_an_empty_200_is_not_done_but_a_204_is() -> None:
    with pytest.raises(SourceBlocked):
        _answering(200).fulfill("1", "sent")
    _answering(204).fulfill("1", "sent")
    _answering(200, b'{"reward_redemption": {"id": 1}}',
               **{"Content-Type": "application/json"}).fulfill("1", "sent")


def test_a_405_without_the_waf_header_is_unavailable_not_blocked() -> None:
    with pytest.raises(SourceUnavailable) as raised:
        _answering(405, b'{"error": "Method Not Allowed"}').fulfill("1", "sent")
    assert not isinstance(raised.value, SourceBlocked)


@pytest.mark.parametrize("status", [404, 409, 422])
def test_decision_errors_are_perhaps_already_decided(status: int) -> None:
    with pytest.raises(AlreadyDecided, match="perhaps already decided") as raised:
        _answering(status, b'{"errors": ["nope"]}').refuse("1", "no")
    assert f"HTTP {status}" in str(raised.value)
    assert ("refuse_verb" in str(raised.value)) == (status == 404)


# --- bounded pages ----------------------------------------------------------------------


def test_a_page_over_the_cap_is_not_read(standin: Standin, sleeps: Sleeps) -> None:
    standin.state.seed([item(i, reward_name="x" * 500) for i in range(1, 20)])
    client = InfluitiveClient(standin.url, TOKEN, ORG, policy=FAST, sleep=sleeps,
                              max_page_bytes=4096)

    with pytest.raises(SourceUnavailable, match=r"\[influitive\] max_page_bytes \(4096 bytes\)"):
        client.poll()


def test_a_later_page_over_the_cap_makes_the_poll_incomplete(
    standin: Standin, sleeps: Sleeps
) -> None:
    standin.state.seed([item(1), item(2, reward_name="x" * 5000)])
    standin.state.configure(page_size=1)
    client = InfluitiveClient(standin.url, TOKEN, ORG, policy=FAST, sleep=sleeps,
                              max_page_bytes=4096)

    result = client.poll()

    assert not result.complete
    assert [r.id for r in result.redemptions] == ["1"]


def test_the_cap_counts_the_decoded_size_of_a_compressed_page() -> None:
    body = json.dumps({"reward_redemptions": [{"id": i, "reward_name": "x" * 100}
                                              for i in range(200)]}).encode()
    packed = gzip.compress(body)
    assert len(packed) < 4096 < len(body)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=packed, headers={
            "Content-Encoding": "gzip", "Content-Type": "application/json"})

    client = InfluitiveClient("https://api.example.test", TOKEN, ORG, policy=FAST,
                              transport=httpx.MockTransport(answer), sleep=lambda s: None,
                              max_page_bytes=4096)
    with pytest.raises(SourceUnavailable, match="max_page_bytes"):
        client.poll()
    roomy = InfluitiveClient("https://api.example.test", TOKEN, ORG, policy=FAST,
                             transport=httpx.MockTransport(answer), sleep=lambda s: None)
    assert len(roomy.poll().redemptions) == 200


def test_the_stored_item_is_the_item_not_the_page(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1), item(2)])

    result = make_client().poll()

    raw = result.redemptions[0].raw
    assert raw["id"] == 1 and raw["contact"]["email"] == "advocate1@example.com"
    assert "reward_redemptions" not in raw and "links" not in raw and "contacts" not in raw


@pytest.mark.parametrize(("header", "auth"), [
    ("Token realm=Api", True), ('Token realm="Api"', True), ("token Realm = API", True),
    ("Basic realm=Api", False), ("Token realm=Apix", False),
])
def test_only_the_token_realm_makes_a_403_a_credentials_problem(header: str, auth: bool) -> None:
    client = _answering(403, b"", **{"WWW-Authenticate": header})
    expected = SourceAuthError if auth else SourceBlocked
    with pytest.raises(expected):
        client.poll()
