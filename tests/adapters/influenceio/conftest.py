"""Fixtures for the Influence.io tests: the Platform API stand-in (one server per session,
reset per test), points clients that never sleep, and ``points/redeemed`` bodies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from poller.sandbox.influenceio import InfluenceioState, create_app
from poller.sandbox.server import ServerThread
from poller.sources.influenceio.points import PointsClient
from poller.transport import RetryPolicy

API_KEY = "ioKEY-SECRET-3c91d7a2b5e4"
"""The key the stand-in expects. It must never show up in messages or logs."""

FAST = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.002, max_retry_after=5.0,
                   timeout=2.0)


@dataclass
class Platform:
    url: str
    """The API root, ``.../v1``, as ``[influenceio] base_url`` takes it."""
    state: InfluenceioState


def redeemed(event_id: str = "evt-1", *, customer: str = "c-1", points: Any = 500,
             **over: Any) -> dict[str, Any]:
    """A ``points/redeemed`` body in the documented shape."""
    body: dict[str, Any] = {
        "id": event_id, "action": "redeemed", "points": points, "type": "reward",
        "ruleId": "r-9", "rewardType": "gift_card", "couponCode": None,
        "customer": {"id": customer, "externalId": f"ext-{customer}",
                     "email": f"{customer}@example.com", "name": "Test Customer",
                     "pointBalance": 100},
    }
    body.update(over)
    return body


@pytest.fixture(scope="session")
def platform_server() -> Iterator[Platform]:
    state = InfluenceioState()
    with ServerThread(create_app(state, api_key=API_KEY)) as url:
        yield Platform(url + "/v1", state)


@pytest.fixture
def platform(platform_server: Platform) -> Iterator[Platform]:
    platform_server.state.reset()
    platform_server.state.points_field = "points"
    platform_server.state.reason_field = "reason"
    platform_server.state.seed_customer("c-1", 100)
    yield platform_server
    platform_server.state.reset()


MakePoints = Callable[..., PointsClient]


@pytest.fixture
def make_points(platform: Platform) -> Iterator[MakePoints]:
    made: list[PointsClient] = []

    def make(**overrides: Any) -> PointsClient:
        args: dict[str, Any] = {"base_url": platform.url, "api_key": API_KEY, "policy": FAST}
        args.update(overrides)
        client = PointsClient(args.pop("base_url"), args.pop("api_key"), **args)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
