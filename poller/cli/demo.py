"""``reward-poller demo``: the real worker against local stand-ins, on a throw-away ledger.

Starts the stand-ins of ``reward-poller sandbox`` (Influitive, Tremendous, Tango Card,
Giftbit, an HTTP vendor; manual needs none) on free loopback ports with the same seeded
redemptions, which exercise each outcome (mapped by rule, by name, by reward metadata,
unmapped, refused by the vendor, malformed, every vendor), writes the sandbox configuration
for them, runs three real cycles (the second finds nothing new; the third re-checks pending
orders) and prints what happened, from the ledger and from the stand-ins' records.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import click

from poller.cli.output import table
from poller.compose import App
from poller.config import load_config
from poller.sandbox import services as sandbox

# The stand-ins' credentials (the sandbox's): only ever sent to loopback. Named here too so
# the no-secret tests find every one the demo uses.
DEMO_TOKEN = sandbox.INFLUITIVE_TOKEN
DEMO_ORG = sandbox.INFLUITIVE_ORG
DEMO_KEY = sandbox.TREMENDOUS_KEY
DEMO_TANGO_KEY = sandbox.TANGO_KEY
DEMO_GIFTBIT_KEY = sandbox.GIFTBIT_KEY
DEMO_HOOK_SECRET = sandbox.HTTP_SECRET

RECHECK_SECONDS = 1
"""Pending vendor orders are asked again after this long (the demo's cycle interval)."""

def run_demo(*, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="reward-poller-demo-"))
    box = sandbox.Sandbox(page_size=3)  # free ports; three per page shows the paging
    influitive_state, tremendous_state = box.influitive, box.tremendous
    try:
        with box as url:
            config_file = workdir / "config.toml"
            config_file.write_text(sandbox.config_text(
                url, ledger_url=f"sqlite:///{workdir / 'ledger.db'}",
                interval_seconds=RECHECK_SECONDS,
                extra_keys={"ledger": {"lease_seconds": "60"},
                            "retry": {"initial_backoff_seconds": "5"}},
            ))
            config_file.chmod(0o600)
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
            for item in sandbox.REDEMPTIONS:
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
            click.echo("\nWhy the others wait for a person:")
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
            click.echo()
            click.echo(closing_hint(keep, workdir, config_file))
        ok = first.ok and second.ok and third.ok and second.new == 0
        return 0 if ok else 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def kept_commands(config_file: Path) -> list[str]:
    """Commands that work on what ``--keep`` keeps once the stand-ins are gone: they read
    the ledger only."""
    base = f"reward-poller --config {config_file}"
    return [f"{base} status", f"{base} ledger list --state held", f"{base} ledger show 4815"]


def closing_hint(keep: bool, workdir: Path, config_file: Path) -> str:
    if not keep:
        return ("The ledger is deleted now: `reward-poller demo --keep` keeps it to look into.\n"
                "To rehearse check, run and the daemon against stand-ins that keep running: "
                "`reward-poller init && reward-poller sandbox --write-config` (docs/sandbox.md).")
    lines = [f"kept: {workdir} (config.toml, ledger.db). The stand-ins have stopped; these "
             "read the ledger and still work:"]
    lines += [f"  {command}" for command in kept_commands(config_file)]
    lines.append("For stand-ins that keep running (check, run, the daemon): "
                 "`reward-poller sandbox` (docs/sandbox.md).")
    return "\n".join(lines)
