"""``reward-poller sandbox``: serve the stand-ins until Ctrl-C or SIGTERM (docs/sandbox.md);
the stand-ins (starlette, uvicorn) are imported only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from poller.cli.context import Context, Failed, in_the_way, until_stopped, write_new_file

DEFAULT_PORT_BASE = 7470  # poller.sandbox.services.DEFAULT_PORT_BASE, without importing it
SERVICES = ("influitive", "tremendous", "tango", "giftbit", "http")


def _port_options(func: Any) -> Any:
    for name in reversed(SERVICES):
        func = click.option(f"--{name}-port", name, type=click.IntRange(1, 65535),
                            metavar="PORT")(func)
    return func


@click.command("sandbox")
@click.option("--port-base", type=click.IntRange(1, 65531), default=DEFAULT_PORT_BASE,
              show_default=True,
              help="Influitive listens on this port; Tremendous, Tango Card, Giftbit and the "
                   "HTTP vendor on the next four.")
@_port_options
@click.option("--empty", is_flag=True, help="Seed no redemption (add them over the admin "
                                             "route, docs/sandbox.md).")
@click.option("--write-config", is_flag=True,
              help="Write the configuration for the stand-ins to --config (default "
                   "./config.toml): only over a missing file, the unchanged example from "
                   "`init`, or an earlier sandbox configuration.")
@click.option("--inject", "injections", multiple=True, metavar="VENDOR:KIND[:KEY]",
              help="Do not serve: add an orphan, a duplicate or a mismatch (KIND; KEY: the "
                   "order it is made of, default the newest) at VENDOR (tremendous, tango, "
                   "giftbit or http) to the stand-ins already running on these ports, to "
                   "rehearse `audit`. Repeatable.")
@click.pass_obj
def sandbox_command(obj: Context, /, port_base: int, empty: bool, write_config: bool,
                    injections: tuple[str, ...], **chosen: int | None) -> None:
    """Serve local stand-ins for Influitive, Tremendous, Tango Card, Giftbit and an HTTP
    vendor (manual needs none) on loopback, with a few redemptions, until Ctrl-C.

    Prints the configuration that points at them; rehearse `check`, `run`, the daemon and
    the `ledger` commands with it in another terminal. With --inject, adds orphan, duplicate
    or mismatched orders to the running stand-ins instead (docs/sandbox.md).
    """
    from poller.config import DEFAULT_CONFIG_PATH
    from poller.sandbox import services as sandbox

    ports = sandbox.Ports.from_base(port_base, **chosen).as_dict()
    if injections:
        _inject(sandbox.urls_for(sandbox.HOST, ports), injections)
        return
    target = Path(obj.config_path or DEFAULT_CONFIG_PATH)
    if write_config:
        # Checked before the stand-ins start; the same check as `init` (a symbolic link,
        # dangling or not, is never written through), but an unchanged example or an
        # earlier sandbox configuration may be replaced.
        why = in_the_way(target, sandbox.replaceable)
        if why is not None and target.is_file() and not target.is_symlink():
            why = (f"{target} has settings of your own: not overwritten (paste the snippet "
                   "printed without --write-config, or use --config OTHER.toml)")
        if why is not None:
            raise Failed(why)
    box = sandbox.Sandbox(ports, seed=not empty)
    try:
        urls = box.start()
    except sandbox.PortInUse as exc:
        raise Failed(f"{exc}: choose other ports with --port-base or --<service>-port") from None

    def announce() -> None:
        click.echo("stand-ins (no auth on /_standin/ routes; loopback only):")
        for name, url in urls.items():
            click.echo(f"  {name:<11} {url}")
        seeded = len(box.influitive.outstanding_ids())
        click.echo(f"seeded {seeded} redemption{'s' if seeded != 1 else ''} at Influitive; "
                   f"add more: curl -X POST {urls['influitive']}/_standin/redemptions -d @...")
        if write_config:
            write_new_file(target, sandbox.config_text(urls), replace=sandbox.replaceable)
            click.echo(f"\nwrote {target}: the example configuration, pointed at these "
                       "stand-ins.")
        else:
            click.echo("\nIn a config from `reward-poller init`, set these keys and add the "
                       "rest (or rerun with --write-config):\n")
            click.echo(sandbox.snippet(urls))
        flag = "" if str(target) == DEFAULT_CONFIG_PATH else f" --config {target}"
        click.echo(f"\nthen, in another terminal: reward-poller{flag} check && "
                   f"reward-poller{flag} run --run-once")
        click.echo("ready; Ctrl-C stops the stand-ins")

    try:
        until_stopped(announce)
    finally:
        box.stop()
    click.echo("stand-ins stopped")


def _inject(urls: dict[str, str], injections: tuple[str, ...]) -> None:
    """Each ``VENDOR:KIND[:KEY]`` sent to the running stand-in; what it added printed (the
    order's id and the key it carries)."""
    from poller.sandbox import services as sandbox

    try:
        wanted = [sandbox.parse_injection(text) for text in injections]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--inject") from None
    for vendor, kind, key in wanted:
        try:
            added = sandbox.inject(urls[vendor], kind, key)
        except (OSError, RuntimeError) as exc:
            raise Failed(f"{vendor}: {kind} not injected: {exc}") from None
        for order in added:
            ident = next((str(order[k]) for k in ("id", "referenceOrderID", "uuid", "order_id")
                          if order.get(k)), "?")
            ours = next((str(order[k]) for k in ("external_id", "externalRefID",
                                                 "campaign_id", "idempotency_key")
                         if order.get(k)), "none")
            click.echo(f"{vendor}: {kind} injected: order {ident} (key {ours})")
