"""The client against Influitive's documented answers (vcrpy cassettes, YAML, offline).

Influitive publishes no specification of its reward endpoints, so the cassettes in
``cassettes/`` were composed by hand from what public material shows (docs/influitive.md
lists it): the list body of the public clients (mikestowe/Influitive-PHP-SDK,
Health-Union/influitive and its test mock), the decision endpoints and their body, the
published 401, `links.next` paging (documented for /contacts by HokieGeek/go-influitive,
assumed for this list) and the firewall's answers (Influitive's rate-limit article, AWS
WAF's documentation). Each file's header names its source and what was chosen. They replay
with record mode "none" against ``influitive.invalid`` (Influitive has no public sandbox):
nothing reaches a network, and the method, URL and JSON body must match.

Cases no public source describes have no cassette; the stand-in tests cover them: a 429
(``test_client_poll.py``, ``test_client_decisions.py``: the firewall blocks rather than
answering 429), 5xx answers (the same modules), and what deciding twice answers
(``test_client_decisions.py``: 404/409/422 are read as "perhaps already decided").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from poller.domain.errors import SourceAuthError, SourceBlocked
from poller.sources.influitive.client import InfluitiveClient

from ..vendors.doc_cassettes import (
    cassette_files,
    data_text,
    header,
    interactions,
    missing_keys,
    replayer,
    request_json,
)
from .conftest import FAST, ORG, TOKEN, Sleeps

CASSETTES = Path(__file__).parent / "cassettes"
REPLAY_URL = "http://influitive.invalid"
"""Replays go to a host that cannot resolve: only the cassette can answer."""
EXPECTED = {"unauthorized.yaml", "paging.yaml", "waf_blocked.yaml", "waf_challenge.yaml",
            "decisions.yaml"}
TAPE = replayer(CASSETTES)


@pytest.fixture
def cassette(sleeps: Sleeps) -> Any:
    """``with cassette("name") as client:`` replays ``name.yaml``."""

    @contextmanager
    def use(name: str, **client_args: Any) -> Iterator[InfluitiveClient]:
        args: dict[str, Any] = {"policy": FAST, "sleep": sleeps, **client_args}
        client = InfluitiveClient(REPLAY_URL, str(args.pop("api_token", TOKEN)), ORG, **args)
        with TAPE.use_cassette(f"{name}.yaml") as recorded:
            try:
                yield client
            finally:
                client.close()
        assert recorded.all_played, f"{name}: some requests on tape were never made"

    return use


def test_paging(cassette: Any) -> None:
    with cassette("paging") as client:
        result = client.poll()

    assert [r.id for r in result.redemptions] == ["1", "2", "3", "4"]
    assert result.redemptions[0].reward_name == "$25 gift card"
    assert result.redemptions[1].reward_name == "Hoodie"
    assert result.redemptions[2].contact.email == "advocate3@example.com"
    assert (result.complete, result.pages, result.requests) == (True, 3, 3)


def test_unauthorized(cassette: Any) -> None:
    with cassette("unauthorized", api_token="tok-wrong") as client, \
            pytest.raises(SourceAuthError) as raised:
        client.poll()

    assert str(raised.value) == "Influitive rejected the API token or org id (HTTP 401)"


def test_decisions(cassette: Any) -> None:
    with cassette("decisions") as client:
        client.fulfill("1", "Your card is on its way")
        client.refuse("2", "Out of stock; your points are back")
        remaining = client.poll()

    assert remaining.redemptions == () and remaining.complete


def test_firewall_block_on_a_poll(cassette: Any) -> None:
    """AWS WAF's block: a 403 HTML page without ``WWW-Authenticate: Token realm=Api``."""
    with cassette("waf_blocked") as client:
        with pytest.raises(SourceBlocked, match="blocked by Influitive's firewall") as raised:
            client.poll()
        assert not isinstance(raised.value, SourceAuthError)
        result = client.poll()  # later, the block lifted

    assert [r.id for r in result.redemptions] == ["1"]


def test_firewall_challenge_to_a_decision(cassette: Any) -> None:
    """AWS WAF's challenge: 202 with ``x-amzn-waf-action: challenge``; nothing applied."""
    with cassette("waf_challenge") as client:
        with pytest.raises(SourceBlocked, match="x-amzn-waf-action: challenge"):
            client.fulfill("1", "Your card is on its way")
        with pytest.raises(SourceBlocked, match="x-amzn-waf-action: captcha"):
            client.fulfill("1", "Your card is on its way")
        still = client.poll()
        client.fulfill("1", "Your card is on its way")
        after = client.poll()

    assert [r.id for r in still.redemptions] == ["1"]
    assert after.redemptions == ()


def test_every_cassette_names_its_source() -> None:
    files = cassette_files(CASSETTES)
    assert set(files) == EXPECTED
    for name, path in files.items():
        assert "Source:" in header(path), name


def test_decisions_send_the_documented_body() -> None:
    decisions = 0
    for name, path in cassette_files(CASSETTES).items():
        for interaction in interactions(path):
            request = interaction["request"]
            assert request["uri"].startswith(REPLAY_URL + "/reward_redemptions"), name
            if request["method"] == "POST":
                decisions += 1
                assert "/decision/" in request["uri"], name
                assert missing_keys(request_json(interaction), frozenset({"message"})) == set()
    assert decisions >= 5


def test_no_cassette_holds_a_secret() -> None:
    files = cassette_files(CASSETTES)
    assert len(files) >= len(EXPECTED)
    for name, path in files.items():
        text = data_text(path)
        assert TOKEN not in text, name
        assert ORG not in text, name
        assert "tok-wrong" not in text, name
        for interaction in interactions(path):
            sent = {k.lower() for k in interaction["request"].get("headers") or {}}
            assert not sent & {"authorization", "x_org_id"}, name
