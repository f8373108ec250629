"""``reward-poller ledger ...``: ``list`` and ``show`` only read; the others move one
redemption, recording who did it and the message sent (docs/cli.md, "ledger")."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import click

from poller.cli.context import (
    UTC_DATE,
    Context,
    Failed,
    find,
    lookup,
    not_empty,
    open_existing,
    os_user,
    reading,
)
from poller.cli.output import JSON_OPTION, emit_json, entry_dict, shown_of, table, timeline
from poller.domain.errors import PollerError

SOURCE_OPTION = click.option("--source", default="influitive", show_default=True,
                             help="The redemption's source (influitive, influenceio).")


@click.group()
def ledger() -> None:
    """Look into the ledger and act on single redemptions."""


@ledger.command("list")
@click.option("--state", "states", multiple=True, help="Only these states (repeatable).")
@click.option("--vendor", help="Only orders from this vendor.")
@click.option("--reward", help="Only this reward (its Influitive id or name).")
@click.option("--email", help="Only this advocate (case-insensitive).")
@click.option("--since", type=UTC_DATE, help="Recorded at or after this date (UTC).")
@click.option("--until", type=UTC_DATE, help="Recorded before this date (UTC).")
@click.option("--source", help="Only redemptions from this source (e.g. influitive).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="At most this many rows (at least 1).")
@JSON_OPTION
@click.pass_obj
def ledger_list(obj: Context, /, states: tuple[str, ...], limit: int, as_json: bool,
                **filters: Any) -> None:
    """List redemptions, newest first."""
    from poller.domain.states import State

    try:
        wanted = frozenset(State(s) for s in states) if states else None
    except ValueError:
        raise click.BadParameter(
            f"choose from {', '.join(s.value for s in State)}", param_hint="--state"
        ) from None
    config = obj.config()
    with reading(config) as store:
        entries = store.list(states=wanted, limit=limit + 1, filters=filters)
        total = len(entries)
        if total > limit:
            total = len(store.list(states=wanted, limit=10**9, filters=filters))
            entries = entries[:limit]
    if filters["vendor"] is not None and not entries:
        _known_vendor(filters["vendor"], config.vendors)
    if as_json:
        emit_json([entry_dict(e) for e in entries])
    else:
        click.echo(table(
            ["redemption", "source", "state", "reward", "email", "vendor", "amount", "order",
             "updated", "reason"],
            [(e.redemption_id, e.source, e.state.value, e.reward_name or e.reward_id, e.email,
              e.vendor, f"{e.amount} {e.currency}" if e.amount is not None else None,
              e.vendor_order_id, e.updated_at, e.hold_reason or e.last_error)
             for e in entries],
        ))
    shown_of(len(entries), total)


def _known_vendor(vendor: str, configured: Collection[str]) -> None:
    """A ``--vendor`` that matched nothing and names no configured vendor is a typo, not an
    empty answer: a usage error naming the vendors there are. (A vendor no longer in the
    config still lists its old rows: the check runs only when nothing matched.)"""
    if vendor in configured:
        return
    by_fold = {n.casefold(): n for n in sorted(configured)}
    close = difflib.get_close_matches(vendor.casefold(), list(by_fold), n=1)
    hint = f"; did you mean {by_fold[close[0]]!r}?" if close else ""
    raise click.BadParameter(
        f"no vendor {vendor!r} in the config and no redemption ordered from it "
        f"(configured vendors: {', '.join(by_fold.values()) or 'none'}){hint}",
        param_hint="--vendor")


@ledger.command("show")
@click.argument("redemption_id")
@SOURCE_OPTION
@JSON_OPTION
@click.pass_obj
def ledger_show(obj: Context, redemption_id: str, source: str, as_json: bool) -> None:
    """One redemption and its whole story: who moved it, and the messages sent."""
    with reading(obj.config()) as store:
        entry = find(store, source, redemption_id)
        events = store.events(entry.pk)
    if as_json:
        emit_json({**entry_dict(entry, payload=True), "events": [
            {"at": ev.at, "from": ev.from_state.value if ev.from_state else None,
             "to": ev.to_state.value, "actor": ev.actor, "detail": ev.detail}
            for ev in events]})
        return
    click.echo(table(["field", "value"],
                     [(k, v) for k, v in entry_dict(entry).items() if v is not None]))
    click.echo()
    click.echo(timeline(events))


def _actor(ctx: click.Context, param: click.Parameter, by: str | None) -> str:
    return os_user() if by is None else not_empty(by, "--by")


def acting(name: str, message: str | None = None) -> Callable[[Callable[..., None]], Any]:
    """A command that moves one redemption: REDEMPTION_ID, ``--message`` (with its help)
    when it sends one, ``--source`` and ``--by`` (the actor: the name given, else the OS
    user)."""

    def decorate(func: Callable[..., None]) -> Any:
        func = click.option("--by", "actor", metavar="NAME", callback=_actor,
                            help="Who is acting, recorded in the ledger (default: the OS "
                                 "user).")(func)
        func = SOURCE_OPTION(func)
        if message is not None:
            func = click.option("--message", "-m", required=True, help=message)(func)
        return ledger.command(name)(click.argument("redemption_id")(click.pass_obj(func)))

    return decorate


def _ask_the_vendor(obj: Context, verb: str, redemption_id: str, source: str,
                    actor: str) -> None:
    """``retry`` and ``reorder``: the operator's step, after the vendor was asked by key."""
    from poller.compose import Runtime
    from poller.worker import operator

    config = obj.config()
    lookup(config, source, redemption_id)  # a missing ledger or redemption: named, exit 1
    extra = {"namespace": config.influitive.org_id} if verb == "reorder" else {}
    with Runtime(config) as runtime:
        before = find(runtime.ledger, source, redemption_id)
        done = getattr(operator, verb)(runtime.ledger, runtime.vendors, source=source,
                                       redemption_id=redemption_id, actor=actor,
                                       now=datetime.now(UTC), **extra)
    click.echo(f"redemption {redemption_id}: {before.state.value} -> {done.entry.state.value}; "
               f"{done.said}")


@acting("retry")
def ledger_retry(obj: Context, redemption_id: str, source: str, actor: str) -> None:
    """Release a held or waiting redemption after asking the vendor about its order: it is
    worked on at the next cycle. A row moves to ``ordered`` only when the vendor confirms
    the order complete."""
    _ask_the_vendor(obj, "retry", redemption_id, source, actor)


@acting("reorder")
def ledger_reorder(obj: Context, redemption_id: str, source: str, actor: str) -> None:
    """Place a new order for a redemption whose vendor order failed or was cancelled: a new
    idempotency key derived from the first (both recorded), nothing else changed."""
    _ask_the_vendor(obj, "reorder", redemption_id, source, actor)


@acting("approve")
def ledger_approve(obj: Context, redemption_id: str, source: str, actor: str) -> None:
    """Release a held redemption past the spending guard (or after a review): it is
    ordered at the next cycle, whatever the guard says about this one."""
    from poller.domain.states import State
    from poller.ports import Changes, LeaseLost

    with closing(open_existing(obj.config())) as store:
        entry = find(store, source, redemption_id)
        if entry.state is not State.HELD:
            raise Failed(f"redemption {redemption_id} is {entry.state.value}; only held "
                         "redemptions can be approved (ledger retry releases waiting ones)")
        try:
            moved = store.admin_transition(
                entry.pk, State.WAITING if entry.idempotency_key else State.NEW,
                "approved by an operator (ledger approve)", datetime.now(UTC),
                Changes(approved=True, attempts=0,
                        clear=frozenset({"hold_reason", "next_attempt_at"})), actor=actor)
        except LeaseLost:
            raise PollerError(f"redemption {redemption_id} is being worked on by a worker "
                              "right now; try again in a moment") from None
    click.echo(f"redemption {redemption_id}: held -> {moved.state.value} (approved); it is "
               "worked on at the next cycle")


@acting("refuse", message="Shown to the advocate.")
def ledger_refuse(obj: Context, redemption_id: str, message: str, source: str,
                  actor: str) -> None:
    """Refuse a redemption no reward reached (refunds the advocate's points). A redemption
    with an idempotency key is looked up at the vendor first: an order that exists blocks
    the refusal (exit 1, the order named and recorded); a failed or cancelled one allows it."""
    from poller.compose import Runtime
    from poller.domain.states import State
    from poller.worker import operator

    not_empty(message, "--message")
    config = obj.config()
    lookup(config, source, redemption_id)
    with Runtime(config) as runtime:
        done = operator.refuse(runtime.ledger, runtime.vendors, source=source,
                               redemption_id=redemption_id, message=message, actor=actor,
                               now=datetime.now(UTC))
        click.echo(f"redemption {redemption_id}: {done.said}")
        final = runtime.worker.process(done.entry.pk)
    click.echo(f"redemption {redemption_id}: {final.state.value if final else 'unknown'}")
    if final is not None and final.state is State.REFUSING:
        raise PollerError(f"Influitive did not take the refusal yet ({final.last_error}); the "
                          "worker retries it")


@acting("fulfill", message="Shown to the advocate, e.g. how the reward reached them.")
def ledger_fulfill(obj: Context, redemption_id: str, message: str, source: str,
                   actor: str) -> None:
    """Fulfil a reward a person delivered (manual vendor, or a held redemption): tells
    Influitive with your message, then records it as fulfilled."""
    from poller.compose import Runtime
    from poller.domain.states import State
    from poller.worker import operator

    config = obj.config()
    entry = lookup(config, source, redemption_id)
    refusal = operator.fulfill_refusal(entry)
    if refusal:
        raise Failed(refusal)
    not_empty(message, "--message")
    # The decision is committed first (ORDERED, with the message), then sent: the delivery
    # guarantee's order. If Influitive does not take it now, the worker sends it again.
    with Runtime(config) as runtime:
        operator.fulfill(runtime.ledger, source=source, redemption_id=redemption_id,
                         message=message, actor=actor, now=datetime.now(UTC))
        final = runtime.worker.process(entry.pk)
    state = final.state if final is not None else None
    if state is State.FULFILLED:
        click.echo(f"redemption {redemption_id}: {entry.state.value} -> fulfilled; Influitive "
                   "has your message")
        return
    if state is State.CLOSED_UPSTREAM:
        raise Failed(f"redemption {redemption_id} was already decided at Influitive; the "
                     "ledger now says closed_upstream")
    reason = final.last_error if final is not None else "unknown"
    raise Failed(f"Influitive did not take the decision yet ({reason}); the worker sends it "
                 "again at the next cycle")
