"""The ``reward-poller`` command line.

Exit codes (README, "Exit codes"): 0 the command did its job; 1 it could not (Influitive
rejected the credentials, the poll failed, the ledger is unreachable, a redemption was not
found or cannot be moved that way); 2 a usage or configuration error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar, cast

import click
import structlog

from poller import __version__, logs
from poller.cli import ops, release_cmds, sandbox_cmd
from poller.cli.check import check_command
from poller.config import Config, load_config
from poller.core.errors import ConfigError, PollerError, SourceAuthError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

log = structlog.get_logger("poller.cli")

F = TypeVar("F", bound=Callable[..., Any])


class Failed(click.ClickException):
    """The command could not do its job: message on stderr, exit 1."""

    exit_code = EXIT_FAILED

    def show(self, file: Any = None) -> None:
        click.echo(f"reward-poller: {logs.redactor.scrub(self.format_message())}", err=True)


class BadConfig(click.ClickException):
    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"reward-poller: {logs.redactor.scrub(self.format_message())}", err=True)


class Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise BadConfig(str(exc)) from None
            logs.redactor.add(self._config.secrets())
        return self._config


def handled(func: F) -> F:
    """Turn our own errors into exit codes with a one-line reason (no traceback)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except ConfigError as exc:
            raise BadConfig(str(exc)) from None
        except SourceAuthError as exc:
            raise Failed(str(exc)) from None
        except PollerError as exc:
            raise Failed(str(exc)) from None

    return cast(F, wrapper)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reward-poller")
@click.option("--config", "config_path", metavar="PATH", envvar="REWARD_POLLER_CONFIG",
              help="Config file (default ./config.toml, or $REWARD_POLLER_CONFIG).")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto",
              show_default=True, help="auto: console on a terminal, JSON lines otherwise.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_format: str, log_level: str) -> None:
    """Fulfil Influitive reward redemptions through your own vendor, exactly once."""
    logs.configure(cast(logs.LogFormat, log_format), log_level)
    ctx.obj = Context(config_path)


@cli.command()
@click.option("--run-once", is_flag=True, help="Run exactly one cycle, then exit (0/1/2).")
@click.option("--dry-run", is_flag=True,
              help="Poll and print what one cycle would do; change nothing anywhere.")
@click.pass_obj
@handled
def run(obj: Context, run_once: bool, dry_run: bool) -> None:
    """Run the worker: a daemon polling every [schedule] interval_seconds, or one cycle."""
    from poller.app import App
    from poller.ops.service import run_once as one_cycle
    from poller.ops.service import serve

    config = obj.config()
    if dry_run:
        ops.dry_run(config)
        return
    if not run_once:
        sys.exit(serve(config))
    with App(config) as app:
        try:
            report = one_cycle(app)
        except PollerError:
            raise
        except Exception as exc:
            log.error("cycle failed", error=f"{type(exc).__name__}: {exc}")
            raise Failed(f"cycle failed: {type(exc).__name__}: {exc}") from None
        if not report.ok:
            raise Failed("; ".join(report.errors) or "the cycle could not do its job")


@cli.command()
@click.pass_obj
@handled
def status(obj: Context) -> None:
    """Counts by state, the oldest redemption still open, the last successful poll."""
    from poller.cli.commands import print_status

    print_status(obj.config())


@cli.group()
def ledger() -> None:
    """Look into the ledger and act on single redemptions."""


@ledger.command("list")
@click.option("--state", "states", multiple=True, help="Only these states (repeatable).")
@click.option("--vendor", help="Only orders from this vendor.")
@click.option("--reward", help="Only this reward (its Influitive id or name).")
@click.option("--email", help="Only this advocate (case-insensitive).")
@click.option("--since", type=ops.UTC_DATE, help="Recorded at or after this date (UTC).")
@click.option("--until", type=ops.UTC_DATE, help="Recorded before this date (UTC).")
@click.option("--source", help="Only redemptions from this source (e.g. influitive).")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.pass_obj
@handled
def ledger_list(
    obj: Context, states: tuple[str, ...], vendor: str | None, reward: str | None,
    email: str | None, since: datetime | None, until: datetime | None, source: str | None,
    limit: int, as_json: bool,
) -> None:
    """List redemptions, newest first."""
    from poller.cli.commands import list_entries

    filters = {"vendor": vendor, "reward": reward, "email": email, "since": since,
               "until": until, "source": source}
    list_entries(obj.config(), states, limit, as_json, filters)


@ledger.command("show")
@click.argument("redemption_id")
@click.option("--source", default="influitive", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def ledger_show(obj: Context, redemption_id: str, source: str, as_json: bool) -> None:
    """One redemption and its whole story."""
    from poller.cli.commands import show_entry

    show_entry(obj.config(), source, redemption_id, as_json)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


_by = click.option("--by", "actor", metavar="NAME", default=_os_user,
                   help="Who is acting, recorded with the change (default: the OS user).")


@ledger.command("retry")
@click.argument("redemption_id")
@click.option("--source", default="influitive", show_default=True)
@_by
@click.pass_obj
@handled
def ledger_retry(obj: Context, redemption_id: str, source: str, actor: str) -> None:
    """Release a held or waiting redemption after asking the vendor about its order: it is
    worked on at the next cycle."""
    from poller.cli.commands import retry_entry

    retry_entry(obj.config(), source, redemption_id, actor)


@ledger.command("reorder")
@click.argument("redemption_id")
@click.option("--source", default="influitive", show_default=True)
@_by
@click.pass_obj
@handled
def ledger_reorder(obj: Context, redemption_id: str, source: str, actor: str) -> None:
    """Place a new order (new key, derived from the first) for a redemption whose vendor
    order failed or was cancelled."""
    from poller.cli.commands import reorder_entry

    reorder_entry(obj.config(), source, redemption_id, actor)


@ledger.command("refuse")
@click.argument("redemption_id")
@click.option("--message", "-m", required=True, help="Shown to the advocate.")
@click.option("--source", default="influitive", show_default=True)
@_by
@click.pass_obj
@handled
def ledger_refuse(obj: Context, redemption_id: str, message: str, source: str,
                  actor: str) -> None:
    """Refuse a redemption no reward reached (refunds the advocate's points); the vendor is
    asked first whether an order exists under its key."""
    from poller.cli.commands import refuse_entry

    refuse_entry(obj.config(), source, redemption_id, message, actor)


@cli.group()
def db() -> None:
    """The ledger's database schema."""


@db.command("upgrade")
@click.pass_obj
@handled
def db_upgrade(obj: Context) -> None:
    """Run the Alembic migrations up to the newest."""
    from poller.cli.release_cmds import report_upgrade

    report_upgrade(obj.config().ledger.url)


@cli.command()
@click.option("--keep", is_flag=True,
              help="Keep the demo's config and SQLite ledger; print commands that use them.")
@click.pass_context
@handled
def demo(ctx: click.Context, keep: bool) -> None:
    """Run the worker against local stand-ins for Influitive, Tremendous, Tango Card,
    Giftbit, an HTTP vendor and manual fulfilment."""
    from poller.demo import run_demo

    parent = ctx.parent
    if parent is not None and parent.get_parameter_source("log_level") is (
        click.core.ParameterSource.DEFAULT
    ):
        # The demo's table tells the story; logs only for what went wrong, unless asked.
        logs.configure(cast(logs.LogFormat, parent.params["log_format"]), "warning")

    sys.exit(run_demo(keep=keep))


cli.add_command(ops.report)
ledger.add_command(ops.ledger_approve)
ledger.add_command(ops.ledger_fulfill)
cli.add_command(check_command)
cli.add_command(release_cmds.init_command)
cli.add_command(release_cmds.deploy_group)
db.add_command(release_cmds.db_current)
cli.add_command(sandbox_cmd.sandbox_command)


def main() -> None:
    cli(prog_name="reward-poller")
