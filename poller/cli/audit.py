"""``reward-poller audit``: balance the books, every order a vendor lists belonging to
exactly one fulfilled redemption (docs/audit.md: the exit codes, the stored run, the
metrics textfile)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from poller.cli.context import EXIT_FAILED, UTC_DATE, open_existing, os_user
from poller.cli.output import emit_csv, emit_json, iso, table

if TYPE_CHECKING:
    from poller.core.audit import AuditResult, VendorAudit

CSV_COLUMNS = ("vendor", "kind", "source", "redemption_id", "order_id", "detail", "action")


def _spend(spend: dict[str, int] | Any) -> str:
    return ", ".join(f"{amount} {currency}" for currency, amount in spend.items()) or "-"


def _statuses(by_status: dict[str, int] | Any) -> str:
    return ", ".join(f"{s} {n}" for s, n in by_status.items()) or "-"


def _count(n: int) -> str:
    return f"{n} discrepanc{'y' if n == 1 else 'ies'}"


def _note(v: VendorAudit) -> str:
    if v.not_auditable is not None:
        return f"cannot be audited: {v.not_auditable}"
    if v.unreadable is not None:
        return f"order list could not be read: {v.unreadable}"
    return "balanced" if v.balanced else _count(len(v.discrepancies))


def as_json(result: AuditResult) -> dict[str, Any]:
    from poller.core.audit import KINDS

    return {
        "since": iso(result.since), "until": iso(result.until), "balanced": result.balanced,
        "totals": {
            "orders": result.orders, "matched": result.matched,
            "by_status": result.by_status, "spend_minor_units": result.spend,
            "discrepancies": {k.value: result.count(k) for k in KINDS},
        },
        "vendors": [{
            "vendor": v.vendor, "orders": v.orders, "matched": v.matched,
            "not_ours": v.not_ours, "by_status": dict(v.by_status),
            "spend_minor_units": dict(v.spend), "balanced": v.balanced,
            "unreadable": v.unreadable, "not_auditable": v.not_auditable,
        } for v in result.vendors],
        "discrepancies": [{
            "vendor": d.vendor, "kind": d.kind.value, "source": d.source,
            "redemption_id": d.redemption_id, "order_id": d.order_id, "detail": d.detail,
            "action": d.action,
        } for d in result.discrepancies],
    }


def write_table(result: AuditResult) -> None:
    click.echo(f"books audit, orders created {iso(result.since)} to {iso(result.until)}")
    rows: list[tuple[object, ...]] = [
        (v.vendor, "-", "-", "-", "-", _note(v)) if v.unreadable or v.not_auditable else
        (v.vendor, v.orders, v.matched, _statuses(v.by_status), _spend(v.spend), _note(v))
        for v in result.vendors]
    rows.append(("total", result.orders, result.matched, _statuses(result.by_status),
                 _spend(result.spend), "balanced" if result.balanced else "NOT balanced"))
    click.echo(table(["vendor", "orders", "matched", "by status", "spend (minor units)",
                      "outcome"], rows))
    if result.discrepancies:
        click.echo()
        click.echo(table(["vendor", "kind", "redemption", "order", "what", "to do"], [
            (d.vendor, d.kind.value, d.redemption_id or "-", d.order_id or "-", d.detail,
             d.action) for d in result.discrepancies]))
    click.echo()
    if result.balanced:
        click.echo("The books balance.")
        return
    unread = [v.vendor for v in result.vendors if v.unreadable is not None]
    parts = [_count(len(result.discrepancies))] if result.discrepancies else []
    if unread:
        parts.append(f"order list not read: {', '.join(unread)}")
    click.echo(f"The books do not balance: {'; '.join(parts)}.")


def _write_metrics(textfile: str, result: AuditResult) -> None:
    import structlog

    from poller.daemon.metrics import Recorder, audit_textfile

    recorder = Recorder(process=False)
    recorder.observe_audit(result, time.time())
    path = audit_textfile(textfile)
    try:
        recorder.write_audit_textfile(path)
    except OSError as exc:
        structlog.get_logger("poller.audit").error(
            "metrics.textfile.failed", path=str(path), error=f"{type(exc).__name__}: {exc}")


@click.command("audit")
@click.option("--vendor", "vendor", metavar="NAME", default=None,
              help="Audit this configured vendor only (default: every configured vendor).")
@click.option("--since", type=UTC_DATE, default=None,
              help="Orders created at or after this (default: [audit] window_days ago).")
@click.option("--until", type=UTC_DATE, default=None, help="... and before this (default: now).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.pass_context
def audit(ctx: click.Context, vendor: str | None, since: datetime | None,
          until: datetime | None, fmt: str) -> None:
    """Balance the books: every order at a vendor belongs to exactly one fulfilled
    redemption. Exit 0 when they balance, 1 on a discrepancy or a vendor list not read."""
    from poller.daemon import audit_job
    from poller.ledger.audit import save_run

    config = ctx.obj.config()
    started = datetime.now(UTC)
    until = until or started
    since = since or audit_job.trailing_period(config, until)[0]
    if until <= since:
        raise click.BadParameter("must be after --since", param_hint="--until")
    names = audit_job.vendors_to_audit(config, vendor)
    ledger = open_existing(config)
    try:
        result = audit_job.audit_books(ledger.engine, names, audit_job.order_book_opener(config),
                                       since=since, until=until)
        save_run(ledger.engine, result, started_at=started, finished_at=datetime.now(UTC),
                 actor=os_user())
    finally:
        ledger.close()
    if config.metrics.textfile:
        _write_metrics(config.metrics.textfile, result)
    if fmt == "json":
        emit_json(as_json(result))
    elif fmt == "csv":
        # One row per discrepancy, and one per vendor not read.
        unread = [{"vendor": v.vendor, "kind": "unreadable" if v.unreadable is not None
                   else "not_auditable", "detail": v.unreadable or v.not_auditable}
                  for v in result.vendors
                  if v.unreadable is not None or v.not_auditable is not None]
        emit_csv(CSV_COLUMNS, [*as_json(result)["discrepancies"], *unread])
    else:
        write_table(result)
    if not result.balanced:
        ctx.exit(EXIT_FAILED)
