"""The HTTP vendor without a look-up route, end to end: the real worker (``run --run-once``,
one process per cycle), the Influitive stand-in, and the HTTP receiver stand-in behind a TCP
proxy that can take it off the network.

The receiver hangs on the first order and records nothing; an admin refuses the redemption
in Influitive (the points are refunded); the receiver is down for three cycles, then back
for three more. No order may reach the receiver after the refusal, the ledger must not say
"fulfilled", and the redemption waits for a person: held with a reason naming its key, an
error line naming it, and the run that held it exits 1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from poller.domain.states import State
from poller.sandbox import http_receiver
from poller.sandbox.server import ServerThread
from tests.system.faults.harness import Run, Stage, TcpProxy, unnamed_failures

pytestmark = pytest.mark.e2e

SECRET = "faults-http-receiver-secret-81c2"
BACKOFF = 0.6
"""Past the harness config's longest backoff: the waiting row is due at the next run."""
REWARD = "55"


@pytest.fixture
def receiver() -> Iterator[tuple[http_receiver.ReceiverState, TcpProxy]]:
    state = http_receiver.ReceiverState(secret=SECRET)
    server = ServerThread(http_receiver.create_app(state))
    server.start()
    proxy = TcpProxy("127.0.0.1", server.port)
    try:
        yield state, proxy
    finally:
        proxy.close()
        server.stop()


def _config(stage: Stage, proxy: TcpProxy) -> Any:
    extra = f"""
[vendors.http]
url = "http://127.0.0.1:{proxy.port}{http_receiver.HOOK_PATH}"
secret = "{SECRET}"

[[rewards]]
reward_id = "{REWARD}"
vendor = "http"
product = "HOODIE-M"
amount = "25.00"
currency = "USD"
"""
    # A short timeout: the hanging receiver is given up on quickly (outcome unknown).
    return stage.config(timeout_seconds=1.0, http_attempts=1, lease_seconds=5, extra=extra)


def _redemption() -> dict[str, Any]:
    return {"id": 1, "reward_id": int(REWARD), "reward_name": "Advocate hoodie",
            "points": 2500, "quantity": 1, "stage": "requested",
            "contact": {"id": "c1", "email": "adv1@example.com", "name": "Advocate 1"}}


def test_a_refused_redemption_is_held_not_ordered_when_the_receiver_returns(
    sqlite_stage: Stage, receiver: tuple[http_receiver.ReceiverState, TcpProxy],
) -> None:
    stage = sqlite_stage
    state, proxy = receiver
    config = _config(stage, proxy)
    stage.influitive.seed([_redemption()])

    state.ignore(1)  # the receiver hangs on the first order and records nothing
    first = stage.run_once(config)
    assert first.returncode == 0, first.stderr[-2000:]
    assert stage.entries()["1"].state is State.WAITING
    assert state.orders == {}

    status, _, _ = stage.influitive.decide("1", "refuse", "out of hoodies", "admin")
    assert status == 200  # an admin refused it in the UI: the points are refunded

    runs: list[Run] = []
    proxy.cut()  # the receiver is down for three cycles
    for _ in range(3):
        time.sleep(BACKOFF)
        runs.append(stage.run_once(config))
    proxy.restore()  # and back for three more
    for _ in range(3):
        time.sleep(BACKOFF)
        runs.append(stage.run_once(config))

    assert state.posts() == 0 and state.orders == {}  # no order reached the receiver
    entry = stage.entries()["1"]
    assert entry.state is State.HELD
    assert "left Influitive's outstanding list" in (entry.hold_reason or "")
    assert entry.idempotency_key and entry.idempotency_key in (entry.hold_reason or "")
    assert [d for d in stage.influitive.decisions() if d.source == "api"] == []

    held = [(run, line) for run in runs for line in run.lines()
            if line.get("event") == "redemption.unconfirmable.held"]
    assert len(held) == 1
    run, line = held[0]
    assert line["redemption_id"] == "1" and line["level"] == "error"
    assert run.returncode == 1, run.stderr[-2000:]
    assert "vendor http" in run.stderr
    for each in (first, *runs):
        assert unnamed_failures(each.lines()) == []
