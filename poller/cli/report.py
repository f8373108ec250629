"""``reward-poller status`` and ``reward-poller report``: what the ledger says, read-only.

Neither creates a ledger: a missing SQLite file is an error naming the path looked for.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from poller.cli.context import UTC_DATE, Context, handled, reading
from poller.cli.output import csv_cell, emit_json, progress, table

if TYPE_CHECKING:
    from poller.config import Config
    from poller.domain.model import Event, LedgerEntry

REPORT_COLUMNS = (
    "redemption_id", "source", "email", "vendor", "vendor_order_id", "amount", "currency",
    "state", "ordered_at", "updated_at",
)


def _when(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.pass_obj
@handled
def status(obj: Context, as_json: bool) -> None:
    """Counts by state, the oldest redemption still open, the last successful poll."""
    from poller.domain.states import State

    with reading(obj.config()) as store:
        counts = store.counts()
        oldest = store.oldest_waiting()
        last = store.last_successful_poll()
    if as_json:
        emit_json({
            "counts": {state.value: counts.get(state, 0) for state in State},
            "oldest_open": None if oldest is None else {
                "redemption_id": oldest.redemption_id, "source": oldest.source,
                "state": oldest.state.value, "created_at": oldest.created_at,
            },
            "last_successful_poll": None if last is None else {
                "at": last.finished_at or last.started_at, "outstanding": last.seen,
                "complete": last.complete,
            },
        })
        return
    click.echo(table(["state", "count"], [(s.value, counts.get(s, 0)) for s in State]))
    click.echo()
    if oldest is None:
        click.echo("oldest open redemption: none")
    else:
        click.echo(f"oldest open redemption: {oldest.redemption_id} ({oldest.state.value}, "
                   f"recorded {_when(oldest.created_at)})")
    if last is None:
        click.echo("last successful poll: never")
    else:
        when = last.finished_at or last.started_at
        click.echo(f"last successful poll: {_when(when)} "
                   f"({last.seen} outstanding{'' if last.complete else ', incomplete'})")


def _ordered_at(entry: LedgerEntry, events: Sequence[Event]) -> datetime:
    """When the vendor accepted the order (the first move to ordered or pending), else when
    it was committed to, else when the row last changed."""
    from poller.domain.states import State

    for ev in events:
        if ev.to_state in (State.ORDERED, State.PENDING):
            return ev.at
    return entry.ordered_at or entry.updated_at


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def report_rows(config: Config, since: datetime, until: datetime) -> list[dict[str, Any]]:
    with reading(config) as store:
        # An order is placed after it is recorded: created_at < until is necessary.
        entries = [e for e in store.list(filters={"until": until}, limit=10**9)
                   if e.vendor_order_id]
        rows = []
        with progress(entries, "reading the ledger") as each:
            for entry in each:
                ordered = _ordered_at(entry, store.events(entry.pk))
                if since <= ordered < until:
                    rows.append({
                        "redemption_id": entry.redemption_id, "source": entry.source,
                        "email": entry.email, "vendor": entry.vendor,
                        "vendor_order_id": entry.vendor_order_id,
                        "amount": str(entry.amount) if entry.amount is not None else None,
                        "currency": entry.currency, "state": entry.state.value,
                        "ordered_at": _iso(ordered), "updated_at": _iso(entry.updated_at),
                    })
    rows.sort(key=lambda r: (r["ordered_at"], r["source"], r["redemption_id"]))
    return rows


@click.command("report")
@click.option("--since", required=True, type=UTC_DATE,
              help="Orders placed at or after this (UTC unless an offset is given).")
@click.option("--until", type=UTC_DATE, default=None, help="... and before this (default: now).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="JSON on stdout, as with every command's --json (= --format json).")
@click.pass_obj
@handled
def report(obj: Context, since: datetime, until: datetime | None, fmt: str,
           as_json: bool) -> None:
    """One row per vendor order, for reconciling with the vendor's invoice (stdout). CSV
    cells that would start a spreadsheet formula are prefixed with an apostrophe."""
    if as_json:
        given = click.get_current_context().get_parameter_source("fmt")
        if fmt != "json" and given is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--json contradicts --format {fmt}")
        fmt = "json"
    until = until or datetime.now(UTC)
    if until <= since:
        raise click.BadParameter("must be after --since", param_hint="--until")
    rows = report_rows(obj.config(), since, until)
    if fmt == "json":
        emit_json(rows)
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
