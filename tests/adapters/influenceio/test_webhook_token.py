"""Influence.io can send only ``X-Webhook-Topic`` and ``X-Webhook-Id``: the receiver's secret
must be accepted from the ``?token=`` query parameter of the registered URL."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.testclient import TestClient

from poller.daemon.listener import webhook_routes
from poller.ledger.memory import MemoryLedger

from .conftest import redeemed

SECRET = "io-webhook-secret-5e2a91c7"


def _client(ledger: MemoryLedger) -> TestClient:
    app = Starlette(routes=list(webhook_routes(influitive_secret=None,
                                               influenceio_secret=SECRET, ledger=ledger,
                                               nudge=lambda: None)))
    return TestClient(app)


def _post(client: TestClient, query: str) -> int:
    answer = client.post(
        f"/webhooks/influenceio{query}", content=json.dumps(redeemed("evt-31")),
        headers={"X-Webhook-Topic": "points/redeemed", "X-Webhook-Id": "wh-1",
                 "Content-Type": "application/json"},
    )
    return answer.status_code


def test_the_secret_travels_as_a_query_token() -> None:
    ledger = MemoryLedger()
    client = _client(ledger)

    assert _post(client, "") == 401
    assert _post(client, "?token=guess-guess-guess") == 401
    assert ledger.get("influenceio", "evt-31") is None
    assert _post(client, f"?token={SECRET}") == 202
    assert ledger.get("influenceio", "evt-31") is not None
