"""``reward-poller demo``: the real worker against the stand-ins of ``reward-poller
sandbox`` on free loopback ports, with the same seeded redemptions (one for each outcome)
and a throw-away ledger: three real cycles (the second finds nothing new; the third
re-checks pending orders), then what happened, from the ledger and the stand-ins' records.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import cast

import click

from poller import logs
from poller.cli.output import table
from poller.compose import Runtime
from poller.config import load_config
from poller.sandbox import services as sandbox

RECHECK_SECONDS = 1  # the demo's cycle interval: pending vendor orders are asked again after it


@click.command("demo")
@click.option("--keep", is_flag=True,
              help="Keep the demo's config and SQLite ledger; print commands that use them.")
@click.pass_context
def demo(ctx: click.Context, keep: bool) -> None:
    """Run the worker against local stand-ins for Influitive, Tremendous, Tango Card,
    Giftbit, an HTTP vendor and manual fulfilment."""
    parent = ctx.parent
    if parent is not None and parent.get_parameter_source("log_level") is (
        click.core.ParameterSource.DEFAULT
    ):
        # The demo's table tells the story; logs only for what went wrong, unless asked.
        logs.configure(cast(logs.LogFormat, parent.params["log_format"]), "warning")
    sys.exit(run_demo(keep=keep))


def run_demo(*, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="reward-poller-demo-"))
    box = sandbox.Sandbox(page_size=3)  # free ports; three per page shows the paging
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
            click.echo("stand-ins: " + ", ".join(f"{n} {u}" for n, u in url.items()))
            click.echo(f"ledger:    {workdir / 'ledger.db'} (SQLite)\n")
            with Runtime(load_config(config_file)) as runtime:
                first = runtime.worker.run_cycle()
                second = runtime.worker.run_cycle()
                # Giftbit answers a create with API_CREATING and sends the campaign after:
                # a third cycle, once pending orders are due again, finds it sent.
                time.sleep(RECHECK_SECONDS)
                third = runtime.worker.run_cycle()
                entries = {e.redemption_id: e for e in runtime.ledger.list(limit=1000)}
                waiting = {}
                for e in entries.values():
                    if e.state.value == "pending":
                        events = runtime.ledger.events(e.pk)
                        waiting[e.redemption_id] = next(
                            (v.detail for v in reversed(events) if "not final yet" in v.detail),
                            events[-1].detail)
            decisions = {d.id: d for d in box.influitive.decisions()}
            rows = []
            for item in sandbox.REDEMPTIONS:
                entry, decision = entries.get(str(item["id"])), decisions.get(str(item["id"]))
                rows.append((item["id"], item["reward_name"], entry and entry.email,
                             entry.state.value if entry else "not recorded",
                             entry and entry.vendor_order_id,
                             decision.verb if decision else "-"))
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
            by_vendor = Counter(e.vendor for e in entries.values()
                                if e.vendor_order_id and e.vendor)
            orders = box.tremendous.counts().values()
            click.echo(f"\ncycle 1: polled {first.seen} outstanding ({first.new} new); "
                       f"cycle 2: {second.new} new, {second.steps} steps; cycle 3 (pending "
                       f"orders re-checked): {third.steps} steps")
            click.echo("vendor orders: " + ", ".join(f"{v} {n}" for v, n in
                                                     sorted(by_vendor.items())))
            click.echo(f"Tremendous stand-in: {sum(c.get('created', 0) for c in orders)} "
                       f"orders created from {sum(c.get('received', 0) for c in orders)} order "
                       f"requests (the refused ones created nothing); Influitive stand-in: "
                       f"{len(decisions)} decisions, {len(box.influitive.outstanding_ids())} "
                       "still outstanding (held, or pending a person)\n")
            click.echo(closing_hint(keep, workdir, config_file))
        return 0 if first.ok and second.ok and third.ok and second.new == 0 else 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def closing_hint(keep: bool, workdir: Path, config_file: Path) -> str:
    if not keep:
        return ("The ledger is deleted now: `reward-poller demo --keep` keeps it to look into.\n"
                "To rehearse check, run and the daemon against stand-ins that keep running: "
                "`reward-poller init && reward-poller sandbox --write-config` (docs/sandbox.md).")
    # Commands that work on what --keep keeps once the stand-ins are gone: they only read.
    base = f"reward-poller --config {config_file}"
    return "\n".join([
        f"kept: {workdir} (config.toml, ledger.db). The stand-ins have stopped; these read "
        "the ledger and still work:",
        *(f"  {base} {command}" for command in ("status", "ledger list --state held",
                                                 "ledger show 4815")),
        "For stand-ins that keep running (check, run, the daemon): `reward-poller sandbox` "
        "(docs/sandbox.md)."])
