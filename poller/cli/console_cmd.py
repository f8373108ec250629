"""``reward-poller console``: serve the web console alone (deployments that run no daemon,
docs/console.md), and ``console add-user``. The console (starlette, jinja2) is imported
only when it runs."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import click

from poller.cli.context import Context, Failed, not_empty, until_stopped


@click.group("console", invoke_without_command=True)
@click.option("--listen", metavar="HOST:PORT",
              help="Where to serve it (default: [console] listen, 127.0.0.1:9480).")
@click.pass_context
def console_command(ctx: click.Context, listen: str | None) -> None:
    """Serve the web console (held redemptions, decisions, spend) until Ctrl-C, for
    deployments whose worker runs from a timer; the daemon serves it itself."""
    if ctx.invoked_subcommand is not None:
        return
    from poller.compose import Runtime
    from poller.config.sections import parse_listen as host_port
    from poller.console.app import check_bind, runtime_backend, standalone
    from poller.daemon.runner import HttpServer

    config = ctx.obj.config()
    settings = config.console
    where = listen or settings.listen
    try:
        host, _port = host_port(where)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    check_bind(host, settings)
    with Runtime(config) as runtime:
        server = HttpServer(standalone(runtime_backend(runtime, settings), settings), where,
                            config.server.limits())
        url = server.start()
        try:
            until_stopped(lambda: click.echo(f"console at {url}/console/ ; Ctrl-C stops it"))
        finally:
            server.stop()
    click.echo("console stopped")


@console_command.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator"]), required=True,
              help="viewer: reads every page; operator: may also act on redemptions.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin instead of asking.")
@click.option("--write", is_flag=True,
              help="Append the entry to the config file (--config) instead of printing it.")
@click.pass_obj
def add_user(obj: Context, name: str, role: str, password_stdin: bool, write: bool) -> None:
    """Make a user's [[console.users]] entry (a scrypt hash of the password, never the
    password itself): printed to paste into the config, or appended with --write."""
    from poller.config import DEFAULT_CONFIG_PATH
    from poller.console.auth import hash_password, toml_entry

    name = not_empty(name, "NAME")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True,
                                err=True)
    if len(password) < 12:
        raise click.BadParameter("use at least 12 characters", param_hint="password")
    entry = toml_entry(name, "operator" if role == "operator" else "viewer",
                       hash_password(password))
    if not write:
        click.echo(entry, nl=False)
        return
    target = Path(obj.config_path or DEFAULT_CONFIG_PATH)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise Failed(f"cannot read {target}: {exc.strerror or exc}") from None
    try:
        users = tomllib.loads(text).get("console", {}).get("users", [])
    except tomllib.TOMLDecodeError as exc:
        raise Failed(f"{target} is not valid TOML ({exc}); nothing written") from None
    if any(str(u.get("name", "")).casefold() == name.casefold() for u in users):
        raise Failed(f"{target} already has a console user {name!r}; nothing written")
    with target.open("a", encoding="utf-8") as f:
        f.write(("\n" if text and not text.endswith("\n") else "") + "\n" + entry)
    click.echo(f"added console user {name!r} ({role}) to {target}")
