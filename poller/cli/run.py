"""``reward-poller run``: the daemon, ``--run-once`` and ``--dry-run``. What a one-cycle run
prints, and when it exits 1 (an operator-facing problem, the poll stopped at ``[influitive]
max_pages``): docs/cli.md, "run --run-once"."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
import structlog

from poller import logs
from poller.cli.context import Context, Failed, missing_sqlite_file, open_existing
from poller.cli.output import Counter, progress, table

if TYPE_CHECKING:
    from poller.config import Config
    from poller.worker.cycle import CycleReport

log = structlog.get_logger("poller.cli")

MAX_REASONS = 5  # listed in the summary; the rest are counted as "other reasons"


@click.command("run")
@click.option("--run-once", is_flag=True, help="Run exactly one cycle, then exit (0/1/2).")
@click.option("--dry-run", is_flag=True,
              help="Poll and print what one cycle would do; change nothing anywhere.")
@click.pass_obj
def run(obj: Context, run_once: bool, dry_run: bool) -> None:
    """Run the worker: a daemon polling every [schedule] interval_seconds, or one cycle."""
    from poller.compose import Runtime
    from poller.compose import run_once as one_cycle

    config = obj.config()
    if dry_run:
        dry_run_plan(config)
        return
    if not run_once:
        from poller.compose.daemon import serve

        sys.exit(serve(config))
    from poller.daemon.alerts import cycle_problems, problem_fields, problem_line
    from poller.domain.errors import PollerError, SourceAuthError
    from poller.worker.signals import StopOnSignal

    counter = Counter("working")
    report: CycleReport | None = None
    # SIGINT/SIGTERM stop the cycle as they stop the daemon (poller.worker.signals).
    stopper = StopOnSignal(on_second=lambda sig: _interrupted(sig, None, at_once=True))
    with stopper, Runtime(config, stop=stopper.stop) as runtime:
        runtime.worker.on_progress = counter
        try:
            if stopper.received is None:  # a signal during start-up: no cycle at all
                report = one_cycle(runtime)
        except SourceAuthError as exc:
            found = problem_fields(cycle_problems(None, 0, exc)[0])
            raise Failed(f"{exc}. Fix: {found['fix']}", source="influitive",
                         cause=found["cause"], fix=found["fix"]) from None
        except PollerError:
            raise
        except Exception as exc:
            # The one line about it is the command's own (no log line saying it again).
            raise Failed(f"cycle failed: {type(exc).__name__}: {exc}") from None
        finally:
            counter.finish()
    if report is not None:
        click.echo(summary(report))
    if stopper.received is not None:
        _interrupted(stopper.received, report, at_once=False)
        sys.exit(128 + int(stopper.received))
    assert report is not None
    max_pages = config.influitive.max_pages
    problems = cycle_problems(report, max_pages)
    lines = [problem_line(p, max_pages=max_pages) for p in problems]
    if not report.ok:
        lines = [*(report.errors or ["the cycle could not do its job"]), *lines]
    if lines:
        fields: dict[str, Any] = {"source": "influitive"} if not report.poll_ok else {}
        raise Failed("; ".join(lines), **fields, errors=report.errors,
                     problems=[problem_fields(p, max_pages=max_pages) for p in problems])


def _interrupted(sig: signal.Signals, report: CycleReport | None, *, at_once: bool) -> None:
    """The one line a signal earns: which signal, how the run stopped, and what it left for
    the next run."""
    fields: dict[str, Any] = {"signal": sig.name, "exit_code": 128 + int(sig), "stopped": (
        "at once, on a second signal: a redemption in hand keeps its lease until [ledger] "
        "lease_seconds runs out" if at_once else "after the redemptions in hand; those not "
        "yet sent to a vendor were released for the next run")}
    if report is not None:
        fields.update(steps=report.steps, released=report.released,
                      not_started=report.not_started, outcomes=report.outcomes)
    log.warning("run.interrupted", **fields)


def summary(report: CycleReport) -> str:
    """One paragraph: what the poll saw, what the cycle ordered, decided, held and left
    waiting, and why (reasons counted)."""
    o = report.outcomes
    if not report.poll_ok:
        polled = "the poll failed, nothing new was ordered"
    else:
        polled = (f"polled {report.seen} outstanding redemption"
                  f"{'s' if report.seen != 1 else ''} ({report.new} new"
                  + ("" if report.poll_complete else ", list incomplete") + ")")
    ordered = o.get("ordered", 0) + o.get("pending", 0) + o.get("fulfilled", 0)
    pending = f" ({o['pending']} pending at the vendor)" if o.get("pending") else ""
    parts = [f"ordered {ordered}{pending}"] + [
        f"{label} {o.get(state, 0)}" for label, state in (
            ("fulfilled", "fulfilled"), ("refused", "refused"), ("closed", "closed_upstream"),
            ("held", "held"), ("waiting", "waiting"))]
    text = f"run: {polled}; {', '.join(parts)}."
    if report.reasons:
        ranked = sorted(report.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        listed = [f"{n} x {logs.clean_line(reason)}" for reason, n in ranked[:MAX_REASONS]]
        rest = sum(n for _, n in ranked[MAX_REASONS:])
        if rest:
            listed.append(f"{rest} x other reasons (reward-poller ledger list)")
        text += " Reasons: " + "; ".join(listed) + "."
    if report.stopped_early:
        text += " Stopped early on a signal; the rest wait for the next run."
    return text


def dry_run_plan(config: Config) -> None:
    """Poll, read the ledger, print what the next cycle would do per redemption id."""
    from poller.compose import influitive_client, request_budget
    from poller.core.plan import EmptyLedger, Planner

    planner = Planner(
        rules=config.rules(), vendors=frozenset(config.vendors),
        unmapped=config.fulfillment.unmapped_reward,
        unmapped_reason=config.fulfillment.templates().unmapped_reason,
        spend=config.fulfillment.spend_policy(),
    )
    # Read-only, never created: a SQLite file that does not exist yet reads as empty.
    url = config.ledger.url
    empty = missing_sqlite_file(url) is not None or url in ("sqlite://", "sqlite:///:memory:")
    ledger: Any = EmptyLedger() if empty else open_existing(config, read_only=True)
    try:
        # A budget of its own: the dry run writes nothing, not even the shared request log
        # (it reads a ledger on a read-only mount too). Its few list requests are not
        # counted by the workers; the budget's margin under the firewall's limit covers them.
        source = influitive_client(config, budget=request_budget(config, None))
        try:
            poll = source.poll()
        finally:
            source.close()

        def each(items: Iterable[Any]) -> Iterator[Any]:
            with progress(list(items), "planning") as bar:
                yield from bar

        plan = planner.plan(poll, ledger, datetime.now(UTC), each=each)
    finally:
        if not empty:
            ledger.close()
    rows = [[s.redemption_id, s.state.value if s.state else "-", s.action, s.detail]
            for s in plan.steps]
    if rows:
        click.echo(table(["redemption", "ledger", "would", "detail"], rows))
        click.echo()
    spend = ", ".join(f"{amount} {currency}" for currency, amount in sorted(plan.spend().items()))
    counts = ", ".join(
        f"{n} {label}" for label, n in (
            ("to order" + (f" ({spend})" if spend else ""), plan.count("order")),
            ("to hold", plan.count("hold")), ("to refuse", plan.count("refuse")),
            ("to fulfil", plan.count("fulfill")), ("to close", plan.count("close")),
            ("to look up", plan.count("reconcile") + plan.count("recheck")),
            ("waiting", plan.count("wait")),
            ("leased by another run", plan.count("skip")),
        ) if n
    ) or "nothing to do"
    complete = "" if plan.complete else " (incomplete: nothing is closed for being absent)"
    click.echo(f"dry run: polled {plan.seen} outstanding{complete}; {counts}. "
               "Nothing was recorded, ordered or decided.")
