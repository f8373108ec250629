"""The ``reward-poller`` command line: the top-level group and the map of its commands.

Each command group lives in its own module (``ledger``, ``run``, ``report``, ``check``,
``db``); they all import ``poller.cli.context`` (the config, exit codes, the ledger as a
command needs it) and ``poller.cli.output`` (the one table renderer), never each other and
never this module. A new command is registered by adding it to ``LAZY_COMMANDS``: its module
is imported only when the command runs (``poller.cli.lazy``), so a start loads the one
command it runs.

Exit codes (docs/cli.md, "Exit codes"): 0 the command did its job; 1 it could not; 2 a usage
or configuration error.
"""

from __future__ import annotations

import gc
from typing import Any, cast

import click

from poller import __version__, logs
from poller.cli.context import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    pause_collector,
    start_up_done,
)
from poller.cli.lazy import LazyCommand, LazyGroup

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "LAZY_COMMANDS", "cli", "main"]

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
    "demo": LazyCommand(
        "poller.cli.run", "demo",
        "Run the worker against local stand-ins for Influitive, Tremendous, Tango Card, "
        "Giftbit, an HTTP vendor and manual fulfilment."),
}
"""Every top-level command by name: where it is defined, and the help ``--help`` lists
(the first paragraph of the command's own; a test keeps the two the same)."""


@click.group(cls=LazyGroup, lazy=LAZY_COMMANDS,
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
    if ctx.invoked_subcommand != "run":  # run says so itself, once its App is built
        start_up_done()


def __getattr__(name: str) -> Any:
    """``COMMANDS``: every top-level command, loaded (this imports every command module)."""
    if name == "COMMANDS":
        with click.Context(cli) as ctx:
            return [cli.get_command(ctx, command) for command in LAZY_COMMANDS]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    pause_collector()
    try:
        cli(prog_name="reward-poller")
    finally:
        start_up_done()  # a command that ended before it said so
        # The process ends here: what is left is released with it, not walked first.
        gc.freeze()
