"""The receivers in a listener thread (real HTTP, an in-memory ledger): deduplication on the
pair (webhook id, event id), the topic answered with a 4xx, and bodies read against the cap
as they arrive."""

from __future__ import annotations

import json
import resource
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from poller.daemon.listener import Health, create_app, webhook_routes
from poller.daemon.metrics import Recorder
from poller.daemon.runner import HttpServer
from poller.ledger.memory import MemoryLedger
from tests.system.daemon.conftest import free_port

SECRET = "influenceio-secret-77a1f0e2"
NUDGE = "nudge-secret-3b7e91c0d4"
CAP = 4096


class Served:
    def __init__(self, url: str, ledger: MemoryLedger, nudges: list[int]) -> None:
        self.url = url
        self.ledger = ledger
        self.nudges = nudges
        self.http = httpx.Client(base_url=url, timeout=10)

    def post(self, body: Any, *, webhook_id: str | None = "wh-1",
             topic: str | None = "points/redeemed") -> httpx.Response:
        headers = {"X-Webhook-Secret": SECRET}
        if topic is not None:
            headers["X-Webhook-Topic"] = topic
        if webhook_id is not None:
            headers["X-Webhook-Id"] = webhook_id
        return self.http.post("/webhooks/influenceio", content=json.dumps(body).encode(),
                              headers=headers)

    def stored(self) -> list[str]:
        return sorted(e.redemption_id for e in self.ledger.list(limit=100))


@pytest.fixture
def served() -> Iterator[Served]:
    ledger = MemoryLedger()
    nudges: list[int] = []
    recorder = Recorder()
    health = Health(interval_seconds=60, last_success=lambda: recorder.last_successful_poll)
    routes = webhook_routes(influitive_secret=NUDGE, influenceio_secret=SECRET, ledger=ledger,
                            nudge=lambda: nudges.append(1), max_body=CAP, body_timeout=2.0)
    app = create_app(health, recorder, extra_routes=routes)
    with HttpServer(app, f"127.0.0.1:{free_port()}") as url:
        s = Served(url, ledger, nudges)
        yield s
        s.http.close()


def event(event_id: Any, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "customer": {"id": "c-9", "email": "shopper@example.com", "name": "Sam Shopper"},
        "action": "redeem", "points": 500, "type": "reward", "ruleId": "r-1",
        "rewardType": "giftcard",
    }
    body.update(over)
    return body


def test_a_reused_webhook_id_with_a_new_event_is_stored(served: Served) -> None:
    first = served.post(event(901), webhook_id="wh-reused")
    assert first.status_code == 202 and first.json()["status"] == "stored"
    second = served.post(event(902), webhook_id="wh-reused")
    assert second.status_code == 202 and second.json() == {"status": "stored", "id": "902"}
    assert served.stored() == ["901", "902"]
    # The same pair again is a repeat of a delivery: answered 2xx, stored once.
    again = served.post(event(902), webhook_id="wh-reused")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert served.stored() == ["901", "902"]


@pytest.mark.parametrize("topic", [None, "", "customers/created", "points/redeemed/extra"])
def test_a_missing_or_unknown_topic_is_a_4xx_logged_as_a_warning(
    served: Served, topic: str | None
) -> None:
    with structlog.testing.capture_logs() as logs:
        answer = served.post(event(903), topic=topic)
    assert answer.status_code == 400
    assert "X-Webhook-Topic" in answer.json()["error"]
    assert served.stored() == []
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and "topic" in warnings[0]["event"]


def test_the_topic_is_matched_without_regard_to_case(served: Served) -> None:
    answer = served.post(event(904), topic="Points/Redeemed")
    assert answer.status_code == 202
    assert served.stored() == ["904"]


def test_an_email_with_a_line_break_is_stored_and_held_as_malformed(served: Served) -> None:
    answer = served.post(event(905, customer={"id": "c-1", "email": "a@example.com\r\nBcc: x@y"}))
    assert answer.status_code == 202
    entry = served.ledger.get("influenceio", "905")
    assert entry is not None
    problems = entry.parsed().problems
    assert any("control characters" in p for p in problems)


def test_a_body_larger_than_the_cap_is_refused_naming_the_key(served: Served) -> None:
    answer = served.post(event(906, padding="x" * (CAP + 1)))
    assert answer.status_code == 413
    assert "[webhooks] max_body_bytes" in answer.json()["error"]
    assert served.stored() == []
    nudge = served.http.post("/webhooks/influitive", headers={"X-Webhook-Secret": NUDGE},
                             content=b"x" * (CAP + 1))
    assert nudge.status_code == 413 and served.nudges == []


def _request_head(path: str, secret: str, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nX-Webhook-Secret: {secret}\r\n"
            f"X-Webhook-Topic: points/redeemed\r\nX-Webhook-Id: wh-big\r\n{extra}\r\n").encode()


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionError):
        pass
    return data


def test_a_declared_200_mb_body_is_refused_before_it_is_sent(served: Served) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(_request_head("/webhooks/influenceio", SECRET,
                                   f"Content-Length: {200 * 1024 * 1024}\r\n"))
        assert _answer(sock).startswith(b"HTTP/1.1 413")


def test_a_streamed_200_mb_body_is_refused_early_with_memory_flat(served: Served) -> None:
    """Chunked (no Content-Length): only reading stops it. The refusal comes after the
    cap, not after 200 MB, and the process's peak memory does not grow by the body."""
    host, port = served.url.removeprefix("http://").split(":")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    answer = b""
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(_request_head("/webhooks/influenceio", SECRET,
                                   "Transfer-Encoding: chunked\r\n"))
        sock.settimeout(5)
        while sent < 200 * 1024 * 1024:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered (or closed) while the body was still coming
            try:
                sock.sendall(framed)
            except (TimeoutError, ConnectionError):
                break  # the server stopped reading
            sent += len(chunk)
        try:
            answer = _answer(sock)
        except ConnectionError:
            answer = b"(connection reset)"
    assert answer.startswith((b"HTTP/1.1 413", b"(connection reset)")), answer[:100]
    assert sent < 16 * 1024 * 1024, f"{sent} bytes were taken before the refusal"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 50, grown_mb
    assert served.stored() == []


def test_a_trickling_body_is_cut_off_after_the_body_timeout(served: Served) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(_request_head("/webhooks/influenceio", SECRET, "Content-Length: 200\r\n")
                     + b'{"id": ')  # and the rest never comes
        started = time.monotonic()
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert time.monotonic() - started < 4  # body_timeout is 2 s here
    assert served.stored() == []
