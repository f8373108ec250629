"""deploy/prometheus/alerts.yml: valid for Prometheus (``promtool check rules``), each alert
firing on the series it is for and quiet otherwise (``promtool test rules``), every metric it
reads is one reward-poller exposes, and the operator-facing alert fires on the textfiles two
real ``run --run-once`` runs write."""

from __future__ import annotations

import json
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
import yaml
from prometheus_client.parser import text_string_to_metric_families

from poller.core.audit import AuditResult, VendorAudit
from poller.daemon.metrics import ALERTING_INFLUITIVE_ERRORS, ALERTING_VENDOR_ERRORS, Recorder
from poller.domain.states import State
from tests.system.cli.conftest import KEY, Standins, run_cli

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


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
    assert "SUCCESS: 7 rules found" in result.stdout


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
    recorder.observe_audit(AuditResult(since=datetime.now(UTC), until=datetime.now(UTC),
                                       vendors=(VendorAudit(vendor="tango"),)), 0.0)
    exposed = {s.name for f in text_string_to_metric_families(recorder.exposition().decode())
               for s in f.samples}
    text = (RULES / "alerts.yml").read_text()
    read = set(re.findall(r"\breward_poller_[a-z_]+", text))
    assert read, "the rules read no reward_poller metric"
    assert read <= exposed, sorted(read - exposed)


def test_the_series_that_exist_at_zero_are_the_ones_the_rules_page_on() -> None:
    text = (RULES / "alerts.yml").read_text()
    classes = "|".join(ALERTING_VENDOR_ERRORS)
    assert f'reward_poller_vendor_errors_total{{error_class=~"{classes}"}}' in text
    (auth,) = ALERTING_INFLUITIVE_ERRORS
    assert f'reward_poller_influitive_errors_total{{error_class="{auth}"}}' in text


# --- the operator-facing alert on what two timer runs really write ----------------------------

RUN_EVERY_MINUTES = 5


def _series(files: list[str], labels: dict[str, str], start: int = 0) -> list[dict[str, str]]:
    """Every sample of ``files`` as promtool input series, one sample a minute: the first
    file is what node_exporter serves from minute ``start``, the next from 5 minutes later,
    and so on (``_``: no such series then), the last one for ten minutes."""
    minutes = [start, *[RUN_EVERY_MINUTES] * (len(files) - 1), 10]
    files = ["", *files]
    values: dict[str, list[str]] = {}
    for index, (text, length) in enumerate(zip(files, minutes, strict=True)):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                every = {**sample.labels, **labels}
                name = sample.name + "{" + ", ".join(
                    f"{k}={json.dumps(v)}" for k, v in sorted(every.items())) + "}"
                seen = values.setdefault(name, ["_"] * sum(minutes[:index]))
                seen.extend([repr(float(sample.value))] * length)
        for seen in values.values():
            seen.extend(["_"] * (sum(minutes[:index + 1]) - len(seen)))
    return [{"series": name, "values": " ".join(v)} for name, v in values.items()]


def _operator_alert(instance: str, **labels: str) -> dict[str, Any]:
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"]
               if r.get("alert") == "RewardPollerOperatorFacingErrors"]
    annotations = {k: v.replace("{{ $labels.instance }}", instance)
                   for k, v in rule["annotations"].items()}
    return {"exp_labels": {**rule["labels"], "instance": instance, **labels},
            "exp_annotations": annotations}


def test_two_timer_runs_with_a_rejected_vendor_key_fire_the_operator_alert(
    standins: Standins, tmp_path: Path,
) -> None:
    """Each run meets the rejected key again (a new redemption to order): the second file's
    counter must be above the first's, so that Prometheus sees it grow, even though
    node_exporter (``up``) is as new as the first file and a new series alone proves
    nothing."""
    textfile = standins.workdir / "reward-poller.prom"
    config = standins.config(extra=f'\n[metrics]\ntextfile = "{textfile}"\n')
    config.write_text(config.read_text().replace(KEY, "a-key-tremendous-rejects-000"))
    files = []
    for redemption in (1, 2):
        standins.seed(redemption)
        run = run_cli("run", "--run-once", config=config)
        assert run.returncode == 1, run.stdout + run.stderr  # the run could not do its job
        assert "rejected the credentials" in run.stderr
        files.append(textfile.read_text())

    def errors(text: str) -> float:
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "reward_poller_vendor_errors_total"
                   and s.labels == {"vendor": "tremendous", "error_class": "OperatorFacingError"})

    assert 0 < errors(files[0]) < errors(files[1])

    host = {"job": "node", "instance": "host1"}
    fired = [_operator_alert("host1", job="node", vendor="tremendous")]
    alert = "RewardPollerOperatorFacingErrors"
    tests = {
        "rule_files": [str(RULES / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [{
            "name": "node_exporter is as new as the first file: the second run fires it",
            "interval": "1m",
            "input_series": [*_series(files, host),
                             {"series": 'up{job="node", instance="host1"}', "values": "1x14"}],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": alert, "exp_alerts": []},
                {"eval_time": "6m", "alertname": alert, "exp_alerts": fired},
            ],
        }, {
            "name": "node_exporter was scraped before the first run: the first run fires it",
            "interval": "1m",
            "input_series": [*_series(files, host, start=40),
                             {"series": 'up{job="node", instance="host1"}', "values": "1x54"}],
            "alert_rule_test": [
                {"eval_time": "39m", "alertname": alert, "exp_alerts": []},
                {"eval_time": "41m", "alertname": alert, "exp_alerts": fired},
            ],
        }],
    }
    (tmp_path / "runs.test.yml").write_text(json.dumps(tests, indent=1))
    result = subprocess.run([promtool(), "test", "rules", "runs.test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
