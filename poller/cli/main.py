"""The ``reward-poller`` command line: the top-level group and the map of its commands.

A command's module is imported only when that command runs (``LAZY_COMMANDS``), so a start
loads the one command it runs and ``--help`` lists every command without importing one.
Command modules import ``context`` and ``output``, never each other nor this module. Exit
codes and how errors are shown on stderr: docs/cli.md ("Exit codes"), docs/logging.md.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import traceback
from gettext import gettext as _
from typing import Any, NamedTuple, NoReturn, cast

import click

from poller import __version__, logs
from poller.cli.context import EXIT_FAILED, EXIT_OK, BadConfig, Context, Failed
from poller.domain.errors import ConfigError, PollerError

EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it


class LazyCommand(NamedTuple):
    module: str
    attribute: str
    help: str  # what --help lists: the first paragraph of the command's own (a test compares)


LAZY_COMMANDS: dict[str, LazyCommand] = {
    "run": LazyCommand(
        "poller.cli.run", "run",
        "Run the worker: a daemon polling every [schedule] interval_seconds, or one cycle."),
    "status": LazyCommand(
        "poller.cli.report", "status",
        "Counts by state, the oldest redemption still open, the last successful poll."),
    "ledger": LazyCommand(
        "poller.cli.ledger", "ledger", "Look into the ledger and act on single redemptions."),
    "report": LazyCommand(
        "poller.cli.report", "report",
        "One row per vendor order, for reconciling with the vendor's invoice (stdout). CSV "
        "cells that would start a spreadsheet formula are prefixed with an apostrophe."),
    "audit": LazyCommand(
        "poller.cli.audit", "audit",
        "Balance the books: every order at a vendor belongs to exactly one fulfilled "
        "redemption. Exit 0 when they balance, 1 on a discrepancy or a vendor list not read."),
    "check": LazyCommand(
        "poller.cli.check", "check_command",
        "Check the config, Influitive (credentials, org id, what is outstanding) and, for "
        "each vendor in [[rewards]], credentials, products and balance."),
    "db": LazyCommand("poller.cli.release_cmds", "db", "The ledger's database schema."),
    "init": LazyCommand(
        "poller.cli.release_cmds", "init_command",
        "Write the commented example config to PATH (default: --config, or ./config.toml)."),
    "deploy": LazyCommand(
        "poller.cli.release_cmds", "deploy_group", "Files to run reward-poller as a service."),
    "sandbox": LazyCommand(
        "poller.cli.sandbox_cmd", "sandbox_command",
        "Serve local stand-ins for Influitive, Tremendous, Tango Card, Giftbit and an HTTP "
        "vendor (manual needs none) on loopback, with a few redemptions, until Ctrl-C."),
    "console": LazyCommand(
        "poller.cli.console_cmd", "console_command",
        "Serve the web console (held redemptions, decisions, spend) until Ctrl-C, for "
        "deployments whose worker runs from a timer; the daemon serves it itself."),
    "demo": LazyCommand(
        "poller.cli.demo", "demo",
        "Run the worker against local stand-ins for Influitive, Tremendous, Tango Card, "
        "Giftbit, an HTTP vendor and manual fulfilment."),
}


class _Interrupted(Exception):
    """A KeyboardInterrupt taken out of click's hands (it would write an empty line)."""


class CommandLine(click.Group):
    """Commands loaded on first use (click's "lazily loading subcommands" pattern); our own
    errors become their exit codes with a one-line reason, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(LAZY_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            module, attribute, _help = LAZY_COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # A command not loaded yet is listed as a bare click.Command carrying its help, so
        # click shortens it the way the command would.
        rows = [(name, self.commands.get(name) or click.Command(name, help=lazy.help))
                for name, lazy in sorted(LAZY_COMMANDS.items())]
        limit = formatter.width - 6 - max(len(name) for name in LAZY_COMMANDS)
        with formatter.section(_("Commands")):  # click's own heading, translated alike
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc
        except ConfigError as exc:
            raise BadConfig(str(exc)) from None
        except PollerError as exc:
            raise Failed(str(exc)) from None


@click.group(cls=CommandLine, context_settings={"help_option_names": ["-h", "--help"]})
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


def main() -> NoReturn:
    # Python's own warnings and an exception no thread caught become log records: a JSON
    # line like every other one when stderr is not a terminal.
    logging.captureWarnings(True)
    threading.excepthook = logs.log_thread_crash
    sys.exit(run_command())


def run_command(args: list[str] | None = None) -> int:
    """The exit code; every error rendered on stderr by ``render_error``."""
    try:
        result = cli.main(args=args, prog_name="reward-poller", standalone_mode=False)
    except Exception as exc:
        return render_error(exc)
    # Outside standalone mode click returns an explicit exit code (``ctx.exit``, ``--help``)
    # or what the command returned (None).
    return result if type(result) is int else EXIT_OK


def render_error(exc: Exception) -> int:
    """Say on stderr why the command ended, as one line; return the exit code for it."""
    if isinstance(exc, Failed | BadConfig):
        exc.show()
        return exc.exit_code
    if isinstance(exc, click.UsageError):
        return _usage_error(exc)
    if isinstance(exc, click.ClickException):
        text = logs.clean_line(exc.format_message())
        logs.stderr_line("cli.failed", text, human=f"Error: {text}", exit_code=exc.exit_code)
        return exc.exit_code
    if isinstance(exc, _Interrupted) or (
        isinstance(exc, click.exceptions.Abort)
        and isinstance(exc.__context__, KeyboardInterrupt)
    ):
        logs.stderr_line("cli.interrupted", "interrupted (Ctrl-C)", level="warning",
                         human="Aborted!", exit_code=EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    if isinstance(exc, click.exceptions.Abort):
        logs.stderr_line("cli.aborted", "aborted", human="Aborted!", exit_code=EXIT_FAILED)
        return EXIT_FAILED
    if not logs.json_stderr():
        raise exc  # a bug: the traceback, as Python shows it on a terminal
    logs.stderr_line("cli.crashed", f"unexpected error: {type(exc).__name__}: {exc}",
                     level="critical", exit_code=EXIT_FAILED,
                     exception="".join(traceback.format_exception(exc)))
    return EXIT_FAILED


def _usage_error(exc: click.UsageError) -> int:
    if not logs.json_stderr():
        exc.show()
        return exc.exit_code
    ctx = exc.ctx
    fields: dict[str, Any] = {}
    if ctx is not None:
        fields["usage"] = ctx.get_usage().removeprefix("Usage: ")
        if ctx.command.get_help_option(ctx) is not None:
            option = max(ctx.command.get_help_option_names(ctx), key=len)
            fields["hint"] = f"Try '{ctx.command_path} {option}' for help."
    logs.stderr_line("cli.usage_error", logs.clean_line(exc.format_message()),
                     exit_code=exc.exit_code, **fields)
    return exc.exit_code
