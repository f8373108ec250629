"""``reward-poller demo``: the real worker against local stand-ins, on a throw-away ledger.

Starts the Influitive and Tremendous stand-ins on loopback, seeds a handful of redemptions
that exercise each outcome (mapped by rule, mapped by reward metadata, unmapped, refused by
the vendor, malformed), writes a config for them, runs two real cycles (the second finds
nothing to do) and prints what happened, from the ledger and from the stand-ins' records.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from poller.app import App
from poller.cli.output import table
from poller.config import load_config
from poller.standins import influitive as influitive_standin
from poller.standins import tremendous as tremendous_standin
from poller.standins.server import ServerThread

# Demo credentials: only ever sent to the stand-ins on loopback.
DEMO_TOKEN = "demo-influitive-token-0001"
DEMO_ORG = "00000000-0000-4000-8000-0000000000de"
DEMO_KEY = "demo-tremendous-key-0001"

CONFIG = """\
[influitive]
base_url = "{influitive}"
api_token = "{token}"
org_id = "{org}"

[ledger]
url = "sqlite:///{db}"
lease_seconds = 60

[schedule]
interval_seconds = 5

[retry]
initial_backoff_seconds = 5

[vendors.tremendous]
base_url = "{tremendous}/api/v2"
api_key = "{key}"

[[rewards]]
reward_id = "37"
vendor = "tremendous"
product = "AMZN-US"
amount = "25.00"
currency = "USD"

[[rewards]]
reward_name = "Coffee on us"
vendor = "tremendous"
product = "VISA-US"
amount = "5.00"
currency = "USD"

[[rewards]]
reward_id = "41"
vendor = "tremendous"
product = "UNAVAILABLE"
amount = "100.00"
currency = "USD"
"""

CONTACTS = [
    {"id": 1021, "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
    {"id": 1022, "email": "grace@example.com", "name": "Grace Hopper"},
    {"id": 1023, "email": "alan@example.com", "name": "Alan Turing"},
    {"id": 1024, "email": "edsger@invalid.example", "name": "Edsger Dijkstra"},
    {"id": 1025, "name": "Barbara Liskov"},
]

REDEMPTIONS: list[dict[str, Any]] = [
    {"id": 4812, "reward_id": 37, "reward_name": "$25 Amazon gift card", "contact_id": 1021,
     "points": 2500, "quantity": 1, "stage": "requested"},
    {"id": 4813, "reward_id": 12, "reward_name": "Coffee on us", "contact_id": 1022,
     "points": 500, "quantity": 1, "stage": "requested"},
    {"id": 4814, "reward_id": 77, "reward_name": "$50 Visa card", "contact_id": 1023,
     "points": 5000, "quantity": 1, "stage": "requested",
     "reward_metadata": {"vendor": "tremendous", "product": "VISA-US", "amount": "50.00",
                         "currency": "USD"}},
    {"id": 4815, "reward_id": 90, "reward_name": "Conference ticket", "contact_id": 1021,
     "points": 20000, "quantity": 1, "stage": "requested"},
    {"id": 4816, "reward_id": 41, "reward_name": "$100 gift card", "contact_id": 1022,
     "points": 10000, "quantity": 1, "stage": "requested"},
    {"id": 4817, "reward_id": 37, "reward_name": "$25 Amazon gift card", "contact_id": 1024,
     "points": 2500, "quantity": 1, "stage": "requested"},
    {"id": 4818, "reward_id": 37, "reward_name": "$25 Amazon gift card", "contact_id": 1025,
     "points": 2500, "quantity": 1, "stage": "requested"},
]


def run_demo(*, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="reward-poller-demo-"))
    influitive_state = influitive_standin.InfluitiveState(page_size=3)
    influitive_state.seed(REDEMPTIONS, CONTACTS)
    tremendous_state = tremendous_standin.TremendousState()
    influitive_app = influitive_standin.create_app(influitive_state, api_token=DEMO_TOKEN,
                                                   org_id=DEMO_ORG)
    tremendous_app = tremendous_standin.create_app(tremendous_state, api_key=DEMO_KEY)
    try:
        with ServerThread(influitive_app) as influitive_url, \
                ServerThread(tremendous_app) as tremendous_url:
            config_file = workdir / "config.toml"
            config_file.write_text(CONFIG.format(
                influitive=influitive_url, tremendous=tremendous_url, token=DEMO_TOKEN,
                org=DEMO_ORG, key=DEMO_KEY, db=workdir / "ledger.db",
            ))
            config = load_config(config_file)
            click.echo(f"stand-ins: Influitive {influitive_url}, Tremendous {tremendous_url}")
            click.echo(f"ledger:    {workdir / 'ledger.db'} (SQLite)\n")
            with App(config) as app:
                first = app.worker.run_cycle()
                second = app.worker.run_cycle()
                entries = {e.redemption_id: e for e in app.ledger.list(limit=1000)}
            decisions = {d.id: d for d in influitive_state.decisions()}
            orders = tremendous_state.counts()
            rows = []
            for item in REDEMPTIONS:
                rid = str(item["id"])
                entry = entries.get(rid)
                decision = decisions.get(rid)
                rows.append((
                    rid, item["reward_name"],
                    entry.email if entry else None,
                    entry.state.value if entry else "not recorded",
                    entry.vendor_order_id if entry else None,
                    decision.verb if decision else "-",
                ))
            click.echo(table(["redemption", "reward", "advocate", "state", "vendor order",
                              "told Influitive"], rows))
            click.echo("\nWhat the advocates read (sent with the decision):")
            for rid, decision in decisions.items():
                click.echo(f"  {rid} {decision.verb}: {decision.message}")
            click.echo("\nWhy the others wait for a person (reward-poller ledger list --state "
                       "held):")
            for rid, entry in entries.items():
                if entry.hold_reason:
                    click.echo(f"  {rid} {entry.hold_reason}")
            click.echo()
            created = sum(c.get("created", 0) for c in orders.values())
            posts = sum(c.get("received", 0) for c in orders.values())
            click.echo(f"cycle 1: polled {first.seen} outstanding ({first.new} new); "
                       f"cycle 2: {second.new} new, {second.steps} steps")
            click.echo(f"Tremendous stand-in: {created} orders created from {posts} order "
                       f"requests; Influitive stand-in: {len(decisions)} decisions, "
                       f"{len(influitive_state.outstanding_ids())} still outstanding (held)")
            if keep:
                click.echo(f"\nkept: {workdir}\n  try: reward-poller --config "
                           f"{config_file} ledger show 4815")
        ok = first.ok and second.ok and second.steps == 0
        return 0 if ok else 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
