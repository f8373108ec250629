"""The API token never leaves the HTTP client's headers: not in reprs, exception messages
(or their chained causes), log events, nor anything the stand-in records or answers."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from poller.domain.errors import ConfigError, SourceError
from poller.sandbox.influitive import Fault
from poller.sandbox.server import free_port
from poller.sources.influitive.client import InfluitiveClient

from .conftest import FAST, ORG, TOKEN, Standin, item

MakeClient = Callable[..., InfluitiveClient]


def everything_about(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)


def test_repr_of_the_client_has_no_token() -> None:
    client = InfluitiveClient("https://api.example.test", TOKEN, ORG)
    assert TOKEN not in repr(client)
    assert TOKEN not in str(client)
    assert "api.example.test" in repr(client)
    assert TOKEN not in repr(vars(client))
    client.close()


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        yield captured
    assert TOKEN not in repr(captured)


def test_error_messages_and_logs_have_no_token(
    standin: Standin, make_client: MakeClient, logs: list[MutableMapping[str, Any]]
) -> None:
    standin.state.seed([item(1), item(2)])
    client = make_client()
    failures: list[SourceError] = []

    scenarios: list[Callable[[], None]] = [
        lambda: standin.state.fail_next(401),
        lambda: standin.state.fail_next(503, 503, 503),
        lambda: standin.state.fail_next(429, retry_after="999"),
        lambda: standin.state.add_faults(Fault(garbage="html")),
        lambda: standin.state.add_faults(Fault(garbage="truncated")),
        # a server error body that echoes the token back is scrubbed
        lambda: standin.state.add_faults(*[Fault(status=500, body=f'{{"error": "bad {TOKEN}"}}')]
                                         * 3),
    ]
    for arrange in scenarios:
        arrange()
        with pytest.raises(SourceError) as raised:
            client.poll()
        failures.append(raised.value)
    client.fulfill("1", "sent")
    deciders: list[Callable[[], None]] = [
        lambda: client.fulfill("1", "again"), lambda: client.refuse("404", "x"),
    ]
    for decide in deciders:
        with pytest.raises(SourceError) as raised:
            decide()
        failures.append(raised.value)
    standin.state.add_faults(*[Fault(status=500, body=f'{{"errors": ["{TOKEN}"]}}')] * 3)
    with pytest.raises(SourceError) as raised:
        client.fulfill("2", "x")
    failures.append(raised.value)
    assert "[redacted]" in str(raised.value)

    for failure in failures:
        assert TOKEN not in everything_about(failure), failure
    assert len(failures) == 9


def test_transport_errors_have_no_token(logs: list[MutableMapping[str, Any]]) -> None:
    client = InfluitiveClient(f"http://127.0.0.1:{free_port()}", TOKEN, ORG, policy=FAST,
                              sleep=lambda s: None)
    for call in (client.poll, lambda: client.fulfill("1", "x")):
        with pytest.raises(SourceError) as raised:
            call()
        assert TOKEN not in everything_about(raised.value)


def test_wrong_token_error_does_not_echo_the_wrong_token(
    standin: Standin, make_client: MakeClient
) -> None:
    wrong = "tok-WRONG-but-still-SECRET"
    with pytest.raises(SourceError) as raised:
        make_client(api_token=wrong).poll()
    assert wrong not in everything_about(raised.value)


@pytest.mark.parametrize("token", ["", "   ", "tok\nInjected: yes", "tök-ünicode"])
def test_unusable_token_is_a_config_error_without_the_token(token: str) -> None:
    with pytest.raises(ConfigError) as raised:
        InfluitiveClient("https://api.example.test", token, ORG)
    if token.strip():
        assert token not in everything_about(raised.value)


def test_standin_records_and_answers_hold_no_token(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1)])
    client = make_client()
    client.poll()
    client.fulfill("1", "sent")
    with pytest.raises(SourceError):
        make_client(api_token="x").poll()

    with httpx.Client(base_url=standin.url) as admin:
        dumps = [admin.get(p).text for p in ("/_standin/decisions", "/_standin/requests",
                                             "/_standin/faults", "/_standin/redemptions")]
        unauthorized = admin.get("/reward_redemptions",
                                 headers={"Authorization": "Token nope", "X_ORG_ID": ORG})
    for text in dumps:
        assert TOKEN not in text
    assert unauthorized.status_code == 401
    assert unauthorized.content == b""
    assert unauthorized.headers["WWW-Authenticate"] == "Token realm=Api"
    assert TOKEN not in repr(vars(standin.state))


@pytest.mark.parametrize("base_url", ["", "api.influitive.com", "ftp://x.test", "http://"])
def test_unusable_base_url_is_a_config_error(base_url: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        InfluitiveClient(base_url, TOKEN, ORG)


def test_repr_hides_credentials_in_the_base_url() -> None:
    client = InfluitiveClient("https://user:pw-SECRET@api.example.test:8443/api", TOKEN, ORG)
    assert repr(client) == (
        "InfluitiveClient(base_url='https://api.example.test:8443/api', refuse_verb='refuse', "
        "max_pages=4000)"
    )
