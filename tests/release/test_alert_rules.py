"""deploy/prometheus/alerts.yml: valid for Prometheus (``promtool check rules``), each alert
firing on the series it is for and quiet otherwise (``promtool test rules``), and every
metric it reads is one reward-poller exposes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poller.core.states import State
from poller.ops.metrics import Recorder

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI: .ci/run installs it (Debian's prometheus)")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def test_promtool_check_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES / "alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = subprocess.run([promtool(), "test", "rules", "alerts.test.yml"], cwd=RULES,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


class _Ledger:
    def counts(self) -> dict[State, int]:
        return {}

    def oldest_waiting(self) -> Any:
        return SimpleNamespace(created_at=datetime.now(UTC))

    def last_successful_poll(self) -> None:
        return None

    def spent_since(self, currency: str, since: datetime) -> Decimal:
        return Decimal(0)


def test_every_metric_the_rules_read_is_exposed() -> None:
    recorder = Recorder(process=False)
    recorder.attach_ledger(_Ledger(), {"USD": Decimal("100")})
    # Series with labels appear once something happened; make one of each.
    recorder.vendor_error("tango", RuntimeError())
    recorder.influitive_error("poll", RuntimeError())
    exposed = {s.name for f in text_string_to_metric_families(recorder.exposition().decode())
               for s in f.samples}
    text = (RULES / "alerts.yml").read_text()
    read = set(re.findall(r"\breward_poller_[a-z_]+", text))
    assert read, "the rules read no reward_poller metric"
    assert read <= exposed, sorted(read - exposed)
