"""End-to-end: the real CLI as a subprocess against the stand-ins served from the test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from poller.sandbox import influitive as influitive_standin
from poller.sandbox import tremendous as tremendous_standin
from poller.sandbox.server import ServerThread

TOKEN = "e2e-influitive-token-5f3a9c"
ORG = "e2e-org-0001"
KEY = "e2e-tremendous-key-8d2b71"
SECRETS = (TOKEN, KEY)


@dataclass
class Standins:
    influitive_url: str
    tremendous_url: str
    influitive: influitive_standin.InfluitiveState
    tremendous: tremendous_standin.TremendousState
    workdir: Path
    extra_config: dict[str, str] = field(default_factory=dict)

    def config(self, *, ledger_url: str | None = None, extra: str = "", **sections: str) -> Path:
        ledger = ledger_url or f"sqlite:///{self.workdir / 'ledger.db'}"
        text = f"""
[influitive]
base_url = "{self.influitive_url}"
api_token = "{TOKEN}"
org_id = "{ORG}"

[ledger]
url = "{ledger}"
lease_seconds = {sections.pop('lease_seconds', '2')}

[schedule]
interval_seconds = {sections.pop('interval_seconds', '1')}

[retry]
initial_backoff_seconds = 1
max_backoff_seconds = 2
http_attempts = 2
max_retry_after_seconds = 1

[vendors.tremendous]
base_url = "{self.tremendous_url}/api/v2"
api_key = "{KEY}"

[[rewards]]
reward_id = "37"
vendor = "tremendous"
product = "AMZN-US"
amount = "25.00"
currency = "USD"
"""
        text += extra  # raw TOML appended as is
        path = self.workdir / "config.toml"
        path.write_text(text)
        return path

    def seed(self, *ids: int, **over: Any) -> None:
        items = []
        for rid in ids:
            item = {"id": rid, "reward_id": 37, "reward_name": "$25 gift card",
                    "contact": {"id": 9000 + rid, "email": f"adv{rid}@example.com",
                                "name": f"Advocate {rid}"}}
            item.update(over)
            items.append(item)
        self.influitive.seed(items)

    def accepted(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for d in self.influitive.decisions():
            if d.accepted and d.source == "api":
                out.setdefault(d.id, []).append(d.verb)
        return out


@pytest.fixture
def standins(tmp_path: Path) -> Iterator[Standins]:
    i_state = influitive_standin.InfluitiveState(page_size=2)
    t_state = tremendous_standin.TremendousState()
    with ServerThread(influitive_standin.create_app(i_state, api_token=TOKEN, org_id=ORG)) as iu, \
            ServerThread(tremendous_standin.create_app(t_state, api_key=KEY)) as tu:
        yield Standins(iu, tu, i_state, t_state, tmp_path)


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    *args: str, config: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "poller", "--log-format", "json"]
    if config is not None:
        cmd += ["--config", str(config)]
    result = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout,
                            env=cli_env())
    for secret in SECRETS:
        assert secret not in result.stdout and secret not in result.stderr
    return result


def popen_cli(*args: str, config: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "poller", "--log-format", "json", "--config", str(config),
           *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env())
