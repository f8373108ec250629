"""Operator commands: ``ledger approve``, ``ledger fulfill``, ``report``, and the bodies of
``run --dry-run`` and of the ``ledger show`` timeline.

main.py registers the commands (one ``add_command`` line each). This module imports nothing
heavy at import time, and main.py only lazily: ``--help`` stays fast and there is no import
cycle.

Output rules (README, "The command line"): what a command prints goes to stdout, logs and
progress bars to stderr; progress bars only when stderr is a terminal; long last columns are
wrapped to the terminal's width on a terminal and left whole, one line per row, when piped.
"""

from __future__ import annotations

import csv
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from poller.cli.main import Context
    from poller.config import Config
    from poller.core.model import Event, LedgerEntry
    from poller.ops.plan import Plan

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

MANUAL_VENDOR = "manual"
REPORT_COLUMNS = (
    "redemption_id", "source", "email", "vendor", "vendor_order_id", "amount", "currency",
    "state", "ordered_at", "updated_at",
)


def handled(func: F) -> F:
    """main.handled, looked up when the command runs (main.py imports this module)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from poller.cli.main import handled as main_handled

        return main_handled(func)(*args, **kwargs)

    return cast(F, wrapper)


def _failed(message: str) -> click.ClickException:
    from poller.cli.main import Failed

    return Failed(message)


# --- dates on the command line ---------------------------------------------------------


class UtcDateTime(click.ParamType):  # type: ignore[type-arg]
    """``2026-11-21``, ``2026-11-21T08:30``, ``2026-11-21 08:30:00+02:00``: a moment in UTC
    (a date alone is its midnight UTC; no offset means UTC)."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not a date such as 2026-11-21 or 2026-11-21T08:30", param,
                      ctx)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


UTC_DATE = UtcDateTime()


# --- terminal or pipe ---------------------------------------------------------------------


@contextmanager
def progress(items: Sequence[T], label: str) -> Iterator[Iterable[T]]:
    """A progress bar on stderr when it is a terminal and there is a backlog; else the
    items as they are (no escape codes in a log file or a pipe)."""
    if sys.stderr.isatty() and len(items) > 20:
        with click.progressbar(items, label=label, file=sys.stderr) as bar:
            yield bar
    else:
        yield items


def _terminal_width() -> int | None:
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def wrapped_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, the last one free text: wrapped under itself on a terminal, whole
    on one line when piped (so grep and cut see every row entire)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:-1])]
    indent = sum(widths) + 2 * len(widths)
    width = _terminal_width()
    room = max(30, width - indent) if width else None

    def line(cells: Sequence[str]) -> list[str]:
        head = "".join(c.ljust(w) + "  " for c, w in zip(cells[:-1], widths, strict=True))
        last = cells[-1]
        if room is None or len(last) <= room:
            return [(head + last).rstrip()]
        parts = textwrap.wrap(last, room) or [""]
        return [head + parts[0], *(" " * indent + p for p in parts[1:])]

    out = line([h.upper() for h in headers])
    for row in rows:
        out += line(row)
    return "\n".join(out)


# --- ledger show: the timeline ------------------------------------------------------------


def _elapsed(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"+{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"+{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"+{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"+{days}d{hours:02d}h"


def timeline(events: Sequence[Event]) -> str:
    """The events as a story: when, how long after the step before, the state it reached
    (``from -> to`` when it did not simply follow on), what happened."""
    rows: list[list[str]] = []
    previous: Event | None = None
    for ev in events:
        after = "" if previous is None else _elapsed(ev.at - previous.at)
        to = ev.to_state.value
        follows = previous is None or ev.from_state in (None, previous.to_state)
        moved = to if follows or ev.from_state is None else f"{ev.from_state.value} -> {to}"
        rows.append([f"{ev.at:%Y-%m-%d %H:%M:%S}", after, moved, ev.detail])
        previous = ev
    text = wrapped_table(["at (utc)", "after", "state", "what happened"], rows)
    if len(events) > 1:
        took = _elapsed(events[-1].at - events[0].at)[1:]
        text += (f"\n\n{len(events)} events over {took}, from {events[0].to_state.value} "
                 f"to {events[-1].to_state.value}")
    return text


# --- ledger approve / fulfill ----------------------------------------------------------------


@click.command("approve")
@click.argument("redemption_id")
@click.option("--source", default="influitive", show_default=True)
@click.pass_obj
@handled
def ledger_approve(obj: Context, redemption_id: str, source: str) -> None:
    """Release a held redemption past the spending guard (or after a review): it is
    ordered at the next cycle, whatever the guard says about this one."""
    from poller.cli.commands import _admin, _find, _ledger
    from poller.core.ports import Changes
    from poller.core.states import State

    config = obj.config()
    ledger = _ledger(config)
    try:
        entry = _find(ledger, source, redemption_id)
    finally:
        ledger.close()
    if entry.state is not State.HELD:
        raise _failed(
            f"redemption {redemption_id} is {entry.state.value}; only held redemptions can be "
            "approved (ledger retry releases waiting ones)"
        )
    to = State.WAITING if entry.idempotency_key else State.NEW
    moved = _admin(
        config, source, redemption_id, to, "approved by an operator (ledger approve)",
        Changes(approved=True, attempts=0, clear=frozenset({"hold_reason", "next_attempt_at"})),
    )
    click.echo(f"redemption {redemption_id}: held -> {moved.state.value} (approved); it is "
               "worked on at the next cycle")


def fulfill_refusal(entry: LedgerEntry) -> str | None:
    """Why ``ledger fulfill`` must not touch ``entry``, or None when it may."""
    from poller.core.states import State

    rid = entry.redemption_id
    if entry.state is State.HELD:
        return None
    if entry.state is State.PENDING and entry.vendor == MANUAL_VENDOR:
        return None
    if entry.state.terminal:
        return f"redemption {rid} is already {entry.state.value}"
    if entry.state is State.PENDING:
        return (f"redemption {rid} is pending at {entry.vendor} (order "
                f"{entry.vendor_order_id}); the worker fulfils it when the vendor completes it")
    return (f"redemption {rid} is {entry.state.value}; only held redemptions, or pending ones "
            f"of the {MANUAL_VENDOR} vendor, are fulfilled by hand")


@click.command("fulfill")
@click.argument("redemption_id")
@click.option("--message", "-m", required=True,
              help="Shown to the advocate, e.g. how the reward reached them.")
@click.option("--source", default="influitive", show_default=True)
@click.pass_obj
@handled
def ledger_fulfill(obj: Context, redemption_id: str, message: str, source: str) -> None:
    """Fulfil a reward a person delivered (manual vendor, or a held redemption): tells
    Influitive with your message, then records it as fulfilled."""
    from poller.app import App
    from poller.cli.commands import _admin, _find, _ledger
    from poller.core.ports import Changes
    from poller.core.states import State

    config = obj.config()
    ledger = _ledger(config)
    try:
        entry = _find(ledger, source, redemption_id)
    finally:
        ledger.close()
    refusal = fulfill_refusal(entry)
    if refusal:
        raise _failed(refusal)
    if not message.strip():
        raise click.BadParameter("must not be empty", param_hint="--message")
    # The decision is committed first (ORDERED, with the message), then sent: the delivery
    # guarantee's order. If Influitive does not take it now, the worker sends it again.
    _admin(config, source, redemption_id, State.ORDERED,
           f"fulfilled by hand (ledger fulfill, was {entry.state.value})",
           Changes(message=message, attempts=0,
                   clear=frozenset({"hold_reason", "next_attempt_at", "last_error"})))
    with App(config) as app:
        final = app.worker.process(entry.pk)
    state = final.state if final is not None else None
    if state is State.FULFILLED:
        click.echo(f"redemption {redemption_id}: {entry.state.value} -> fulfilled; Influitive "
                   "has your message")
        return
    if state is State.CLOSED_UPSTREAM:
        raise _failed(f"redemption {redemption_id} was already decided at Influitive; the "
                      "ledger now says closed_upstream")
    reason = final.last_error if final is not None else "unknown"
    raise _failed(f"Influitive did not take the decision yet ({reason}); the worker sends it "
                  "again at the next cycle")


# --- report ---------------------------------------------------------------------------------


def _ordered_at(entry: LedgerEntry, events: Sequence[Event]) -> datetime:
    """When the vendor accepted the order (the first move to ordered or pending), else when
    it was committed to, else when the row last changed."""
    from poller.core.states import State

    for ev in events:
        if ev.to_state in (State.ORDERED, State.PENDING):
            return ev.at
    return entry.ordered_at or entry.updated_at


def report_rows(config: Config, since: datetime, until: datetime) -> list[dict[str, Any]]:
    from poller.cli.commands import _ledger

    ledger = _ledger(config)
    try:
        # An order is placed after it is recorded: created_at < until is necessary.
        entries = [e for e in ledger.list(filters={"until": until}, limit=10**9)
                   if e.vendor_order_id]
        rows = []
        with progress(entries, "reading the ledger") as each:
            for entry in each:
                ordered = _ordered_at(entry, ledger.events(entry.pk))
                if since <= ordered < until:
                    rows.append({
                        "redemption_id": entry.redemption_id, "source": entry.source,
                        "email": entry.email, "vendor": entry.vendor,
                        "vendor_order_id": entry.vendor_order_id,
                        "amount": str(entry.amount) if entry.amount is not None else None,
                        "currency": entry.currency, "state": entry.state.value,
                        "ordered_at": _iso(ordered), "updated_at": _iso(entry.updated_at),
                    })
    finally:
        ledger.close()
    rows.sort(key=lambda r: (r["ordered_at"], r["source"], r["redemption_id"]))
    return rows


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@click.command("report")
@click.option("--since", required=True, type=UTC_DATE,
              help="Orders placed at or after this (UTC unless an offset is given).")
@click.option("--until", type=UTC_DATE, default=None, help="... and before this (default: now).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.pass_obj
@handled
def report(obj: Context, since: datetime, until: datetime | None, fmt: str) -> None:
    """One row per vendor order, for reconciling with the vendor's invoice (stdout)."""
    from poller.cli.output import emit_json

    until = until or datetime.now(UTC)
    if until <= since:
        raise click.BadParameter("must be after --since", param_hint="--until")
    rows = report_rows(obj.config(), since, until)
    if fmt == "json":
        emit_json(rows)
        return
    out = sys.stdout
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


# --- run --dry-run --------------------------------------------------------------------------


def _read_only_ledger(config: Config) -> Any:
    """The ledger opened for reading, never created nor migrated: a SQLite file that does not
    exist yet reads as empty (and stays absent)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from poller.ledger import open_ledger
    from poller.ops.plan import EmptyLedger

    url = make_url(config.ledger.url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or not Path(database).expanduser().exists():
            return EmptyLedger()
    return open_ledger(config.ledger.url, migrate=False)


def dry_run(config: Config) -> Plan:
    """Poll, read the ledger, print what the next cycle would do per redemption id."""
    from poller.app import influitive_client
    from poller.ops.plan import Planner

    now = datetime.now(UTC)
    planner = Planner(
        rules=config.rules(), vendors=frozenset(config.vendors),
        unmapped=config.fulfillment.unmapped_reward,
        unmapped_reason=config.fulfillment.templates().unmapped_reason,
        spend=config.fulfillment.spend_policy(),
    )
    ledger = _read_only_ledger(config)
    try:
        source = influitive_client(config)
        try:
            poll = source.poll()
        finally:
            source.close()

        def each(items: Iterable[Any]) -> Iterator[Any]:
            with progress(list(items), "planning") as bar:
                yield from bar

        plan = planner.plan(poll, ledger, now, each=each)
    finally:
        if hasattr(ledger, "close"):
            ledger.close()
    print_plan(plan)
    return plan


def print_plan(plan: Plan) -> None:
    rows = [[s.redemption_id, s.state.value if s.state else "-", s.action, s.detail]
            for s in plan.steps]
    if rows:
        click.echo(wrapped_table(["redemption", "ledger", "would", "detail"], rows))
        click.echo()
    spend = ", ".join(f"{amount} {currency}" for currency, amount in sorted(plan.spend().items()))
    counts = ", ".join(
        f"{n} {label}" for label, n in (
            ("to order" + (f" ({spend})" if spend else ""), plan.count("order")),
            ("to hold", plan.count("hold")), ("to refuse", plan.count("refuse")),
            ("to fulfil", plan.count("fulfill")), ("to close", plan.count("close")),
            ("to look up", plan.count("reconcile") + plan.count("recheck")),
            ("waiting", plan.count("wait")),
        ) if n
    ) or "nothing to do"
    complete = "" if plan.complete else " (incomplete: nothing is closed for being absent)"
    click.echo(f"dry run: polled {plan.seen} outstanding{complete}; {counts}. "
               "Nothing was recorded, ordered or decided.")
