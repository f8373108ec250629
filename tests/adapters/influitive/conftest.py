"""Fixtures for the Influitive adapter tests: one stand-in server per session, reset per test,
and clients with a retry policy that never really sleeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from poller.sandbox.influitive import InfluitiveState, create_app
from poller.sandbox.server import ServerThread
from poller.sources.influitive.client import InfluitiveClient
from poller.transport import RetryPolicy

TOKEN = "tok-INFLUITIVE-SECRET-7f3a9c51d2"
"""The token the stand-in expects. It must never show up in messages, logs or cassettes."""
ORG = "org-5b1e0c77-SECRET"

FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.002, max_retry_after=30.0,
                   timeout=5.0)


class Sleeps(list[float]):
    """A fake ``sleep``: records every wait the retry loop asked for, waits for none."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@dataclass
class Standin:
    url: str
    state: InfluitiveState


def item(
    rid: Any,
    *,
    email: str | None = None,
    contact_id: Any = None,
    reward_name: str | None = "$25 gift card",
    **extra: Any,
) -> dict[str, Any]:
    """A redemption in the documented shape, with its advocate nested as ``contact`` (the
    stand-in side-loads it unless told to nest it)."""
    out: dict[str, Any] = {"id": rid, "reward_id": 37, "points": 2500, "quantity": 1,
                           "stage": "requested", "created_at": "2026-05-02T14:11:09Z"}
    if reward_name is not None:
        out["reward_name"] = reward_name
    cid = contact_id if contact_id is not None else 1000 + (rid if isinstance(rid, int) else 0)
    out["contact"] = {"id": cid, "email": email or f"advocate{rid}@example.com",
                      "first_name": "Test", "last_name": f"Advocate {rid}"}
    out.update(extra)
    return out


@pytest.fixture(scope="session")
def standin_server() -> Iterator[Standin]:
    state = InfluitiveState()
    with ServerThread(create_app(state, api_token=TOKEN, org_id=ORG)) as url:
        yield Standin(url, state)


@pytest.fixture
def standin(standin_server: Standin) -> Iterator[Standin]:
    standin_server.state.reset()
    yield standin_server
    standin_server.state.reset()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(
    standin: Standin, sleeps: Sleeps
) -> Iterator[Callable[..., InfluitiveClient]]:
    made: list[InfluitiveClient] = []

    def make(**overrides: Any) -> InfluitiveClient:
        args: dict[str, Any] = {"base_url": standin.url, "api_token": TOKEN, "org_id": ORG,
                                "policy": FAST, "sleep": sleeps}
        args.update(overrides)
        client = InfluitiveClient(args.pop("base_url"), args.pop("api_token"),
                                  args.pop("org_id"), **args)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
