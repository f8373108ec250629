"""``reward-poller demo``: the real worker against local stand-ins, on a throw-away ledger.

Starts the Influitive and Tremendous stand-ins on loopback, seeds a handful of redemptions
that exercise each outcome (mapped by rule, mapped by reward metadata, unmapped, refused by
the vendor, malformed), writes a config for them, runs two real cycles (the second finds
nothing to do) and prints what happened, from the ledger and from the stand-ins' records.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from poller.app import App
from poller.cli.output import table
from poller.config import load_config
from poller.standins import giftbit as giftbit_standin
from poller.standins import http_receiver as http_standin
from poller.standins import influitive as influitive_standin
from poller.standins import tango as tango_standin
from poller.standins import tremendous as tremendous_standin
from poller.standins.server import ServerThread

RECHECK_SECONDS = 1.0
"""Pending vendor orders are asked again after this long (the demo's cycle interval)."""

# Demo credentials: only ever sent to the stand-ins on loopback.
DEMO_TOKEN = "demo-influitive-token-0001"
DEMO_ORG = "00000000-0000-4000-8000-0000000000de"
DEMO_KEY = "demo-tremendous-key-0001"
DEMO_TANGO_KEY = "demo-tango-platform-key-0001"
DEMO_GIFTBIT_KEY = "demo-giftbit-key-0001"
DEMO_HOOK_SECRET = "demo-http-vendor-secret-0001"

CONFIG = """\
[influitive]
base_url = "{influitive}"
api_token = "{token}"
org_id = "{org}"

[ledger]
url = "sqlite:///{db}"
lease_seconds = 60

[schedule]
interval_seconds = {recheck}

[retry]
initial_backoff_seconds = 5

[vendors.tremendous]
base_url = "{tremendous}/api/v2"
api_key = "{key}"

[vendors.tango]
base_url = "{tango}/raas/v2"
platform_name = "{tango_platform}"
platform_key = "{tango_key}"
customer_identifier = "{tango_customer}"
account_identifier = "{tango_account}"

[vendors.giftbit]
base_url = "{giftbit}/papi/v1"
api_key = "{giftbit_key}"

[vendors.http]
url = "{hook}/hooks/orders"
secret = "{hook_secret}"

[vendors.manual]

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

[[rewards]]
reward_id = "51"
vendor = "giftbit"
product = "starbucksus"
amount = "10.00"
currency = "USD"

[[rewards]]
reward_id = "52"
vendor = "tango"
product = "U561593"
amount = "20.00"
currency = "USD"

[[rewards]]
reward_id = "53"
vendor = "http"
product = "LUNCH"
amount = "15.00"
currency = "USD"

[[rewards]]
reward_id = "54"
vendor = "manual"
amount = "40.00"
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
    {"id": 4819, "reward_id": 51, "reward_name": "Starbucks card", "contact_id": 1022,
     "points": 1000, "quantity": 1, "stage": "requested"},
    {"id": 4820, "reward_id": 52, "reward_name": "$20 Visa (Tango)", "contact_id": 1023,
     "points": 2000, "quantity": 1, "stage": "requested"},
    {"id": 4821, "reward_id": 53, "reward_name": "Team lunch voucher", "contact_id": 1021,
     "points": 1500, "quantity": 1, "stage": "requested"},
    {"id": 4822, "reward_id": 54, "reward_name": "Advocate hoodie", "contact_id": 1023,
     "points": 4000, "quantity": 1, "stage": "requested",
     "shipping": {"address": "1 Analytical Way", "city": "London", "zip": "N1 9GU",
                  "country": "GB"}},
]


def run_demo(*, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="reward-poller-demo-"))
    influitive_state = influitive_standin.InfluitiveState(page_size=3)
    influitive_state.seed(REDEMPTIONS, CONTACTS)
    tremendous_state = tremendous_standin.TremendousState()
    apps = {
        "influitive": influitive_standin.create_app(influitive_state, api_token=DEMO_TOKEN,
                                                    org_id=DEMO_ORG),
        "tremendous": tremendous_standin.create_app(tremendous_state, api_key=DEMO_KEY),
        "tango": tango_standin.create_app(platform_key=DEMO_TANGO_KEY),
        "giftbit": giftbit_standin.create_app(api_key=DEMO_GIFTBIT_KEY),
        "hook": http_standin.create_app(http_standin.ReceiverState(secret=DEMO_HOOK_SECRET)),
    }
    try:
        with ExitStack() as servers:
            url = {name: servers.enter_context(ServerThread(app)) for name, app in apps.items()}
            config_file = workdir / "config.toml"
            config_file.write_text(CONFIG.format(
                influitive=url["influitive"], tremendous=url["tremendous"], token=DEMO_TOKEN,
                org=DEMO_ORG, key=DEMO_KEY, db=workdir / "ledger.db",
                tango=url["tango"], tango_platform=tango_standin.PLATFORM_NAME,
                tango_key=DEMO_TANGO_KEY, tango_customer=tango_standin.CUSTOMER,
                tango_account=tango_standin.ACCOUNT, giftbit=url["giftbit"],
                giftbit_key=DEMO_GIFTBIT_KEY, hook=url["hook"], hook_secret=DEMO_HOOK_SECRET,
                recheck=RECHECK_SECONDS,
            ))
            config = load_config(config_file)
            click.echo("stand-ins: " + ", ".join(f"{n} {u}" for n, u in url.items()))
            click.echo(f"ledger:    {workdir / 'ledger.db'} (SQLite)\n")
            with App(config) as app:
                first = app.worker.run_cycle()
                second = app.worker.run_cycle()
                # Giftbit answers a create with API_CREATING and sends the campaign after:
                # a third cycle, once pending orders are due again, finds it sent.
                time.sleep(RECHECK_SECONDS)
                third = app.worker.run_cycle()
                entries = {e.redemption_id: e for e in app.ledger.list(limit=1000)}
                waiting = {
                    e.redemption_id: next(
                        (v.detail for v in reversed(app.ledger.events(e.pk))
                         if "not final yet" in v.detail), app.ledger.events(e.pk)[-1].detail)
                    for e in entries.values() if e.state.value == "pending"
                }
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
            for rid, detail in waiting.items():
                click.echo(f"  {rid} pending: {detail}")
            by_vendor: dict[str, int] = {}
            for e in entries.values():
                if e.vendor_order_id and e.vendor:
                    by_vendor[e.vendor] = by_vendor.get(e.vendor, 0) + 1
            created = sum(c.get("created", 0) for c in orders.values())
            posts = sum(c.get("received", 0) for c in orders.values())
            click.echo(f"\ncycle 1: polled {first.seen} outstanding ({first.new} new); "
                       f"cycle 2: {second.new} new, {second.steps} steps; cycle 3 (pending "
                       f"orders re-checked): {third.steps} steps")
            click.echo("vendor orders: " + ", ".join(f"{v} {n}" for v, n in
                                                     sorted(by_vendor.items())))
            click.echo(f"Tremendous stand-in: {created} orders created from {posts} order "
                       f"requests (the refused ones created nothing); Influitive stand-in: "
                       f"{len(decisions)} decisions, {len(influitive_state.outstanding_ids())} "
                       "still outstanding (held, or pending a person)")
            if keep:
                click.echo(f"\nkept: {workdir}\n  try: reward-poller --config "
                           f"{config_file} ledger show 4815")
        ok = first.ok and second.ok and second.steps == 0
        return 0 if ok else 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
