"""The Influence.io receiver through the ASGI app: every documented topic is acknowledged
(only ``points/redeemed`` is stored), a missing or unknown one is a 4xx, and a body that is not
strict JSON (NaN, 1e400, nesting thousands deep) is a 400 with a reason, never a 500."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.testclient import TestClient

from poller.daemon.listener import MAX_DEPTH, webhook_routes
from poller.ledger.memory import MemoryLedger
from poller.sources.influenceio import IGNORED_TOPICS, KNOWN_TOPICS, REDEEMED_TOPIC

SECRET = "influenceio-secret-77a1f0e2"


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Debug events reach ``capture_logs`` whatever level an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture
def client(ledger: MemoryLedger) -> TestClient:
    # A cap of 1 MiB ([webhooks] max_body_bytes): the deep bodies below must reach the parser.
    routes = webhook_routes(influitive_secret=None, influenceio_secret=SECRET, ledger=ledger,
                            nudge=lambda: None, max_body=1 << 20)
    # raise_server_exceptions off: an unhandled error must show as the 500 a sender sees.
    return TestClient(Starlette(routes=list(routes)), raise_server_exceptions=False)


def _event(event_id: Any = "evt-1", points: str = "500") -> bytes:
    # Built as text so a literal json.dumps would never write (1e400) can be sent.
    return (
        '{"id": ' + json.dumps(event_id) + ', "points": ' + points + ', "action": "redeem",'
        ' "type": "reward", "ruleId": "r-1", "rewardType": "giftcard",'
        ' "customer": {"id": "c-9", "email": "shopper@example.com", "name": "Sam"}}'
    ).encode()


def _post(client: TestClient, body: bytes, topic: str | None = REDEEMED_TOPIC) -> Any:
    headers = {"X-Webhook-Secret": SECRET, "X-Webhook-Id": "wh-1"}
    if topic is not None:
        headers["X-Webhook-Topic"] = topic
    return client.post("/webhooks/influenceio", content=body, headers=headers)


def test_the_known_topics_are_the_documented_ones() -> None:
    assert REDEEMED_TOPIC in KNOWN_TOPICS
    assert {"points/earned", "points/redeemed", "customers/updated", "customers/tier_changed",
            "referrals/started", "referrals/completed"} <= KNOWN_TOPICS
    assert all(t == t.strip().casefold() for t in KNOWN_TOPICS)


@pytest.mark.parametrize("topic", [*sorted(IGNORED_TOPICS), "Points/Earned"])
def test_a_known_topic_that_needs_no_action_is_acknowledged_and_ignored(
    client: TestClient, ledger: MemoryLedger, topic: str, debug_logs: None
) -> None:
    with structlog.testing.capture_logs() as logs:
        answer = _post(client, _event("evt-earned"), topic=topic)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ignored", "topic": topic.casefold()}
    assert ledger.list(limit=10) == []
    assert [e["log_level"] for e in logs] == ["debug"]


@pytest.mark.parametrize("topic", [None, "", "orders/created", "points"])
def test_a_missing_or_unknown_topic_stays_a_4xx(
    client: TestClient, ledger: MemoryLedger, topic: str | None
) -> None:
    answer = _post(client, _event(), topic=topic)
    assert answer.status_code == 400
    assert "X-Webhook-Topic" in answer.json()["error"]
    assert ledger.list(limit=10) == []


@pytest.mark.parametrize(
    ("points", "reason"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"),
     ("1e400", "too large"), ("-1e400", "too large")],
)
def test_a_number_that_is_not_finite_is_a_400_with_a_reason(
    client: TestClient, ledger: MemoryLedger, points: str, reason: str
) -> None:
    answer = _post(client, _event(points=points))
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert ledger.list(limit=10) == []


@pytest.mark.parametrize(
    "body",
    ["[" * 60_000 + "]" * 60_000, '{"a":' * 60_000 + "1" + "}" * 60_000,
     "[" * 60_000],  # never closed: 60 KB, under the default cap, still fails on depth first
)
def test_a_body_nested_sixty_thousand_deep_is_a_400_with_a_reason(
    client: TestClient, ledger: MemoryLedger, body: str
) -> None:
    answer = _post(client, body.encode())
    assert answer.status_code == 400
    assert "nested more than" in answer.json()["error"]
    assert ledger.list(limit=10) == []


def test_nesting_just_past_the_limit_is_refused_and_up_to_it_parses(
    client: TestClient, ledger: MemoryLedger
) -> None:
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    answer = _post(client, _event(points="0").replace(b'"Sam"', deep.encode()))
    assert answer.status_code == 400 and "nested more than" in answer.json()["error"]
    shallow = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)  # inside customer, inside the event
    answer = _post(client, _event(points="0").replace(b'"Sam"', shallow.encode()))
    assert answer.status_code == 202, answer.text


def test_a_good_event_is_still_stored(client: TestClient, ledger: MemoryLedger) -> None:
    answer = _post(client, _event("evt-good", points="12.0"))
    assert answer.status_code == 202
    entry = ledger.get("influenceio", "evt-good")
    assert entry is not None


@pytest.mark.parametrize("points", [float("nan"), float("inf"), float("-inf")])
def test_the_parser_refuses_a_points_value_that_is_not_finite(points: float) -> None:
    from poller.sources.influenceio.wire import BadEvent, parse_redeemed

    body = json.loads(_event())
    body["points"] = points
    with pytest.raises(BadEvent, match="finite"):
        parse_redeemed(body)
