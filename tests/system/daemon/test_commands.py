"""The operator commands as a user runs them: the CLI as a subprocess against the stand-ins
(tests/e2e's fixture), stdout only for what a command prints, exit codes 0/1/2."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from poller.domain.model import Contact, Redemption
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ports import Changes
from tests.system.cli.conftest import Standins, run_cli

pytestmark = pytest.mark.e2e

SWAG = {"reward_id": 99, "reward_name": "Swag"}


def ledger_path(standins: Standins) -> Path:
    return standins.workdir / "ledger.db"


def listed(config: Path, *args: str) -> list[str]:
    result = run_cli("ledger", "list", "--json", *args, config=config)
    assert result.returncode == 0, result.stderr
    return sorted(r["redemption_id"] for r in json.loads(result.stdout))


def test_ledger_list_filters(standins: Standins) -> None:
    standins.seed(1, 2)
    standins.seed(3, **SWAG)
    config = standins.config()
    assert run_cli("run", "--run-once", config=config).returncode == 0

    assert listed(config) == ["1", "2", "3"]
    assert listed(config, "--vendor", "tremendous") == ["1", "2"]
    assert listed(config, "--reward", "Swag") == ["3"]
    assert listed(config, "--reward", "37") == ["1", "2"]
    assert listed(config, "--email", "ADV2@example.com") == ["2"]
    assert listed(config, "--source", "influitive", "--state", "held") == ["3"]
    assert listed(config, "--source", "elsewhere") == []
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert listed(config, "--since", tomorrow) == []
    assert listed(config, "--until", tomorrow) == ["1", "2", "3"]
    assert listed(config, "--since", "2000-01-01T00:00Z", "--until", "2000-01-02") == []

    table = run_cli("ledger", "list", "--vendor", "tremendous", config=config)
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["REDEMPTION", "SOURCE", "STATE", "REWARD"]
    assert len(lines) == 3 and "\x1b" not in table.stdout  # plain text when piped

    bad = run_cli("ledger", "list", "--since", "last tuesday", config=config)
    assert bad.returncode == 2 and "is not a date" in bad.stderr


def test_ledger_show_reads_as_a_timeline(standins: Standins) -> None:
    standins.seed(1)
    config = standins.config()
    run_cli("run", "--run-once", config=config)
    show = run_cli("ledger", "show", "1", config=config)
    assert show.returncode == 0
    timeline = show.stdout.split("\n\n")[1].splitlines()
    assert timeline[0].split() == ["AT", "(UTC)", "AFTER", "STATE", "BY", "WHAT", "HAPPENED"]
    states = [line.split()[2] if i == 0 else line.split()[3]
              for i, line in enumerate(timeline[1:])]
    assert states == ["new", "ordering", "ordered", "fulfilled"]
    assert timeline[2].split()[2].startswith("+")  # time since the step before
    # Piped, a long detail stays whole on its line (grep finds it).
    assert any("ordering 25.00 USD from tremendous (product AMZN-US, route config:reward_id=37)"
               in line for line in timeline)
    assert "4 events over" in show.stdout and "from new to fulfilled" in show.stdout


def test_ledger_approve_lets_a_guarded_order_through(standins: Standins) -> None:
    standins.seed(4)
    guard = '\n[fulfillment]\nmax_order_amount = { USD = "10.00" }\n'
    config = standins.config(extra=guard)
    assert run_cli("run", "--run-once", config=config).returncode == 0
    assert listed(config, "--state", "held") == ["4"]
    assert standins.tremendous.received == []

    approve = run_cli("ledger", "approve", "4", "--by", "Ana Ops", config=config)
    assert approve.returncode == 0, approve.stderr
    assert approve.stdout.strip() == (
        "redemption 4: held -> new (approved); it is worked on at the next cycle")
    row = json.loads(run_cli("ledger", "show", "4", "--json", config=config).stdout)
    assert row["state"] == "new" and row["hold_reason"] is None
    assert row["events"][-1]["detail"] == "approved by an operator (ledger approve)"
    assert row["events"][-1]["actor"] == "Ana Ops"

    assert run_cli("run", "--run-once", config=config).returncode == 0
    assert standins.accepted() == {"4": ["fulfill"]}  # the guard let this one through

    again = run_cli("ledger", "approve", "4", config=config)
    assert again.returncode == 1
    assert "is fulfilled; only held redemptions can be approved" in again.stderr
    missing = run_cli("ledger", "approve", "404", config=config)
    assert missing.returncode == 1 and "no redemption '404'" in missing.stderr


def _pending_manual(standins: Standins, rid: int) -> None:
    """A redemption the manual vendor took: recorded, keyed, pending (written the way the
    worker writes it, through the ledger)."""
    standins.seed(rid)
    now = datetime.now(UTC)
    ledger = open_ledger(f"sqlite:///{ledger_path(standins)}")
    try:
        poll = ledger.start_poll(now)
        ledger.record(poll, [Redemption(id=str(rid), reward_id="37", reward_name="Mug",
                                        contact=Contact(email=f"adv{rid}@example.com"))], now)
        entry = ledger.get("influitive", str(rid))
        assert entry is not None and ledger.claim(entry.pk, "t", now, 60)
        ledger.transition(entry.pk, "t", State.ORDERING, "ordering", now,
                          Changes(idempotency_key=f"key-{rid}", vendor="manual", product="MUG",
                                  amount=Decimal("12.00"), currency="USD"))
        ledger.transition(entry.pk, "t", State.PENDING, "waiting for a person", now,
                          Changes(vendor_order_id=f"manual-{rid}",
                                  next_attempt_at=now + timedelta(hours=1)))
        ledger.release(entry.pk, "t")
    finally:
        ledger.close()


def test_ledger_fulfill_for_manual_and_held_rewards(standins: Standins) -> None:
    config = standins.config()
    run_cli("db", "upgrade", config=config)  # creates the ledger
    _pending_manual(standins, 6)
    done = run_cli("ledger", "fulfill", "6", "--message", "Your mug is in the post", config=config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "redemption 6: pending -> fulfilled; Influitive has your message"
    decision = next(d for d in standins.influitive.decisions() if d.id == "6")
    assert (decision.verb, decision.message, decision.accepted) == (
        "fulfill", "Your mug is in the post", True)
    assert listed(config, "--state", "fulfilled") == ["6"]

    standins.seed(7, **SWAG)
    run_cli("run", "--run-once", config=config)
    held = run_cli("ledger", "fulfill", "7", "-m", "Handed over at the meetup", config=config)
    assert held.returncode == 0, held.stderr
    assert standins.accepted()["7"] == ["fulfill"]
    show = run_cli("ledger", "show", "7", config=config).stdout
    assert "fulfilled by hand (ledger fulfill, was held)" in show

    twice = run_cli("ledger", "fulfill", "7", "-m", "x", config=config)
    assert twice.returncode == 1 and "already fulfilled" in twice.stderr
    assert len([d for d in standins.influitive.decisions() if d.id == "7"]) == 1


def test_ledger_fulfill_refuses_where_it_makes_no_sense(standins: Standins) -> None:
    standins.seed(8)
    standins.tremendous.fail(503, None, method="POST", path="/orders")  # stays waiting
    config = standins.config()
    run_cli("run", "--run-once", config=config)
    waiting = run_cli("ledger", "fulfill", "8", "-m", "x", config=config)
    assert waiting.returncode == 1
    assert ("redemption 8 is waiting; only held redemptions, or pending ones of the manual "
            "vendor, are fulfilled by hand") in waiting.stderr
    empty = run_cli("ledger", "fulfill", "8", config=config)
    assert empty.returncode == 2  # --message is required
    assert standins.accepted() == {}


def test_report_one_row_per_vendor_order(standins: Standins) -> None:
    standins.seed(1, 2)
    standins.seed(3, **SWAG)
    config = standins.config()
    run_cli("run", "--run-once", config=config)
    today = datetime.now(UTC).date()
    since = (today - timedelta(days=1)).isoformat()

    result = run_cli("report", "--since", since, config=config)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(r["redemption_id"] for r in rows) == ["1", "2"]  # not 3: no order
    first = next(r for r in rows if r["redemption_id"] == "1")
    assert first["email"] == "adv1@example.com" and first["vendor"] == "tremendous"
    assert first["vendor_order_id"].startswith("ORD") and first["amount"] == "25.00"
    assert first["currency"] == "USD" and first["state"] == "fulfilled"
    assert first["ordered_at"].endswith("Z") and first["updated_at"].endswith("Z")
    assert list(rows[0]) == ["redemption_id", "source", "email", "vendor", "vendor_order_id",
                             "amount", "currency", "state", "ordered_at", "updated_at"]
    assert "http" not in result.stdout  # no claim links, ever
    assert "redemption_id" not in result.stderr  # nothing but logs on stderr

    as_json = run_cli("report", "--since", since, "--format", "json", config=config)
    data = json.loads(as_json.stdout)
    assert {d["vendor_order_id"] for d in data} == {r["vendor_order_id"] for r in rows}
    # --json, as every other command spells it, is the same as --format json.
    flag = run_cli("report", "--since", since, "--json", config=config)
    assert flag.returncode == 0, flag.stderr
    assert json.loads(flag.stdout) == data
    clash = run_cli("report", "--since", since, "--json", "--format", "csv", config=config)
    assert clash.returncode == 2 and "--json contradicts --format csv" in clash.stderr

    later = run_cli("report", "--since", (today + timedelta(days=1)).isoformat(),
                    "--until", (today + timedelta(days=2)).isoformat(), config=config)
    assert later.stdout.strip() == ",".join(rows[0])  # the header alone
    backwards = run_cli("report", "--since", "2026-01-02", "--until", "2026-01-01",
                        config=config)
    assert backwards.returncode == 2 and "must be after --since" in backwards.stderr
    assert run_cli("report", config=config).returncode == 2  # --since is required


def _ledger_state(standins: Standins, config: Path) -> tuple[str, str]:
    digest = hashlib.sha256(ledger_path(standins).read_bytes()).hexdigest()
    listing = run_cli("ledger", "list", "--json", "--limit", "1000", config=config).stdout
    return digest, listing


@pytest.mark.parametrize("run_once", [False, True], ids=["daemon-flags", "run-once"])
def test_dry_run_changes_nothing_anywhere(standins: Standins, run_once: bool) -> None:
    standins.seed(1, 2)
    standins.seed(3, **SWAG)
    config = standins.config()
    flags = ["--dry-run", "--run-once"] if run_once else ["--dry-run"]

    first = run_cli("run", *flags, config=config)
    assert first.returncode == 0, first.stderr
    assert not ledger_path(standins).exists()  # not even an empty ledger was created
    lines = {line.split()[0]: line.split() for line in first.stdout.splitlines()[1:4]}
    assert lines["1"][1:3] == ["-", "order"] and "25.00 USD from tremendous" in first.stdout
    assert lines["3"][1:3] == ["-", "hold"]
    assert ("dry run: polled 3 outstanding; 2 to order (50.00 USD), 1 to hold. Nothing was "
            "recorded, ordered or decided.") in first.stdout
    assert standins.tremendous.received == [] and standins.influitive.decisions() == []

    # With a ledger: the real run fulfils 1-3's orderable ones; a new one and one that waits.
    assert run_cli("run", "--run-once", config=config).returncode == 0
    standins.seed(4)
    before = _ledger_state(standins, config)
    orders = len(standins.tremendous.received)
    planned = run_cli("run", *flags, config=config)
    assert planned.returncode == 0, planned.stderr
    plan = {line.split()[0]: line.split(maxsplit=3) for line in planned.stdout.splitlines()[1:3]}
    assert plan["4"][1:3] == ["-", "order"]
    assert plan["3"][1:] == ["held", "wait", "held for a person: no [[rewards]] rule or reward "
                             "metadata matches (reward_id='99', reward_name='Swag')"]
    assert _ledger_state(standins, config) == before
    assert len(standins.tremendous.received) == orders and "4" not in standins.accepted()

    # Nothing the dry run did blocks the real run that follows (no claim, no lease).
    assert run_cli("run", "--run-once", config=config).returncode == 0
    assert standins.accepted()["4"] == ["fulfill"]


def test_dry_run_fails_like_a_run_when_the_poll_fails(standins: Standins) -> None:
    standins.influitive.fail_next(503, 503)
    result = run_cli("run", "--dry-run", config=standins.config())
    assert result.returncode == 1 and result.stdout == ""
    assert "503" in result.stderr
