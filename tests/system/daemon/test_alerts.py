"""Alerts, posted to a local Slack-compatible receiver (a starlette app in a ServerThread):
held redemptions once each, failing cycles once per streak, rate-limited, no secrets."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from poller import logs
from poller.daemon.alerts import Alerter
from poller.domain.model import Contact, Redemption
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.sql import SqlLedger
from poller.ports import Changes
from poller.sandbox.server import ServerThread
from tests.system.cli.conftest import Standins, popen_cli, run_cli
from tests.system.daemon.conftest import free_port, wait_for

SECRET = "alert-test-secret-token-55aa"
HOOK_PATH = "/services/T00/B00/hook-secret-part-77"


class Receiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self._lock = threading.Lock()

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = json.loads(await request.body())
            with self._lock:
                self.posts.append(body)
            return JSONResponse({"ok": self.status == 200}, status_code=self.status)

        return Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])])

    def texts(self) -> list[str]:
        with self._lock:
            return [p["text"] for p in self.posts]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    with ServerThread(r.app()) as url:
        yield r, url + HOOK_PATH


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqlLedger]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.close()


def hold(ledger: SqlLedger, rid: str, reason: str, clock: Clock) -> None:
    poll = ledger.start_poll(clock.now)
    ledger.record(poll, [Redemption(id=rid, reward_id="99", reward_name="Swag",
                                    contact=Contact(email=f"adv{rid}@example.com"))], clock.now)
    entry = ledger.get("influitive", rid)
    assert entry is not None
    assert ledger.claim(entry.pk, "test", clock.now, 60) is not None
    ledger.transition(entry.pk, "test", State.HELD, reason, clock.now,
                      Changes(hold_reason=reason))
    ledger.release(entry.pk, "test")


def alerter(ledger: SqlLedger, url: str, clock: Clock, **kw: Any) -> Alerter:
    options: dict[str, Any] = {"failures_before_alert": 3, "min_interval_seconds": 300}
    options.update(kw)
    return Alerter(webhook_url=url, ledger=ledger, clock=clock, host="test-host", **options)


def test_held_redemptions_are_announced_once_each(
    receiver: tuple[Receiver, str], ledger: SqlLedger
) -> None:
    rec, url = receiver
    clock = Clock()
    hold(ledger, "4815", "no [[rewards]] rule matches (reward_id='99')", clock)
    hold(ledger, "4818", "malformed redemption: advocate has no email address", clock)
    a = alerter(ledger, url, clock)
    a.after_cycle(True, "", 0)
    assert len(rec.posts) == 1
    text = rec.texts()[0]
    assert text.startswith("reward-poller (test-host): 2 redemptions are held")
    assert "- 4815 (Swag): no [[rewards]] rule matches" in text
    assert "- 4818 (Swag): malformed redemption" in text
    assert "adv4815@example.com" not in text  # no advocate's address in a chat channel

    clock.advance(3600)
    a.after_cycle(True, "", 0)
    assert len(rec.posts) == 1  # nothing new

    # Remembered in the ledger: a restarted daemon (a new Alerter) does not repeat them.
    hold(ledger, "4900", "spending guard: 500 USD is more than max_order_amount 250 USD", clock)
    again = alerter(ledger, url, clock)
    again.after_cycle(True, "", 0)
    assert len(rec.posts) == 2
    assert rec.texts()[1].startswith("reward-poller (test-host): redemption 4900 is held")
    assert "4815" not in rec.texts()[1]


def test_posts_are_rate_limited_and_nothing_is_dropped(
    receiver: tuple[Receiver, str], ledger: SqlLedger
) -> None:
    rec, url = receiver
    clock = Clock()
    a = alerter(ledger, url, clock, min_interval_seconds=300)
    hold(ledger, "1", "first", clock)
    a.after_cycle(True, "", 0)
    hold(ledger, "2", "second", clock)
    clock.advance(60)
    a.after_cycle(True, "", 0)
    assert len(rec.posts) == 1  # within 300 s of the last post: deferred
    clock.advance(241)
    a.after_cycle(True, "", 0)
    assert len(rec.posts) == 2 and "redemption 2 is held" in rec.texts()[1]


def test_failing_cycles_alert_once_per_streak_then_recovery(
    receiver: tuple[Receiver, str], ledger: SqlLedger
) -> None:
    rec, url = receiver
    clock = Clock()
    logs.redactor.add([SECRET])
    a = alerter(ledger, url, clock, min_interval_seconds=0)
    error = f"SourceUnavailable: poll failed: 503 from https://api.example.com ({SECRET})"
    for n in (1, 2):
        a.after_cycle(False, error, n)
    assert rec.posts == []
    a.after_cycle(False, error, 3)
    a.after_cycle(False, error, 4)
    assert len(rec.posts) == 1
    text = rec.texts()[0]
    assert "3 cycles in a row failed" in text and "SourceUnavailable" in text
    assert SECRET not in text and "[redacted]" in text
    a.after_cycle(True, "", 0)
    assert rec.texts()[1] == "reward-poller (test-host): cycles succeed again."
    a.after_cycle(True, "", 0)
    assert len(rec.posts) == 2


def test_a_receiver_that_fails_is_tried_again_later(
    receiver: tuple[Receiver, str], ledger: SqlLedger
) -> None:
    rec, url = receiver
    clock = Clock()
    hold(ledger, "7", "needs a person", clock)
    rec.status = 500
    a = alerter(ledger, url, clock)
    a.after_cycle(True, "", 0)  # does not raise
    assert len(rec.posts) == 1
    rec.status = 200
    a.after_cycle(True, "", 0)  # not marked as announced, and a failed post does not count
    assert len(rec.posts) == 2 and "redemption 7" in rec.texts()[1]
    a.after_cycle(True, "", 0)
    assert len(rec.posts) == 2


def test_an_unreachable_receiver_never_stops_the_worker(
    receiver: tuple[Receiver, str], ledger: SqlLedger
) -> None:
    """The post fails: the cycle goes on (no exception), the failure is logged, and the held
    redemption is not marked announced, so a receiver that comes back gets it."""
    clock = Clock()
    hold(ledger, "8", "needs a person", clock)
    url = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"
    a = alerter(ledger, url, clock, timeout_seconds=2)
    with structlog.testing.capture_logs() as captured:
        assert a.after_cycle(False, "boom", 5) is None
    assert any(e["event"] == "alert.delivery.failed" for e in captured)
    assert not any(e["event"] == "alert.held.posted" for e in captured)

    rec, good_url = receiver
    clock.advance(3600)
    alerter(ledger, good_url, clock).after_cycle(True, "", 0)
    assert len(rec.posts) == 1
    assert "- 8 (Swag): needs a person" in rec.texts()[0]


def test_without_a_webhook_nothing_is_read_or_sent(ledger: SqlLedger) -> None:
    a = Alerter(webhook_url=None, ledger=ledger)
    assert not a.enabled
    a.after_cycle(False, "boom", 10)
    assert ledger.cache_get("alerts:last-post", datetime.now(UTC)) is None


@pytest.mark.e2e
def test_run_once_posts_held_and_failed_runs(
    standins: Standins, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    standins.seed(1)
    standins.seed(2, reward_id=99, reward_name="Swag")
    alerts = (f'\n[alerts]\nwebhook_url = "{url}"\nfailures_before_alert = 2\n'
              "min_interval_seconds = 0\n")
    config = standins.config(extra=alerts)
    assert run_cli("run", "--run-once", config=config).returncode == 0
    assert len(rec.posts) == 1
    assert "redemption 2 is held" in rec.texts()[0]
    assert "reward_id='99'" in rec.texts()[0]
    assert run_cli("run", "--run-once", config=config).returncode == 0
    assert len(rec.posts) == 1  # at most once per redemption, across runs

    standins.influitive.fail_next(503, 503, 503, 503)  # two runs, two tries each
    first = run_cli("run", "--run-once", config=config)
    second = run_cli("run", "--run-once", config=config)
    assert first.returncode == second.returncode == 1
    assert len(rec.posts) == 2
    assert "2 cycles in a row failed" in rec.texts()[1]
    assert HOOK_PATH not in first.stderr + second.stderr  # the webhook URL is a secret
    assert run_cli("run", "--run-once", config=config).returncode == 0
    assert rec.texts()[2].endswith("cycles succeed again.")


@pytest.mark.e2e
def test_the_daemon_alerts_on_held_and_on_failing_cycles(
    standins: Standins, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    standins.seed(5, reward_id=99, reward_name="Swag")
    alerts = (f'\n[alerts]\nwebhook_url = "{url}"\nfailures_before_alert = 2\n'
              "min_interval_seconds = 0\n")
    daemon = popen_cli("run", config=standins.config(interval_seconds="0.5", extra=alerts))
    try:
        wait_for(lambda: len(rec.posts) == 1, what="the held alert")
        assert "redemption 5 is held" in rec.texts()[0]
        standins.influitive.fail_next(*([503] * 4))  # two cycles of two tries
        wait_for(lambda: len(rec.posts) >= 2, what="the failing alert")
        assert "2 cycles in a row failed" in rec.texts()[1]
        wait_for(lambda: len(rec.posts) >= 3, what="the recovery")
        assert rec.texts()[2].endswith("cycles succeed again.")
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, err
    assert len(rec.posts) == 3  # the held one was not announced again
    assert HOOK_PATH not in err


def test_operator_facing_problems_alert_at_once_once_per_cause(
    receiver: tuple[Receiver, str], ledger: SqlLedger
) -> None:
    from poller.worker.cycle import OperatorProblem

    rec, url = receiver
    clock = Clock()
    a = alerter(ledger, url, clock, min_interval_seconds=300)
    hold(ledger, "1", "first", clock)
    a.after_cycle(True, "", 0)  # a held post just before: it must not delay the problem
    keys = OperatorProblem(who="tremendous", kind="credentials", detail="HTTP 401",
                           redemptions=3)
    a.problems([keys])
    assert len(rec.posts) == 2
    assert rec.texts()[1] == (
        "reward-poller (test-host): vendor tremendous rejected the credentials (HTTP 401); "
        "3 redemptions wait on it, nothing was refused. Fix: check the credentials in "
        "[vendors.tremendous], then run `reward-poller check`.")
    clock.advance(200)
    funds = OperatorProblem(who="tremendous", kind="funds", detail="no funds", redemptions=1)
    a.problems([keys, funds])  # the same cause again: deferred; a new cause: at once
    assert len(rec.posts) == 3 and "has not enough funds" in rec.texts()[2]
    clock.advance(101)
    a.problems([keys])
    assert len(rec.posts) == 4 and "rejected the credentials" in rec.texts()[3]


def test_healthz_reports_a_problem_until_it_is_no_longer_met() -> None:
    from poller.daemon.alerts import problem_line
    from poller.daemon.listener import Health, ProblemBoard
    from poller.worker.cycle import OperatorProblem

    now = [1_800_000_000.0]
    board = ProblemBoard(keep_seconds=600, describe=problem_line, clock=lambda: now[0])
    health = Health(interval_seconds=60, last_success=lambda: now[0], clock=lambda: now[0],
                    problems=board)
    assert health.judge().ok
    board.update([OperatorProblem(who="influitive", kind="firewall", detail="WAF 403",
                                  redemptions=0)])
    verdict = health.judge()
    assert not verdict.ok and "Influitive's firewall blocked our requests" in verdict.reason
    assert [p["cause"] for p in verdict.as_json(now[0])["problems"]] == ["influitive.firewall"]
    now[0] += 601
    assert health.judge().ok and health.judge().problems == []


@pytest.mark.e2e
def test_run_once_posts_an_operator_facing_problem_once_per_interval(
    standins: Standins, receiver: tuple[Receiver, str]
) -> None:
    from tests.system.cli.conftest import KEY

    rec, url = receiver
    standins.seed(1)
    alerts = f'\n[alerts]\nwebhook_url = "{url}"\nmin_interval_seconds = 3600\n'
    config = standins.config(extra=alerts)
    config.write_text(config.read_text().replace(f'api_key = "{KEY}"',
                                                 'api_key = "alerts-wrong-key-000"'))
    assert run_cli("run", "--run-once", config=config).returncode == 1
    assert len(rec.posts) == 1
    assert "vendor tremendous rejected the credentials" in rec.texts()[0]
    assert "1 redemption waits on it, nothing was refused" in rec.texts()[0]
    time.sleep(2.1)  # the retry backoff (initial_backoff_seconds = 1, max 2)
    assert run_cli("run", "--run-once", config=config).returncode == 1
    assert len(rec.posts) == 1  # the same cause within min_interval_seconds: not again
