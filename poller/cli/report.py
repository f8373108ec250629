"""``reward-poller status`` and ``reward-poller report``: what the ledger says, read-only
(neither creates a ledger)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from poller.cli.context import UTC_DATE, Context, reading
from poller.cli.output import JSON_OPTION, emit_csv, emit_json, iso, progress, table

if TYPE_CHECKING:
    from poller.domain.model import Event, LedgerEntry

REPORT_COLUMNS = ("redemption_id", "source", "email", "vendor", "vendor_order_id", "amount",
                  "currency", "state", "ordered_at", "updated_at")


@click.command("status")
@JSON_OPTION
@click.pass_obj
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
    click.echo("oldest open redemption: " + (
        "none" if oldest is None else f"{oldest.redemption_id} ({oldest.state.value}, "
        f"recorded {oldest.created_at:%Y-%m-%d %H:%M:%S} UTC)"))
    click.echo("last successful poll: " + (
        "never" if last is None else f"{last.finished_at or last.started_at:%Y-%m-%d %H:%M:%S}"
        f" UTC ({last.seen} outstanding{'' if last.complete else ', incomplete'})"))


def _ordered_at(entry: LedgerEntry, events: Sequence[Event]) -> datetime:
    """When the vendor accepted the order (the first move to ordered or pending), else when
    it was committed to, else when the row last changed."""
    from poller.domain.states import State

    accepted = (ev.at for ev in events if ev.to_state in (State.ORDERED, State.PENDING))
    return next(accepted, None) or entry.ordered_at or entry.updated_at


@click.command("report")
@click.option("--since", required=True, type=UTC_DATE,
              help="Orders placed at or after this (UTC unless an offset is given).")
@click.option("--until", type=UTC_DATE, default=None, help="... and before this (default: now).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="JSON on stdout, as with every command's --json (= --format json).")
@click.pass_context
def report(ctx: click.Context, since: datetime, until: datetime | None, fmt: str,
           as_json: bool) -> None:
    """One row per vendor order, for reconciling with the vendor's invoice (stdout). CSV
    cells that would start a spreadsheet formula are prefixed with an apostrophe."""
    if as_json:
        given = ctx.get_parameter_source("fmt")
        if fmt != "json" and given is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--json contradicts --format {fmt}")
        fmt = "json"
    until = until or datetime.now(UTC)
    if until <= since:
        raise click.BadParameter("must be after --since", param_hint="--until")
    rows: list[dict[str, Any]] = []
    with reading(ctx.obj.config()) as store:
        # An order is placed after it is recorded: created_at < until is necessary.
        entries = [e for e in store.list(filters={"until": until}, limit=10**9)
                   if e.vendor_order_id]
        with progress(entries, "reading the ledger") as each:
            for entry in each:
                ordered = _ordered_at(entry, store.events(entry.pk))
                if since <= ordered < until:
                    rows.append(dict(zip(REPORT_COLUMNS, (
                        entry.redemption_id, entry.source, entry.email, entry.vendor,
                        entry.vendor_order_id, None if entry.amount is None else str(entry.amount),
                        entry.currency, entry.state.value, iso(ordered), iso(entry.updated_at),
                    ), strict=True)))
    rows.sort(key=lambda r: (r["ordered_at"], r["source"], r["redemption_id"]))
    if fmt == "json":
        emit_json(rows)
    else:
        emit_csv(REPORT_COLUMNS, rows)
