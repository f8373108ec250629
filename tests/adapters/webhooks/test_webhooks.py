"""Real HTTP to the running daemon's receivers: the Influitive nudge and Influence.io events."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.system.cli.conftest import Standins, popen_cli, run_cli
from tests.system.daemon.conftest import free_port, wait_for

pytestmark = pytest.mark.e2e

NUDGE_SECRET = "nudge-secret-3b7e91c0d4"
IO_SECRET = "influenceio-secret-77a1f0e2"

IO_RULE = """
[[rewards]]
source = "influenceio"
reward_type = "giftcard"
vendor = "tremendous"
product = "AMZN-US"
amount = "10.00"
currency = "USD"
"""


class Daemon:
    def __init__(self, standins: Standins) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = standins.config(
            interval_seconds="60",  # the nudge, not the interval, must do the work
            extra=f'\n[server]\nlisten = "127.0.0.1:{self.port}"\n'
                  f'\n[webhooks]\ninfluitive_secret = "{NUDGE_SECRET}"\n'
                  f'influenceio_secret = "{IO_SECRET}"\n' + IO_RULE,
        )
        self.proc = popen_cli("run", config=self.config)
        self.http = httpx.Client(base_url=self.url, timeout=10)
        wait_for(self._up, what="the listener")
        wait_for(lambda: self.cycles() >= 1, what="the first cycle")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited: {self.proc.communicate()[1][-2000:]}")
        try:
            return self.http.get("/healthz").status_code in (200, 503)
        except httpx.TransportError:
            return False

    def cycles(self) -> int:
        text = self.http.get("/metrics").text
        found = re.search(r"^reward_poller_cycle_duration_seconds_count (\S+)$", text, re.M)
        return int(float(found.group(1))) if found else 0

    def stop(self) -> str:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture
def daemon(standins: Standins) -> Iterator[Daemon]:
    d = Daemon(standins)
    try:
        yield d
    finally:
        err = d.stop()
        for secret in (NUDGE_SECRET, IO_SECRET):
            assert secret not in err


def io_event(event_id: Any = 501, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "customer": {"id": "c-9", "externalId": "ext-9", "email": "shopper@example.com",
                     "name": "Sam Shopper", "pointBalance": 120},
        "action": "redeem", "points": 500, "type": "reward", "ruleId": "r-1",
        "couponCode": None, "rewardType": "giftcard",
    }
    body.update(over)
    return body


def io_post(d: Daemon, body: Any, *, webhook_id: str = "wh-1", secret: str | None = IO_SECRET,
            topic: str = "points/redeemed") -> httpx.Response:
    headers = {"X-Webhook-Topic": topic, "X-Webhook-Id": webhook_id}
    if secret is not None:
        headers["X-Webhook-Secret"] = secret
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return d.http.post("/webhooks/influenceio", content=content, headers=headers)


def test_a_signed_nudge_fulfils_within_two_seconds(standins: Standins, daemon: Daemon) -> None:
    standins.seed(11)
    started = time.monotonic()
    answer = daemon.http.post("/webhooks/influitive", headers={"X-Webhook-Secret": NUDGE_SECRET},
                              json={"type": "reward_redemption_requested", "id": 11})
    assert answer.status_code == 202
    wait_for(lambda: standins.accepted().get("11") == ["fulfill"], timeout=2.0,
             what="fulfilment within two seconds of the nudge")
    assert time.monotonic() - started < 2.0


def test_the_secret_is_required(standins: Standins, daemon: Daemon) -> None:
    cycles = daemon.cycles()
    assert daemon.http.post("/webhooks/influitive").status_code == 401
    wrong = daemon.http.post("/webhooks/influitive", headers={"X-Webhook-Secret": "guess"})
    assert wrong.status_code == 401
    assert daemon.http.post("/webhooks/influitive", params={"token": "nope"}).status_code == 401
    time.sleep(0.3)
    assert daemon.cycles() == cycles  # nothing ran
    by_url = daemon.http.post("/webhooks/influitive", params={"token": NUDGE_SECRET})
    assert by_url.status_code == 202
    assert io_post(daemon, io_event(), secret=None).status_code == 401
    assert io_post(daemon, io_event(), secret="wrong-secret-000000").status_code == 401


def test_a_burst_of_fifty_nudges_runs_at_most_a_couple_of_cycles(
    standins: Standins, daemon: Daemon
) -> None:
    standins.seed(21)
    before = daemon.cycles()
    for _ in range(50):
        assert daemon.http.post("/webhooks/influitive",
                                headers={"X-Webhook-Secret": NUDGE_SECRET}).status_code == 202
    wait_for(lambda: standins.accepted().get("21") == ["fulfill"], what="the nudged cycle")
    time.sleep(1.0)  # let any coalesced follow-up cycle finish
    ran = daemon.cycles() - before
    assert 1 <= ran <= 3, ran


def test_influenceio_event_delivered_twice_orders_once(
    standins: Standins, daemon: Daemon
) -> None:
    first = io_post(daemon, io_event(501), webhook_id="wh-501")
    assert first.status_code == 202 and first.json()["status"] == "stored"
    again = io_post(daemon, io_event(501), webhook_id="wh-501")  # the sender's retry
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    other_id = io_post(daemon, io_event(501), webhook_id="wh-501-b")  # same event, new id
    assert other_id.status_code == 200 and other_id.json()["status"] == "duplicate"

    def ordered() -> bool:
        out = run_cli("ledger", "show", "501", "--source", "influenceio", "--json",
                      config=daemon.config)
        return out.returncode == 0 and json.loads(out.stdout)["state"] == "fulfilled"

    wait_for(ordered, timeout=10, what="the Influence.io redemption fulfilled")
    created = [c["created"] for c in standins.tremendous.counts().values()]
    assert created == [1]
    # Influence.io has no decision endpoint: nothing was sent to Influitive for it.
    assert "501" not in standins.accepted()
    listing = run_cli("ledger", "list", "--json", config=daemon.config)
    rows = json.loads(listing.stdout)
    assert [(r["source"], r["redemption_id"]) for r in rows] == [("influenceio", "501")]


def test_unknown_topics_are_refused_with_a_4xx_the_sender_sees(
    standins: Standins, daemon: Daemon
) -> None:
    answer = io_post(daemon, io_event(777), topic="orders/created")
    assert answer.status_code == 400 and "X-Webhook-Topic" in answer.json()["error"]
    out = run_cli("ledger", "show", "777", "--source", "influenceio", config=daemon.config)
    assert out.returncode == 1


def test_a_documented_topic_with_nothing_to_do_is_acknowledged_and_not_stored(
    standins: Standins, daemon: Daemon
) -> None:
    answer = io_post(daemon, io_event(778), topic="points/earned")
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"
    out = run_cli("ledger", "show", "778", "--source", "influenceio", config=daemon.config)
    assert out.returncode == 1


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "not valid JSON"),
        (["a list"], 422, "not a JSON object"),
        ({"customer": {"email": "a@example.com"}, "rewardType": "giftcard"}, 422, "'id'"),
        (io_event(601, customer="nobody"), 422, "'customer'"),
        (io_event(602, customer={"name": "No Mail"}), 422, "customer.email"),
        (io_event(603, rewardType=None, ruleId=None), 422, "nothing to route on"),
        (io_event(604, points="lots"), 422, "'points'"),
    ],
)
def test_a_malformed_body_gets_a_reason_and_is_stored_nowhere(
    standins: Standins, daemon: Daemon, body: Any, status: int, reason: str
) -> None:
    answer = io_post(daemon, body, webhook_id="wh-bad")
    assert answer.status_code == status
    assert reason in answer.json()["error"]
    listing = run_cli("ledger", "list", "--json", config=daemon.config)
    assert json.loads(listing.stdout) == []
    # And the webhook id was not remembered: a corrected retry is accepted.
    fixed = io_post(daemon, io_event(605), webhook_id="wh-bad")
    assert fixed.status_code == 202


def test_a_body_over_the_configured_cap_is_refused_naming_the_key(
    standins: Standins, daemon: Daemon
) -> None:
    big = io_event(611, padding="x" * (64 * 1024))  # the default [webhooks] max_body_bytes
    answer = io_post(daemon, big, webhook_id="wh-big")
    assert answer.status_code == 413
    assert "[webhooks] max_body_bytes" in answer.json()["error"]
    listing = run_cli("ledger", "list", "--json", config=daemon.config)
    assert json.loads(listing.stdout) == []
