"""``reward-poller audit``: exit 0 when the books balance, 1 on a discrepancy or a list not
read, 2 on a usage or configuration error; the three formats; the run kept in the ledger
and its metrics in a textfile of their own. Vendors' lists come from ``FakeOrderBook``."""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from poller.cli.main import cli
from poller.daemon import audit_job
from poller.domain.errors import NotAuditable, VendorUnreachable
from poller.domain.keys import idempotency_key
from poller.domain.model import Contact, Redemption
from poller.domain.orders import OrderStatus, VendorOrder
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.audit import last_run
from poller.ports import Changes, OrderBook
from poller.vendors.fake import FakeOrderBook

NOW = datetime.now(UTC).replace(microsecond=0)
ORDERED = NOW - timedelta(days=2)


def key(rid: str) -> str:
    return idempotency_key(namespace="org", source="influitive", redemption_id=rid)


def order(rid: str, **over: Any) -> VendorOrder:
    base = VendorOrder(vendor="tremendous", order_id=f"o-{rid}", external_id=key(rid),
                       created_at=ORDERED + timedelta(seconds=5), status=OrderStatus.COMPLETE,
                       raw_status="EXECUTED", amount_minor=2500, currency="USD",
                       product="AMZN", recipient=f"{rid}@example.com")
    return replace(base, **over)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        for rid in ("r1", "r2"):
            ledger.record(ledger.start_poll(ORDERED),
                          [Redemption(id=rid, contact=Contact(email=f"{rid}@example.com"))],
                          ORDERED)
            entry = ledger.get("influitive", rid)
            assert entry is not None
            ledger.claim(entry.pk, "w", ORDERED, 60)
            ledger.transition(entry.pk, "w", State.ORDERING, "order", ORDERED, Changes(
                idempotency_key=key(rid), vendor="tremendous", product="AMZN",
                amount=Decimal("25.00"), currency="USD", ordered_at=ORDERED))
            ledger.transition(entry.pk, "w", State.ORDERED, "placed", ORDERED,
                              Changes(vendor_order_id=f"o-{rid}"))
            ledger.transition(entry.pk, "w", State.FULFILLED, "told", ORDERED, release=True)
    finally:
        ledger.close()
    prom = tmp_path / "prom"
    prom.mkdir()
    path = tmp_path / "config.toml"
    path.write_text(f"""
[influitive]
api_token = "t"
org_id = "org"

[ledger]
url = "sqlite:///{tmp_path / 'ledger.db'}"

[metrics]
textfile = "{prom / 'reward-poller.prom'}"

[vendors.tremendous]
api_key = "k"

[vendors.manual]
""")
    return path


@pytest.fixture
def books(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, OrderBook | Exception]]:
    """What each vendor's list is: a FakeOrderBook, or the error building it raises."""
    found: dict[str, OrderBook | Exception] = {
        "tremendous": FakeOrderBook("tremendous", [order("r1"), order("r2")]),
        "manual": NotAuditable("manual fulfilment keeps no order list: nothing to read"),
    }

    def opener(config: Any) -> audit_job.BookOpener:
        def open_book(name: str) -> OrderBook:
            book = found[name]
            if isinstance(book, Exception):
                raise book
            return book
        return open_book

    monkeypatch.setattr(audit_job, "order_book_opener", opener)
    yield found


def run(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(config), "audit", *args])


def test_balanced_books_exit_0_and_the_manual_vendor_is_said_plainly(
    config: Path, books: dict[str, Any],
) -> None:
    result = run(config)
    assert result.exit_code == 0, result.output
    assert "The books balance." in result.output
    assert "cannot be audited: manual fulfilment keeps no order list" in result.output
    ledger = open_ledger(f"sqlite:///{config.parent / 'ledger.db'}")
    try:
        stored = last_run(ledger.engine)
    finally:
        ledger.close()
    assert stored is not None and stored.balanced and stored.orders == 2


def test_a_discrepancy_exits_1_names_the_redemption_and_what_to_do(
    config: Path, books: dict[str, Any],
) -> None:
    books["tremendous"] = FakeOrderBook("tremendous", [order("r1")])
    result = run(config)
    assert result.exit_code == 1
    assert "missing" in result.output and "r2" in result.output and "o-r2" in result.output
    assert "ask the" in result.output
    assert "The books do not balance: 1 discrepancy." in result.output


def test_a_list_that_cannot_be_read_exits_1_and_says_which(
    config: Path, books: dict[str, Any],
) -> None:
    books["tremendous"] = FakeOrderBook("tremendous", error=VendorUnreachable("timed out"))
    result = run(config)
    assert result.exit_code == 1
    assert "order list could not be read: timed out" in result.output
    assert "order list not read: tremendous" in result.output


def test_json_has_the_totals_and_each_discrepancy(config: Path, books: dict[str, Any]) -> None:
    books["tremendous"] = FakeOrderBook("tremendous", [
        order("r1"), order("r2", amount_minor=5000), order("stray")])
    result = run(config, "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["balanced"] is False
    assert data["totals"]["orders"] == 3 and data["totals"]["matched"] == 1
    assert data["totals"]["spend_minor_units"] == {"USD": 10000}
    assert data["totals"]["discrepancies"]["orphan"] == 1
    assert data["totals"]["discrepancies"]["mismatch"] == 1
    kinds = {(d["kind"], d["redemption_id"], d["order_id"]) for d in data["discrepancies"]}
    assert kinds == {("orphan", None, "o-stray"), ("mismatch", "r2", "o-r2")}
    manual = next(v for v in data["vendors"] if v["vendor"] == "manual")
    assert manual["not_auditable"].startswith("manual fulfilment")


def test_csv_has_one_row_per_discrepancy_and_per_vendor_not_read(
    config: Path, books: dict[str, Any],
) -> None:
    books["tremendous"] = FakeOrderBook("tremendous", [
        order("r1", status=OrderStatus.CANCELLED, raw_status="CANCELED"), order("r2")])
    result = run(config, "--format", "csv")
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["vendor"], r["kind"], r["redemption_id"], r["order_id"]) for r in rows] == [
        ("tremendous", "cancelled", "r1", "o-r1"), ("manual", "not_auditable", "", "")]
    assert rows[0]["action"].startswith("the advocate got nothing")


def test_only_one_vendor_and_an_explicit_period(config: Path, books: dict[str, Any]) -> None:
    book = books["tremendous"]
    since = (NOW - timedelta(days=3)).date().isoformat()
    result = run(config, "--vendor", "tremendous", "--since", since, "--format", "json")
    assert result.exit_code == 0, result.output
    assert [v["vendor"] for v in json.loads(result.output)["vendors"]] == ["tremendous"]
    assert isinstance(book, FakeOrderBook)
    (asked_since, _), = book.asked
    assert asked_since == datetime.fromisoformat(since).replace(tzinfo=UTC) - timedelta(days=1)


def test_the_default_period_is_the_trailing_window(config: Path, books: dict[str, Any]) -> None:
    config.write_text(config.read_text() + "\n[audit]\nwindow_days = 3\n")
    result = run(config, "--format", "json")
    since = datetime.fromisoformat(json.loads(result.output)["since"])
    until = datetime.fromisoformat(json.loads(result.output)["until"])
    assert until - since == timedelta(days=3)


@pytest.mark.parametrize("args", [
    ["--vendor", "tango"],
    ["--since", "2026-11-02", "--until", "2026-11-01"],
    ["--since", "yesterday"],
    ["--format", "xml"],
])
def test_usage_and_configuration_errors_exit_2(
    config: Path, books: dict[str, Any], args: list[str],
) -> None:
    assert run(config, *args).exit_code == 2


def test_a_bad_audit_section_exits_2(config: Path, books: dict[str, Any]) -> None:
    config.write_text(config.read_text() + "\n[audit]\nwindow_days = 0\n")
    result = run(config)
    assert result.exit_code == 2
    assert "window_days" in result.output


@pytest.mark.parametrize(("written", "seconds"), [
    ('"24h"', 86400.0), ('"1d"', 86400.0), ('"30m"', 1800.0), ('"90s"', 90.0), ("3600", 3600.0),
    ("0", 0.0),
])
def test_the_audit_interval_reads_as_a_duration(written: str, seconds: float) -> None:
    from poller.config.sections import AuditSettings, duration_seconds

    assert AuditSettings.model_validate({"interval": tomllib.loads(f"v = {written}")["v"]}
                                        ).interval == seconds
    assert duration_seconds(tomllib.loads(f"v = {written}")["v"]) == seconds


@pytest.mark.parametrize("written", ['"soon"', '"24"', '"-1h"', "-5", "true"])
def test_a_bad_audit_interval_exits_2_naming_the_key(
    config: Path, books: dict[str, Any], written: str,
) -> None:
    config.write_text(config.read_text() + f"\n[audit]\ninterval = {written}\n")
    result = run(config)
    assert result.exit_code == 2
    assert "audit.interval" in result.output


def test_the_metrics_go_to_a_textfile_of_their_own(config: Path, books: dict[str, Any]) -> None:
    books["tremendous"] = FakeOrderBook("tremendous", [order("r1")])
    assert run(config).exit_code == 1
    prom = config.parent / "prom"
    assert not (prom / "reward-poller.prom").exists()
    text = (prom / "reward-poller-audit.prom").read_text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("reward_poller_audit_discrepancies",
                    (("kind", "missing"), ("vendor", "tremendous")))] == 1
    assert samples[("reward_poller_audit_discrepancies",
                    (("kind", "orphan"), ("vendor", "tremendous")))] == 0
    assert samples[("reward_poller_audit_last_run_balanced", ())] == 0
    assert all(name.startswith("reward_poller_audit_") for name, _ in samples)


def test_the_alert_fires_on_the_textfile_an_audit_run_writes(
    config: Path, books: dict[str, Any], tmp_path: Path,
) -> None:
    import subprocess

    import yaml

    from tests.system.release.test_alert_rules import RULES, _series, promtool

    prom = config.parent / "prom" / "reward-poller-audit.prom"
    assert run(config).exit_code == 0
    files = [prom.read_text()]
    books["tremendous"] = FakeOrderBook("tremendous", [order("r1"), order("r2"),
                                                       order("stray")])
    assert run(config).exit_code == 1
    files.append(prom.read_text())

    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"]
               if r.get("alert") == "RewardPollerBooksUnbalanced"]
    fired = [{"exp_labels": {**rule["labels"], "job": "node", "instance": "host1",
                             "vendor": "tremendous", "kind": "orphan"},
              "exp_annotations": {
                  "summary": "1 orphan discrepancy(ies) at tremendous on host1",
                  "description": rule["annotations"]["description"].replace(
                      "{{ $labels.vendor }}", "tremendous")}}]
    alert = "RewardPollerBooksUnbalanced"
    tests = {
        "rule_files": [str(RULES / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [{
            "name": "a balanced audit, then one that finds an orphan order",
            "interval": "1m",
            "input_series": _series(files, {"job": "node", "instance": "host1"}),
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": alert, "exp_alerts": []},
                {"eval_time": "5m", "alertname": alert, "exp_alerts": fired},
            ],
        }],
    }
    (tmp_path / "audit.test.yml").write_text(json.dumps(tests, indent=1))
    result = subprocess.run([promtool(), "test", "rules", "audit.test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
