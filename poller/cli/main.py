"""The ``reward-poller`` command line: the top-level group and the map of its commands.

Each command group lives in its own module (``ledger``, ``run``, ``report``, ``check``,
``db``); they all import ``poller.cli.context`` (the config, exit codes, the ledger as a
command needs it) and ``poller.cli.output`` (the one table renderer), never each other and
never this module. A new command is registered by adding it to ``LAZY_COMMANDS``: its module
is imported only when the command runs (``poller.cli.lazy``), so a start loads the one
command it runs.

Exit codes (docs/cli.md, "Exit codes"): 0 the command did its job; 1 it could not; 2 a usage
or configuration error; 130 interrupted (Ctrl-C). ``main`` runs click outside its standalone
mode and renders every error itself, through ``poller.logs.stderr_line``: readable on a
terminal, one JSON object per line when stderr is not one (docs/logging.md).
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from typing import Any, NoReturn, cast

import click

from poller import __version__, logs
from poller.cli.context import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    BadConfig,
    Context,
    Failed,
)
from poller.cli.lazy import LazyCommand, LazyGroup

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "LAZY_COMMANDS", "cli",
           "main"]

EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT) ended the command: 128 + the signal's number, as a shell reports it."""

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
    "db": LazyCommand(
        "poller.cli.db", "db", "The ledger's database schema.",
        subcommands=(("poller.cli.release_cmds", "db_current"),)),
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
        "poller.cli.run", "demo",
        "Run the worker against local stand-ins for Influitive, Tremendous, Tango Card, "
        "Giftbit, an HTTP vendor and manual fulfilment."),
}
"""Every top-level command by name: where it is defined, and the help ``--help`` lists
(the first paragraph of the command's own; a test keeps the two the same)."""


class _Interrupted(Exception):
    """A KeyboardInterrupt in a command, taken out of click's hands: click would write an
    empty line on stderr for it before raising ``Abort``."""


class CommandLine(LazyGroup):
    """The top-level group: a Ctrl-C inside a command reaches ``main`` as ``_Interrupted``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc


@click.group(cls=CommandLine, lazy=LAZY_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
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


def __getattr__(name: str) -> Any:
    """``COMMANDS``: every top-level command, loaded (this imports every command module)."""
    if name == "COMMANDS":
        with click.Context(cli) as ctx:
            return [cli.get_command(ctx, command) for command in LAZY_COMMANDS]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> NoReturn:
    # Python's own warnings and an exception no thread caught become log records: a JSON
    # line like every other one when stderr is not a terminal.
    logging.captureWarnings(True)
    threading.excepthook = logs.log_thread_crash
    sys.exit(run_command())


def run_command(args: list[str] | None = None) -> int:
    """Run the command line and return its exit code, every error rendered on stderr by
    ``render_error`` (SystemExit from a command passes through as it is)."""
    try:
        result = cli.main(args=args, prog_name="reward-poller", standalone_mode=False)
    except Exception as exc:
        return render_error(exc)
    # Outside standalone mode click returns an explicit exit code (``ctx.exit``, ``--help``)
    # or what the command returned (None).
    return result if type(result) is int else EXIT_OK


def render_error(exc: Exception) -> int:
    """Say on stderr why the command ended, as one line (one JSON object off a terminal);
    return the exit code for it."""
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
