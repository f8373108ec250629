"""/healthz and /metrics over real HTTP: the app factory in a listener thread (with a clock the
test moves), then the daemon itself with ``[server] listen`` set."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from poller.core.errors import SourceUnavailable, TransientVendorError
from poller.core.model import OrderRequest, OrderResult, OrderStatus
from poller.core.states import State
from poller.ops.health import Health
from poller.ops.metrics import Recorder
from poller.server.app import create_app
from poller.server.runner import HttpServer, ListenError, parse_listen
from tests.e2e.conftest import SECRETS, Standins, popen_cli
from tests.ops.conftest import free_port, wait_for


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder(clock: Clock) -> Recorder:
    return Recorder(clock=clock)


@pytest.fixture
def served(clock: Clock, recorder: Recorder) -> Iterator[str]:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("a webhook would be here")

    health = Health(interval_seconds=60, last_success=lambda: recorder.last_successful_poll,
                    clock=clock)
    app = create_app(health, recorder, extra_routes=[Route("/webhooks/test", hello,
                                                           methods=["POST"])])
    with HttpServer(app, f"127.0.0.1:{free_port()}") as url:
        yield url


def test_healthz_is_judged_when_asked(served: str, clock: Clock, recorder: Recorder) -> None:
    starting = httpx.get(f"{served}/healthz")
    assert starting.status_code == 200
    assert starting.json()["reason"].startswith("starting")
    clock.now += 121  # two intervals of 60 s, and no poll yet
    never = httpx.get(f"{served}/healthz")
    assert never.status_code == 503
    assert "no successful poll" in never.json()["reason"]

    recorder.observe_cycle(True, 0)
    assert httpx.get(f"{served}/healthz").status_code == 200
    clock.now += 119
    assert httpx.get(f"{served}/healthz").status_code == 200
    clock.now += 2
    late = httpx.get(f"{served}/healthz")
    assert late.status_code == 503
    body = late.json()
    assert body["status"] == "unhealthy" and body["threshold_seconds"] == 120
    assert body["seconds_since_last_successful_poll"] == 121
    assert "more than 2 intervals" in body["reason"]
    assert late.headers["cache-control"] == "no-store"
    recorder.observe_cycle(False, 1)  # a failed cycle does not make it well
    assert httpx.get(f"{served}/healthz").status_code == 503


def test_metrics_exposition(served: str, recorder: Recorder) -> None:
    recorder.set_counts({State.FULFILLED: 3, State.HELD: 1})
    recorder.observe_cycle(True, 0)
    recorder.timed(lambda: None)()
    request = OrderRequest(idempotency_key="k", redemption_id="1", source="influitive",
                           vendor="tremendous", product="P", amount=Decimal("25.00"),
                           currency="USD", recipient_name="A", recipient_email="a@example.com")
    recorder.order(request, OrderResult(vendor_order_id="O1", status=OrderStatus.COMPLETE))
    recorder.order(request, OrderResult(vendor_order_id="O2", status=OrderStatus.PENDING))
    recorder.order(request, OrderResult(vendor_order_id="O3", status=OrderStatus.FAILED))
    recorder.vendor_error("tremendous", TransientVendorError("503"))
    recorder.influitive_error("poll", SourceUnavailable("down"))

    response = httpx.get(f"{served}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    for line in (
        'reward_poller_redemptions{state="fulfilled"} 3.0',
        'reward_poller_redemptions{state="held"} 1.0',
        'reward_poller_redemptions{state="new"} 0.0',
        "reward_poller_cycle_duration_seconds_count 1.0",
        'reward_poller_cycles_total{outcome="ok"} 1.0',
        "reward_poller_last_successful_poll_timestamp_seconds 1.8e+09",
        'reward_poller_orders_total{currency="USD",vendor="tremendous"} 2.0',
        'reward_poller_spend_minor_units_total{currency="USD",vendor="tremendous"} 5000.0',
        'reward_poller_vendor_errors_total{error_class="TransientVendorError",'
        'vendor="tremendous"} 1.0',
        'reward_poller_influitive_errors_total{error_class="SourceUnavailable",'
        'operation="poll"} 1.0',
    ):
        assert line in text, line
    assert "_created" not in text


def test_extra_routes_are_served_beside_the_built_in_ones(served: str) -> None:
    assert httpx.post(f"{served}/webhooks/test").text == "a webhook would be here"
    assert httpx.get(f"{served}/nothing-here").status_code == 404


def test_listen_address_rules() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("9464", "localhost", "::1:9464", "127.0.0.1:99999", "127.0.0.1:http"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_an_address_in_use_is_reported(served: str, recorder: Recorder) -> None:
    taken = served.rsplit(":", 1)[1]
    health = Health(interval_seconds=60, last_success=lambda: None)
    with pytest.raises(ListenError, match=rf"cannot listen on 127\.0\.0\.1:{taken}"):
        HttpServer(create_app(health, recorder), f"127.0.0.1:{taken}")


@pytest.mark.e2e
def test_the_daemon_serves_health_and_metrics(standins: Standins) -> None:
    standins.seed(1, 2)
    standins.seed(3, reward_id=99, reward_name="Swag")
    port = free_port()
    config = standins.config(interval_seconds="1",
                             extra=f'\n[server]\nlisten = "127.0.0.1:{port}"\n')
    base = f"http://127.0.0.1:{port}"
    # Both first orders fail twice (both tries of each call: a TransientVendorError each,
    # retried at a later cycle); later, Influitive fails a poll.
    standins.tremendous.fail(503, 4, method="POST", path="/orders")
    daemon = popen_cli("run", config=config)
    try:
        wait_for(lambda: set(standins.accepted()) == {"1", "2"}, what="two fulfilments")

        def metrics() -> str:
            return httpx.get(f"{base}/metrics").text

        wait_for(lambda: 'reward_poller_redemptions{state="fulfilled"} 2.0' in metrics(),
                 what="the counts after the cycle")
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        text = metrics()
        assert 'reward_poller_redemptions{state="held"} 1.0' in text
        assert 'reward_poller_orders_total{currency="USD",vendor="tremendous"} 2.0' in text
        assert ('reward_poller_spend_minor_units_total{currency="USD",vendor="tremendous"} '
                '5000.0') in text
        assert "reward_poller_last_successful_poll_timestamp_seconds 1." in text
        assert ('reward_poller_vendor_errors_total{error_class="TransientVendorError",'
                'vendor="tremendous"} 2.0') in text

        standins.influitive.fail_next(503, 503, 503, 503)
        wait_for(lambda: 'error_class="SourceUnavailable",operation="poll"' in metrics(),
                 what="an Influitive error by class")
        assert 'reward_poller_cycles_total{outcome="failed"}' in metrics()
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, err
    for secret in SECRETS:
        assert secret not in err
    with pytest.raises(httpx.ConnectError):  # the listener stops with the daemon
        httpx.get(f"{base}/healthz")


@pytest.mark.e2e
def test_no_listener_unless_configured(standins: Standins) -> None:
    port = free_port()
    daemon = popen_cli("run", config=standins.config(interval_seconds="30"))
    try:
        wait_for(lambda: any(r.path.endswith("/reward_redemptions")
                             for r in standins.influitive.requests()), what="the first poll")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=20)


@pytest.mark.e2e
def test_a_taken_address_stops_the_daemon_before_it_starts(standins: Standins) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        config = standins.config(extra=f'\n[server]\nlisten = "127.0.0.1:{port}"\n')
        daemon = popen_cli("run", config=config)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert standins.influitive.requests() == []  # nothing polled
