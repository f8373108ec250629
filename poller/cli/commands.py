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


def retry_entry(config: Config, source: str, redemption_id: str) -> None:
    ledger = _ledger(config)
    try:
        entry = _find(ledger, source, redemption_id)
    finally:
        ledger.close()
    if entry.state not in (State.HELD, State.WAITING):
        raise PollerError(
            f"redemption {redemption_id} is {entry.state.value}; only held or waiting "
            "redemptions can be retried"
        )
    # Resume from what the ledger knows: an order placed -> decide again; a key saved ->
    # reconcile by key; nothing -> route afresh (so a fixed [[rewards]] rule applies).
    if entry.vendor_order_id:
        to = State.ORDERED
    elif entry.idempotency_key:
        to = State.WAITING
    else:
        to = State.NEW
    moved = _admin(config, source, redemption_id, to, "released by an operator (ledger retry)",
                   Changes(attempts=0, clear=frozenset({"hold_reason", "next_attempt_at"})))
    click.echo(f"redemption {redemption_id}: {entry.state.value} -> {moved.state.value}; "
               "it is worked on at the next cycle")


def refuse_entry(config: Config, source: str, redemption_id: str, message: str) -> None:
    from poller.app import App

    ledger = _ledger(config)
    try:
        entry = _find(ledger, source, redemption_id)
    finally:
        ledger.close()
    manual_pending = entry.state is State.PENDING and entry.vendor == "manual"
    if (entry.state.order_placed or entry.vendor_order_id) and not manual_pending:
        raise PollerError(
            f"redemption {redemption_id} has vendor order {entry.vendor_order_id}: refusing "
            "would refund the points of a reward that was sent"
        )
    if entry.state.terminal:
        raise PollerError(f"redemption {redemption_id} is already {entry.state.value}")
    _admin(config, source, redemption_id, State.REFUSING,
           "refused by an operator (ledger refuse)", Changes(message=message))
    with App(config) as app:
        final = app.worker.process(entry.pk)
    state = final.state.value if final else "unknown"
    click.echo(f"redemption {redemption_id}: {state}")
    if final is not None and final.state is State.REFUSING:
        raise PollerError(
            f"Influitive did not take the refusal yet ({final.last_error}); the worker "
            "retries it"
        )
