"""``reward-poller audit`` run the way a user runs it: the real CLI (and the daemon) as
processes against the sandbox's stand-ins, each of which lists its orders as its vendor
documents; discrepancies made with the stand-ins' own admin routes and ``sandbox --inject``;
a long list read page by page within the configured rate; the daemon's scheduled audit on
/metrics, and the alert rule firing on what it serves."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from poller.sandbox.services import Ports
from poller.vendors.ratelimit import HEADROOM
from tests.system.cli.conftest import KEY, Standins, popen_cli, run_cli
from tests.system.release.conftest import cli, free_port_base, read_until, start, stop
from tests.system.release.test_alert_rules import RULES, promtool

pytestmark = pytest.mark.e2e

READY = "ready; Ctrl-C stops the stand-ins"
AUDITED = {"tremendous": 3, "tango": 1, "giftbit": 1}
"""The orders one cycle places for the sandbox's seeded redemptions (docs/sandbox.md)."""
NOT_AUDITABLE = ("http", "manual")


@dataclass
class Sandbox:
    folder: Path
    ports: Ports
    written: str
    """The config as ``--write-config`` wrote it (the HTTP vendor's ``orders_url`` in it)."""

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports.as_dict()[service]}"

    def audit(self, fmt: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return cli("audit", "--format", fmt, *extra, cwd=self.folder)

    def inject(self, what: str) -> tuple[str, str]:
        """``sandbox --inject``, as docs/sandbox.md shows it: (order id, key) it added."""
        result = cli("sandbox", "--port-base", str(self.ports.influitive), "--inject", what,
                     cwd=self.folder)
        assert result.returncode == 0, result.stdout + result.stderr
        found = re.search(r"injected: order (\S+) \(key (\S+)\)", result.stdout)
        assert found, result.stdout
        return found[1], found[2]

    def ledger(self, redemption: str) -> dict[str, Any]:
        shown = cli("ledger", "show", redemption, "--json", cwd=self.folder)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh ``reward-poller sandbox`` with its config written, the HTTP vendor's
    ``orders_url`` taken out (that vendor then has no list to read), and one cycle run."""
    base = free_port_base()
    process = start("sandbox", "--port-base", str(base), "--write-config", cwd=tmp_path)
    try:
        read_until(process, lambda line: READY in line)
        config = tmp_path / "config.toml"
        text = config.read_text()
        assert re.search(r"(?m)^orders_url = ", text)
        config.write_text(re.sub(r"(?m)^orders_url = .*\n", "", text))
        run = cli("run", "--run-once", cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        yield Sandbox(tmp_path, Ports.from_base(base), text)
    finally:
        stop(process)


def listed_at_the_stand_ins(box: Sandbox) -> dict[str, int]:
    tremendous = httpx.get(box.url("tremendous") + "/_standin/orders").json()["orders"]
    tango = httpx.get(box.url("tango") + "/_standin/orders").json()["orders"]
    campaigns = httpx.get(box.url("giftbit") + "/_standin/campaigns").json()["campaigns"]
    return {"tremendous": len(tremendous), "tango": len(tango),
            "giftbit": sum(len(c["_gifts"]) for c in campaigns)}


def assert_not_auditable_reported(report: dict[str, Any]) -> None:
    vendors = {v["vendor"]: v for v in report["vendors"]}
    assert "orders_url" in vendors["http"]["not_auditable"]
    assert "manual vendor" in vendors["manual"]["not_auditable"]
    for name in NOT_AUDITABLE:
        assert vendors[name]["balanced"] and vendors[name]["orders"] == 0


def test_after_a_cycle_at_the_sandbox_the_books_balance(sandbox: Sandbox) -> None:
    assert listed_at_the_stand_ins(sandbox) == AUDITED
    result = sandbox.audit("json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["balanced"] is True and report["discrepancies"] == []
    vendors = {v["vendor"]: v for v in report["vendors"]}
    assert set(vendors) == {*AUDITED, *NOT_AUDITABLE}
    for name, count in AUDITED.items():
        v = vendors[name]
        assert (v["orders"], v["matched"], v["not_ours"]) == (count, count, 0), v
        assert v["by_status"] == {"complete": count} and v["balanced"], v
        assert v["unreadable"] is None and v["not_auditable"] is None
    assert_not_auditable_reported(report)
    assert report["totals"]["orders"] == report["totals"]["matched"] == sum(AUDITED.values())
    assert set(report["totals"]["discrepancies"].values()) == {0}

    table = sandbox.audit("table")
    assert table.returncode == 0, table.stderr
    assert "The books balance." in table.stdout
    for name in NOT_AUDITABLE:
        assert re.search(rf"(?m)^{name} .*cannot be audited: ", table.stdout), table.stdout
    csv_out = sandbox.audit("csv")
    assert csv_out.returncode == 0
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert sorted((r["vendor"], r["kind"]) for r in rows) == [
        ("http", "not_auditable"), ("manual", "not_auditable")]

    # With its order list configured, the HTTP vendor is read and balances too.
    (sandbox.folder / "config.toml").write_text(sandbox.written)
    with_list = sandbox.audit("json", "--vendor", "http")
    assert with_list.returncode == 0, with_list.stdout + with_list.stderr
    (http,) = json.loads(with_list.stdout)["vendors"]
    assert (http["orders"], http["matched"], http["not_auditable"]) == (1, 1, None)


def _orphan(box: Sandbox) -> tuple[str, str | None, str]:
    order, key = box.inject("tremendous:orphan")
    assert key.startswith("rp")
    return "tremendous", None, order


def _duplicate(box: Sandbox) -> tuple[str, str | None, str]:
    order, key = box.inject("tango:duplicate")
    assert key == box.ledger("4820")["idempotency_key"]
    return "tango", "4820", order


def _mismatch(box: Sandbox) -> tuple[str, str | None, str]:
    gift, _ = box.inject("giftbit:mismatch")  # the newest campaign's gift, +1.00
    return "giftbit", "4819", gift


def _missing(box: Sandbox) -> tuple[str, str | None, str]:
    order = box.ledger("4812")["vendor_order_id"]
    answer = httpx.post(f"{box.url('tremendous')}/_standin/orders/{order}/forget")
    assert answer.status_code == 200, answer.text
    return "tremendous", "4812", order


def _cancelled(box: Sandbox) -> tuple[str, str | None, str]:
    order = box.ledger("4813")["vendor_order_id"]
    answer = httpx.post(f"{box.url('tremendous')}/_standin/orders/{order}/status",
                        json={"status": "CANCELED"})
    assert answer.status_code == 200, answer.text
    return "tremendous", "4813", order


@pytest.mark.parametrize(("kind", "make"), [
    ("orphan", _orphan), ("duplicate", _duplicate), ("mismatch", _mismatch),
    ("missing", _missing), ("cancelled", _cancelled),
])
def test_each_discrepancy_made_at_a_stand_in_is_named_in_every_format(
    sandbox: Sandbox, kind: str, make: Any,
) -> None:
    vendor, redemption, order = make(sandbox)

    result = sandbox.audit("json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["balanced"] is False
    (found,) = report["discrepancies"]
    assert (found["vendor"], found["kind"], found["redemption_id"], found["order_id"]) == (
        vendor, kind, redemption, order), found
    assert found["detail"] and found["action"]
    assert report["totals"]["discrepancies"][kind] == 1
    vendors = {v["vendor"]: v for v in report["vendors"]}
    assert [n for n, v in vendors.items() if not v["balanced"]] == [vendor]
    assert_not_auditable_reported(report)

    table = sandbox.audit("table")
    assert table.returncode == 1
    rows = [line.split() for line in table.stdout.splitlines()]
    assert [vendor, kind, redemption or "-", order] in [r[:4] for r in rows], table.stdout
    assert "The books do not balance: 1 discrepancy." in table.stdout
    for name in NOT_AUDITABLE:
        assert re.search(rf"(?m)^{name} .*cannot be audited: ", table.stdout)

    csv_out = sandbox.audit("csv")
    assert csv_out.returncode == 1
    by_kind = {r["kind"]: r for r in csv.DictReader(io.StringIO(csv_out.stdout))}
    assert set(by_kind) == {kind, "not_auditable"}
    row = by_kind[kind]
    assert (row["vendor"], row["redemption_id"], row["order_id"]) == (
        vendor, redemption or "", order)


# --- a long list, read page by page within the rate --------------------------------------------

RATE = 20.0


def test_an_audit_over_10000_orders_asks_for_each_page_once_within_the_rate(
    standins: Standins,
) -> None:
    """Another system's 10,000 orders at Tremendous (not ours: counted, never a discrepancy),
    read through the CLI with ``rate_limit_per_second`` set: the stand-in sees each page's
    offset exactly once, and its own request times keep to the rate."""
    standins.tremendous.inject("orphan", count=10_000, external_id="another-system")
    config = standins.config()
    config.write_text(config.read_text().replace(
        f'api_key = "{KEY}"\n', f'api_key = "{KEY}"\nrate_limit_per_second = {RATE}\n', 1))
    assert run_cli("db", "upgrade", config=config).returncode == 0
    result = run_cli("audit", "--format", "json", config=config, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    (vendor,) = json.loads(result.stdout)["vendors"]
    assert (vendor["orders"], vendor["not_ours"], vendor["matched"]) == (10_000, 10_000, 0)

    requests = standins.tremendous.list_requests
    offsets = [int(q["offset"]) for q in requests]
    assert sorted(offsets) == list(range(0, 10_000, 100))  # each page exactly once
    assert len(offsets) == len(set(offsets)) == 100
    times = standins.tremendous.list_times
    # The limiter spaces requests 1 / (rate * (1 - headroom)) apart at the client; the
    # stand-in sees them with the network's jitter, so allow a little under that.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.8 / RATE, min(gaps)
    for i, first in enumerate(times):
        assert sum(1 for t in times[i:] if t < first + 1.0) <= RATE
    assert (len(times) - 1) / (times[-1] - times[0]) <= RATE * (1 - HEADROOM) * 1.05


# --- the daemon's scheduled audit, its metrics and the alert -------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scraped(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name]


def test_the_daemons_audit_finds_an_orphan_on_metrics_and_the_alert_fires(
    standins: Standins, tmp_path: Path,
) -> None:
    standins.seed(1)
    port = free_port()
    config = standins.config(interval_seconds="1", extra=(
        f'\n[server]\nlisten = "127.0.0.1:{port}"\n\n[audit]\ninterval = "2s"\n'))
    daemon = popen_cli("run", config=config)
    try:
        deadline = time.monotonic() + 60
        text = ""
        orphan: str | None = None
        while time.monotonic() < deadline:
            if orphan is None and standins.accepted().get("1") == ["fulfill"]:
                # The redemption is fulfilled; now an order under one of our keys that no
                # redemption has.
                (made,) = standins.tremendous.inject("orphan")
                orphan = made["id"]
                injected_at = time.time()
            try:
                text = scraped(port)
            except httpx.HTTPError:
                text = ""
            last = samples(text, "reward_poller_audit_last_run_timestamp_seconds")
            if orphan is not None and last and last[0][1] > injected_at + 0.5 and dict(
                    ((lb["vendor"], lb["kind"]), v) for lb, v in
                    samples(text, "reward_poller_audit_discrepancies")).get(
                    ("tremendous", "orphan")) == 1:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the daemon's audit never showed the orphan:\n" + text)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, err[-2000:]

    assert 'reward_poller_audit_discrepancies{kind="orphan",vendor="tremendous"} 1.0' in text
    counts = {(lb["vendor"], lb["kind"]): v
              for lb, v in samples(text, "reward_poller_audit_discrepancies")}
    assert {k: v for k, v in counts.items() if v} == {("tremendous", "orphan"): 1.0}
    ((_, balanced),) = samples(text, "reward_poller_audit_last_run_balanced")
    assert balanced == 0.0
    ((_, finished),) = samples(text, "reward_poller_audit_last_run_timestamp_seconds")
    assert time.time() - 60 < finished <= time.time()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "audit.discrepancy" and e.get("kind") == "orphan"
               and e.get("order_id") == orphan for e in events)

    # The alert, on the series exactly as scraped (one sample a minute for five minutes).
    series = [{"series": name + "{" + ", ".join(
        f"{k}={json.dumps(v)}" for k, v in sorted({**labels, "instance": "host1",
                                                   "job": "reward-poller"}.items())) + "}",
               "values": f"{value!r}x5"}
              for family in text_string_to_metric_families(text)
              for name, labels, value in
              ((s.name, s.labels, s.value) for s in family.samples)
              if name.startswith("reward_poller_audit_")]
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"]
               if r.get("alert") == "RewardPollerBooksUnbalanced"]
    labels = {"instance": "host1", "job": "reward-poller", "vendor": "tremendous",
              "kind": "orphan"}
    annotations = {k: v.replace("{{ $value }}", "1").replace("{{ $labels.kind }}", "orphan")
                   .replace("{{ $labels.vendor }}", "tremendous")
                   .replace("{{ $labels.instance }}", "host1")
                   for k, v in rule["annotations"].items()}
    tests = {"rule_files": [str(RULES / "alerts.yml")], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": [{
                 "eval_time": "1m", "alertname": "RewardPollerBooksUnbalanced",
                 "exp_alerts": [{"exp_labels": {**rule["labels"], **labels},
                                 "exp_annotations": annotations}]}]}]}
    (tmp_path / "audit.test.yml").write_text(json.dumps(tests, indent=1))
    checked = subprocess.run([promtool(), "test", "rules", "audit.test.yml"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
