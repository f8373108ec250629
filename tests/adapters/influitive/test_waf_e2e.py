"""Two daemons on one ledger behind a firewall like Influitive's (N requests per client
address in any rolling window; blocked past it): with the request budget set to N per window,
a backlog of 3 N is worked through with no request blocked and every redemption decided
exactly once."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.ledger.worker.conftest import ledger_url, pg_url  # noqa: F401
from tests.system.cli.conftest import TOKEN, Standins, popen_cli, standins  # noqa: F401

N = 8
WINDOW = 2.0
MARGIN = 0.5
"""The budget's window is a little longer than the firewall's: a request reaches the
firewall a moment after its unit is taken, and arrival times jitter at the window's edge
(the default config keeps its margin in the count instead: 180 of 200)."""


def _config(standins: Standins, ledger_url: str) -> Path:  # noqa: F811
    text = f"""
[influitive]
base_url = "{standins.influitive_url}"
api_token = "{TOKEN}"
org_id = "e2e-org-0001"
max_requests_per_window = {N}
window_seconds = {WINDOW + MARGIN}

[ledger]
url = "{ledger_url}"
lease_seconds = 30

[schedule]
interval_seconds = 0.3
concurrency = 4

[retry]
initial_backoff_seconds = 1
max_backoff_seconds = 2
http_attempts = 2
max_retry_after_seconds = 1

[vendors.tremendous]
base_url = "{standins.tremendous_url}/api/v2"
api_key = "e2e-tremendous-key-8d2b71"

[[rewards]]
reward_id = "37"
vendor = "tremendous"
product = "AMZN-US"
amount = "25.00"
currency = "USD"
"""
    path = standins.workdir / "waf.toml"
    path.write_text(text)
    return path


def _stop(daemon: subprocess.Popen[str]) -> str:
    daemon.terminate()
    try:
        _, err = daemon.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        _, err = daemon.communicate()
    return err


@pytest.mark.timeout(180)
def test_two_daemons_work_a_3n_backlog_without_one_blocked_request(
    standins: Standins, ledger_url: str  # noqa: F811
) -> None:
    standins.influitive.configure(page_size=3 * N, waf_limit=N, waf_window=WINDOW)
    standins.seed(*range(1, 3 * N + 1))
    config = _config(standins, ledger_url)

    daemons = [popen_cli("run", config=config) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while standins.influitive.outstanding_ids() and time.monotonic() < deadline:
            assert all(d.poll() is None for d in daemons), "a daemon exited"
            time.sleep(0.5)
    finally:
        errors = [_stop(d) for d in daemons]

    assert standins.influitive.outstanding_ids() == [], errors
    assert standins.influitive.waf_blocked() == 0
    assert all(r.status not in (403, 202) for r in standins.influitive.requests())
    accepted = standins.accepted()
    assert accepted == {str(i): ["fulfill"] for i in range(1, 3 * N + 1)}
    # One order per redemption at the vendor.
    counts = standins.tremendous.counts()
    assert len(counts) == 3 * N
    assert all(c["created"] == 1 for c in counts.values())
