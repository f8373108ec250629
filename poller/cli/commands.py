"""The bodies of the ledger and status commands (kept out of main.py so it stays a map)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click

from poller.cli.output import emit_json, entry_dict, table
from poller.config import Config
from poller.core.errors import PollerError
from poller.core.model import LedgerEntry
from poller.core.ports import Changes, LeaseLost
from poller.core.states import State


class NotFound(PollerError):
    pass


def _ledger(config: Config):  # type: ignore[no-untyped-def]
    from poller.app import open_ledger

    return open_ledger(config)


def _find(ledger: object, source: str, redemption_id: str) -> LedgerEntry:
    entry = ledger.get(source, redemption_id)  # type: ignore[attr-defined]
    if entry is None:
        raise NotFound(f"no redemption {redemption_id!r} from {source} in the ledger")
    assert isinstance(entry, LedgerEntry)
    return entry


def print_status(config: Config) -> None:
    ledger = _ledger(config)
    try:
        counts = ledger.counts()
        oldest = ledger.oldest_waiting()
        last = ledger.last_successful_poll()
    finally:
        ledger.close()
    rows = [(state.value, counts.get(state, 0)) for state in State]
    click.echo(table(["state", "count"], rows))
    click.echo()
    if oldest is None:
        click.echo("oldest open redemption: none")
    else:
        click.echo(
            f"oldest open redemption: {oldest.redemption_id} ({oldest.state.value}, "
            f"recorded {oldest.created_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    if last is None:
        click.echo("last successful poll: never")
    else:
        when = last.finished_at or last.started_at
        click.echo(f"last successful poll: {when:%Y-%m-%d %H:%M:%S} UTC "
                   f"({last.seen} outstanding{'' if last.complete else ', incomplete'})")


def list_entries(config: Config, states: tuple[str, ...], limit: int, as_json: bool,
                 filters: Mapping[str, Any] | None = None) -> None:
    try:
        wanted = frozenset(State(s) for s in states) if states else None
    except ValueError:
        raise click.BadParameter(
            f"choose from {', '.join(s.value for s in State)}", param_hint="--state"
        ) from None
    ledger = _ledger(config)
    try:
        entries = ledger.list(states=wanted, limit=limit, filters=filters)
    finally:
        ledger.close()
    if as_json:
        emit_json([entry_dict(e) for e in entries])
        return
    click.echo(table(
        ["redemption", "source", "state", "reward", "email", "vendor", "amount", "order",
         "updated", "reason"],
        [
            (e.redemption_id, e.source, e.state.value, e.reward_name or e.reward_id, e.email,
             e.vendor,
             f"{e.amount} {e.currency}" if e.amount is not None else None, e.vendor_order_id,
             e.updated_at, e.hold_reason or e.last_error)
            for e in entries
        ],
    ))


def show_entry(config: Config, source: str, redemption_id: str, as_json: bool) -> None:
    ledger = _ledger(config)
    try:
        entry = _find(ledger, source, redemption_id)
        events = ledger.events(entry.pk)
    finally:
        ledger.close()
    if as_json:
        data = entry_dict(entry, payload=True)
        data["events"] = [
            {"at": ev.at, "from": ev.from_state.value if ev.from_state else None,
             "to": ev.to_state.value, "detail": ev.detail}
            for ev in events
        ]
        emit_json(data)
        return
    d = entry_dict(entry)
    width = max(len(k) for k in d)
    for key, value in d.items():
        if value is not None:
            click.echo(f"{key.ljust(width)}  {value}")
    click.echo()
    from poller.cli.ops import timeline

    click.echo(timeline(events))


def _admin(config: Config, source: str, redemption_id: str, to: State, detail: str,
           changes: Changes) -> LedgerEntry:
    ledger = _ledger(config)
    try:
        entry = _find(ledger, source, redemption_id)
        try:
            moved: LedgerEntry = ledger.admin_transition(
                entry.pk, to, detail, datetime.now(UTC), changes)
        except LeaseLost:
            raise PollerError(
                f"redemption {redemption_id} is being worked on by a worker right now; "
                "try again in a moment"
            ) from None
        return moved
    finally:
        ledger.close()


def retry_entry(config: Config, source: str, redemption_id: str, actor: str) -> None:
    from poller.app import App
    from poller.worker import operator

    with App(config) as app:
        before = _find(app.ledger, source, redemption_id)
        done = operator.retry(app.ledger, app.vendors, source=source,
                              redemption_id=redemption_id, actor=actor, now=datetime.now(UTC))
    click.echo(f"redemption {redemption_id}: {before.state.value} -> {done.entry.state.value}; "
               f"{done.said}")


def reorder_entry(config: Config, source: str, redemption_id: str, actor: str) -> None:
    from poller.app import App
    from poller.worker import operator

    with App(config) as app:
        before = _find(app.ledger, source, redemption_id)
        done = operator.reorder(app.ledger, app.vendors, namespace=config.influitive.org_id,
                                source=source, redemption_id=redemption_id, actor=actor,
                                now=datetime.now(UTC))
    click.echo(f"redemption {redemption_id}: {before.state.value} -> {done.entry.state.value}; "
               f"{done.said}")


def refuse_entry(config: Config, source: str, redemption_id: str, message: str,
                 actor: str) -> None:
    from poller.app import App
    from poller.worker import operator

    with App(config) as app:
        done = operator.refuse(app.ledger, app.vendors, source=source,
                               redemption_id=redemption_id, message=message, actor=actor,
                               now=datetime.now(UTC))
        click.echo(f"redemption {redemption_id}: {done.said}")
        final = app.worker.process(done.entry.pk)
    state = final.state.value if final else "unknown"
    click.echo(f"redemption {redemption_id}: {state}")
    if final is not None and final.state is State.REFUSING:
        raise PollerError(
            f"Influitive did not take the refusal yet ({final.last_error}); the worker "
            "retries it"
        )
