"""A command group that imports a command's module only when that command runs.

Every start pays for the modules it imports: ``run --run-once`` from a timer should not load
``check``, ``ledger``, ``report`` or the release commands to do its one cycle. The group
knows each command by name, the module and attribute that define it, and the first
paragraph of its help, so ``--help`` lists every command with its short help without
importing any of them (``tests/cli`` checks the listed help against the commands' own).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from gettext import gettext as _
from typing import Any

import click


@dataclass(frozen=True)
class LazyCommand:
    """Where a command is defined, and the first paragraph of its help."""

    module: str
    attribute: str
    help: str
    """What ``--help`` lists (click shortens it to the terminal's width as it would the
    command's own help)."""
    subcommands: Sequence[tuple[str, str]] = ()
    """(module, attribute) of commands added to this group when it is loaded (a group
    whose subcommands live in more than one module)."""

    def load(self) -> click.Command:
        command: object = getattr(importlib.import_module(self.module), self.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.module}.{self.attribute} is not a click command")
        if self.subcommands:
            if not isinstance(command, click.Group):
                raise TypeError(f"{self.module}.{self.attribute} is not a click group")
            for module, attribute in self.subcommands:
                command.add_command(getattr(importlib.import_module(module), attribute))
        return command


class LazyGroup(click.Group):
    """``click.Group`` whose commands in ``lazy`` are imported on first use (click's
    "lazily loading subcommands" pattern), with ``--help`` served from their ``help``."""

    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, LazyCommand] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.lazy[cmd_name].load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, with a command not loaded yet listed from its ``help``: a bare
        ``click.Command`` carrying that text shortens it the way the command would."""
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None and name in self.lazy:
                command = click.Command(name, help=self.lazy[name].help)
            if command is not None and not command.hidden:
                rows.append((name, command))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section(_("Commands")):  # click's own heading, translated alike
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])
