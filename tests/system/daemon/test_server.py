"""/healthz and /metrics over real HTTP: the app factory in a listener thread (with a clock the
test moves), then the daemon itself with ``[server] listen`` set."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from poller.config.sections import ServerLimits, parse_listen
from poller.daemon.listener import Health, create_app
from poller.daemon.metrics import Recorder
from poller.daemon.runner import AcceptErrorLog, HttpServer, ListenError
from poller.domain.errors import SourceUnavailable, TransientVendorError
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.domain.states import State
from tests.system.cli.conftest import SECRETS, Standins, cli_env, popen_cli
from tests.system.daemon.conftest import free_port, wait_for


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


# --- the listener under abuse --------------------------------------------------------------


def _limited_server(limits: ServerLimits, recorder: Recorder) -> HttpServer:
    health = Health(interval_seconds=60, last_success=lambda: recorder.last_successful_poll)
    return HttpServer(create_app(health, recorder), f"127.0.0.1:{free_port()}", limits)


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (whatever it sends
    before, e.g. the rest of an earlier answer, is read and dropped)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False
    return False


def test_a_connection_that_never_finishes_its_headers_is_closed(recorder: Recorder) -> None:
    with _limited_server(ServerLimits(header_timeout_seconds=0.5), recorder) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and nothing more
            started = time.monotonic()
            assert _closed_by_peer(slow, within=5)
            assert time.monotonic() - started < 3
        # A first request answered, then half of a second one on the same connection.
        with socket.create_connection((host, int(port))) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            kept.settimeout(5)
            assert kept.recv(65536).startswith(b"HTTP/1.1 ")
            kept.sendall(b"GET /healthz HTTP/1.1\r\n")
            assert _closed_by_peer(kept, within=5)


def test_past_the_connection_limit_the_oldest_slow_connection_gives_way(
    recorder: Recorder
) -> None:
    limits = ServerLimits(max_connections=20, header_timeout_seconds=60)
    with _limited_server(limits, recorder) as url:
        host, port = url.removeprefix("http://").split(":")
        slow = [socket.create_connection((host, int(port))) for _ in range(60)]
        try:
            for s in slow:
                s.sendall(b"GET /healthz HTTP/1.1\r\n")
            started = time.monotonic()
            answer = httpx.get(f"{url}/healthz", timeout=1)
            assert answer.status_code in (200, 503)
            assert time.monotonic() - started < 1
            # The first ones, the oldest waiting, were dropped to make room.
            assert _closed_by_peer(slow[0], within=2)
        finally:
            for s in slow:
                s.close()


def test_accept_failures_are_logged_once_per_interval() -> None:
    class Loop:
        def __init__(self) -> None:
            self.default: list[dict[str, Any]] = []

        def default_exception_handler(self, context: dict[str, Any]) -> None:
            self.default.append(context)

    now = [0.0]
    handler = AcceptErrorLog(60, clock=lambda: now[0])
    loop = Loop()
    failure = {"message": "socket.accept() out of system resource",
               "exception": OSError(24, "Too many open files")}
    with structlog.testing.capture_logs() as logs:
        for _ in range(500):
            handler(loop, failure)  # type: ignore[arg-type]
            now[0] += 0.1  # 50 s of failing accept() calls
        now[0] += 11
        handler(loop, failure)  # type: ignore[arg-type]
        handler(loop, {"message": "something else"})  # type: ignore[arg-type]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 2
    assert "Too many open files" in warnings[0]["error"]
    assert warnings[1]["repeated"] == 499
    assert loop.default == [{"message": "something else"}]


@pytest.mark.e2e
def test_six_hundred_slow_clients_leave_health_and_polls_alone(standins: Standins) -> None:
    """600 sockets each send half a request and stay. The daemon's file descriptors are
    capped at 512 (below what 600 held connections need), as a small default soft limit
    would: /healthz still answers within a second and the worker keeps polling."""
    port = free_port()
    config = standins.config(interval_seconds="0.5",
                             extra=f'\n[server]\nlisten = "127.0.0.1:{port}"\n')
    base = f"http://127.0.0.1:{port}"

    def low_fd_limit() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))

    cmd = [sys.executable, "-m", "poller", "--log-format", "json", "--config", str(config),
           "run"]
    daemon = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env(), preexec_fn=low_fd_limit)
    slow: list[socket.socket] = []
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_for(up, what="the listener")

        def polls() -> int:
            return sum(r.path.endswith("/reward_redemptions")
                       for r in standins.influitive.requests())

        for _ in range(600):
            s = socket.socket()
            s.settimeout(0.2)
            try:
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            except OSError:
                pass  # the kernel's queue was full for a moment: the attack goes on
            slow.append(s)
        before = polls()
        started = time.monotonic()
        answer = httpx.get(f"{base}/healthz", timeout=1)
        assert answer.status_code in (200, 503)
        assert time.monotonic() - started < 1
        wait_for(lambda: polls() >= before + 2, timeout=10, what="polls while under attack")
    finally:
        for s in slow:
            s.close()
        daemon.send_signal(signal.SIGTERM)
        try:
            _, err = daemon.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            _, err = daemon.communicate()
    assert "ConnectError" not in err
    assert err.count("out of system resource") <= 1
