"""The ``reward-poller`` command line: the top-level group and the map of its commands.

Each command group lives in its own module (``ledger``, ``run``, ``report``, ``check``,
``db``); they all import ``poller.cli.context`` (the config, exit codes, the ledger as a
command needs it) and ``poller.cli.output`` (the one table renderer), never each other and
never this module. A new command module is registered by adding it to ``COMMANDS``.

Exit codes (docs/cli.md, "Exit codes"): 0 the command did its job; 1 it could not; 2 a usage
or configuration error.
"""

from __future__ import annotations

from typing import cast

import click

from poller import __version__, logs
from poller.cli.check import check_command
from poller.cli.context import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Context
from poller.cli.db import db
from poller.cli.ledger import ledger
from poller.cli.release_cmds import db_current, deploy_group, init_command
from poller.cli.report import report, status
from poller.cli.run import demo, run
from poller.cli.sandbox_cmd import sandbox_command

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "cli", "main"]


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


COMMANDS: list[click.Command] = [
    run, status, ledger, report, check_command, db, init_command, deploy_group, sandbox_command,
    demo,
]
"""Every top-level command, in ``--help`` order of registration."""

for _command in COMMANDS:
    cli.add_command(_command)
db.add_command(db_current)


def main() -> None:
    cli(prog_name="reward-poller")
