"""The client replaying recorded HTTP conversations (vcrpy cassettes, YAML).

By default the cassettes in ``cassettes/`` are replayed with record mode "none": no server, no
network, and any request not in the cassette fails the test. To record them again (against
the local stand-in, with a fresh stand-in state per cassette):

    INFLUITIVE_RECORD_CASSETTES=1 .venv/bin/pytest tests/influitive/test_cassettes.py

Authorization and X_ORG_ID are filtered out of the recorded requests;
``test_no_cassette_holds_a_secret`` checks that they stay out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import vcr

from poller.core.errors import (
    AlreadyDecided,
    SourceAuthError,
    SourceBlocked,
    SourceUnavailable,
)
from poller.influitive.client import InfluitiveClient
from poller.standins.influitive import Fault, InfluitiveState

from .conftest import FAST, ORG, TOKEN, Sleeps, Standin, item

CASSETTES = Path(__file__).parent / "cassettes"
RECORDING = os.environ.get("INFLUITIVE_RECORD_CASSETTES") == "1"
REPLAY_URL = "http://influitive.invalid"
"""Replays go to a host that cannot resolve: only the cassette can answer."""

Arrange = Callable[[InfluitiveState], None]
UseCassette = Callable[..., AbstractContextManager[InfluitiveClient]]


def _vcr() -> vcr.VCR:
    return vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        serializer="yaml",
        record_mode="all" if RECORDING else "none",
        # host and port differ between the recording (a free loopback port) and the replay
        match_on=("method", "path", "query", "body"),
        filter_headers=["authorization", "x_org_id"],
    )


@pytest.fixture
def cassette(
    request: pytest.FixtureRequest, sleeps: Sleeps
) -> UseCassette:
    """``with cassette("name", arrange) as client:`` records or replays ``name.yaml``."""

    @contextmanager
    def use(name: str, arrange: Arrange, **client_args: object) -> Iterator[InfluitiveClient]:
        path = CASSETTES / f"{name}.yaml"
        base_url = REPLAY_URL
        if RECORDING:
            standin: Standin = request.getfixturevalue("standin")
            standin.state.reset()
            arrange(standin.state)
            base_url = standin.url
            path.unlink(missing_ok=True)
        args: dict[str, object] = {"policy": FAST, "sleep": sleeps, **client_args}
        client = InfluitiveClient(base_url, str(args.pop("api_token", TOKEN)), ORG,
                                  **args)  # type: ignore[arg-type]
        with _vcr().use_cassette(path.name) as recorded:
            try:
                yield client
            finally:
                client.close()
        if not RECORDING:
            assert recorded.all_played, f"{name}: some recorded requests were never made"

    return use


def test_paging(cassette: UseCassette) -> None:
    def arrange(state: InfluitiveState) -> None:
        state.seed([item(1), item(2, reward_name=None, reward={"id": 9, "name": "Hoodie"}),
                    item(3), item(1, reward_name="shifted copy"), item(4)])
        state.configure(page_size=2)

    with cassette("paging", arrange) as client:
        result = client.poll()

    assert [r.id for r in result.redemptions] == ["1", "2", "3", "4"]
    assert result.redemptions[0].reward_name == "$25 gift card"
    assert result.redemptions[1].reward_name == "Hoodie"
    assert result.redemptions[2].contact.email == "advocate3@example.com"
    assert (result.complete, result.pages, result.requests) == (True, 3, 3)


def test_rate_limited_then_served(
    cassette: UseCassette, sleeps: Sleeps
) -> None:
    def arrange(state: InfluitiveState) -> None:
        state.seed([item(1)])
        state.fail_next(429, retry_after="4")

    with cassette("rate_limited", arrange) as client:
        result = client.poll()

    assert sleeps == [4.0]
    assert ([r.id for r in result.redemptions], result.requests) == (["1"], 2)


def test_server_errors_then_served(
    cassette: UseCassette, sleeps: Sleeps
) -> None:
    def arrange(state: InfluitiveState) -> None:
        state.seed([item(1), item(2)])
        state.fail_next(500, 503)

    with cassette("server_errors", arrange) as client:
        result = client.poll()

    assert len(sleeps) == 2
    assert ([r.id for r in result.redemptions], result.complete, result.requests) == (
        ["1", "2"], True, 3)


def test_server_errors_forever(cassette: UseCassette) -> None:
    def arrange(state: InfluitiveState) -> None:
        state.fail_next(502, 503, 503)

    with cassette("server_errors_forever", arrange) as client, \
            pytest.raises(SourceUnavailable, match="HTTP 503"):
        client.poll()


def test_unauthorized(cassette: UseCassette) -> None:
    with cassette("unauthorized", lambda state: None, api_token="tok-wrong") as client, \
            pytest.raises(SourceAuthError) as raised:
        client.poll()

    assert str(raised.value) == "Influitive rejected the API token or org id (HTTP 401)"


def test_decisions_and_already_decided(
    cassette: UseCassette
) -> None:
    def arrange(state: InfluitiveState) -> None:
        state.seed([item(1), item(2), item(3)])
        state.decide("3", "fulfill", "by hand", source="admin")

    with cassette("decisions", arrange) as client:
        client.fulfill("1", "Your card is on its way")
        client.refuse("2", "Out of stock; your points are back")
        with pytest.raises(AlreadyDecided, match=r"HTTP 422.*already been fulfilled"):
            client.refuse("1", "changed my mind")
        with pytest.raises(AlreadyDecided, match="HTTP 422"):
            client.fulfill("3", "too late")
        with pytest.raises(AlreadyDecided, match="HTTP 404"):
            client.fulfill("404404", "never existed")
        remaining = client.poll()

    assert remaining.redemptions == ()


def test_firewall_block_on_a_poll(cassette: UseCassette) -> None:
    """AWS WAF's block: a 403 HTML page without ``WWW-Authenticate: Token realm=Api``."""

    def arrange(state: InfluitiveState) -> None:
        state.seed([item(1)])
        state.add_faults(Fault(waf="block"))

    with cassette("waf_blocked", arrange) as client:
        with pytest.raises(SourceBlocked, match="blocked by Influitive's firewall") as raised:
            client.poll()
        assert not isinstance(raised.value, SourceAuthError)
        result = client.poll()  # later, the block lifted

    assert [r.id for r in result.redemptions] == ["1"]


def test_firewall_challenge_to_a_decision(cassette: UseCassette) -> None:
    """AWS WAF's challenge: 202 with ``x-amzn-waf-action: challenge``; nothing applied."""

    def arrange(state: InfluitiveState) -> None:
        state.seed([item(1)])
        state.add_faults(Fault(waf="challenge"), Fault(waf="captcha"))

    with cassette("waf_challenge", arrange) as client:
        with pytest.raises(SourceBlocked, match="x-amzn-waf-action: challenge"):
            client.fulfill("1", "Your card is on its way")
        with pytest.raises(SourceBlocked, match="x-amzn-waf-action: captcha"):
            client.fulfill("1", "Your card is on its way")
        still = client.poll()
        client.fulfill("1", "Your card is on its way")
        after = client.poll()

    assert [r.id for r in still.redemptions] == ["1"]
    assert after.redemptions == ()


def test_no_cassette_holds_a_secret() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        text = path.read_text()
        assert TOKEN not in text, path.name
        assert ORG not in text, path.name
        assert "tok-wrong" not in text, path.name
        lowered = text.lower()
        assert "authorization:" not in lowered, path.name
        assert "x_org_id" not in lowered, path.name
