"""``init``, ``deploy systemd``, ``deploy prometheus`` and ``db upgrade/current``: putting
an install in place."""

from __future__ import annotations

import os
from pathlib import Path

import click

from poller.cli.context import Context, Failed, write_new_file
from poller.logs import stderr_line


@click.command("init")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def init_command(obj: Context, path: Path | None) -> None:
    """Write the commented example config to PATH (default: --config, or ./config.toml).

    Never overwrites a file. The file is created readable by you only (it will hold secrets).
    """
    from poller.config import DEFAULT_CONFIG_PATH
    from poller.release import files

    target = path or Path(obj.config_path or DEFAULT_CONFIG_PATH)
    write_new_file(target, files.read(files.EXAMPLE_CONFIG))
    flag = "" if str(target) == DEFAULT_CONFIG_PATH else f" --config {target}"
    click.echo(
        f"wrote {target}: set [influitive] api_token and org_id, a [vendors.*] section and "
        f"your [[rewards]], then run `reward-poller{flag} check`.\n"
        f"To rehearse without live credentials first: `reward-poller{flag} sandbox "
        "--write-config` (docs/sandbox.md)."
    )


@click.group("deploy")
def deploy_group() -> None:
    """Files to run reward-poller as a service."""


def _install(target: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``target`` for another user to read (systemd, Prometheus): a file
    there with the same text is left as it is, one that differs is replaced only with
    ``force``."""
    if target.exists():
        if target.read_text(encoding="utf-8") == text:
            click.echo(f"unchanged {target}")
            return
        if not force:
            raise Failed(f"{target} exists and differs: not overwritten (--force replaces it)")
        target.write_text(text, encoding="utf-8")
    else:
        write_new_file(target, text, 0o644)
    os.chmod(target, 0o644)
    click.echo(f"wrote {target}")


@deploy_group.command("systemd")
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write the units into DIR (e.g. /etc/systemd/system) instead of printing "
                   "them. DIR must exist.")
@click.option("--create-prefix", is_flag=True,
              help="With --prefix: create DIR (and its parents) when it does not exist.")
@click.option("--force", is_flag=True, help="With --prefix: replace units that differ.")
@click.pass_obj
def deploy_systemd(obj: Context, prefix: Path | None, create_prefix: bool, force: bool) -> None:
    """The systemd units (daemon; or timer and one-shot service) for this install.

    ExecStart= names this install's reward-poller; the units hand the service the config
    file given with --config (default /etc/reward-poller/config.toml) and the secrets in the
    credentials/ folder beside it with LoadCredential=. Without --prefix the units go to
    stdout, each after a "### NAME" line.
    """
    from poller.release import files

    config_path = (str(Path(obj.config_path).absolute()) if obj.config_path
                   else files.SHIPPED_CONFIG)
    if prefix is not None and not prefix.is_dir() and not create_prefix:
        # A typo would otherwise leave the units where systemd never looks.
        raise click.BadParameter(
            f"{prefix} does not exist (a typo? systemd reads /etc/systemd/system); add "
            "--create-prefix to create it", param_hint="'--prefix'")
    units = files.render_all(config_path=config_path)
    for event, message, fields in files.warnings(config_path):
        stderr_line(event, message, level="warning", human=f"warning: {message}", **fields)
    if prefix is None:
        for name, text in units:
            click.echo(f"### {name}")
            click.echo(text)
        return
    prefix.mkdir(parents=True, exist_ok=True)
    for name, text in units:
        _install(prefix / name, text, force)
    click.echo("\nthen: systemctl daemon-reload && systemctl enable --now "
               "reward-poller.service   (or reward-poller-once.timer, not both; with the "
               "timer, reward-poller-audit.timer too)")


@deploy_group.command("prometheus")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Write the rules to PATH (e.g. /etc/prometheus/rules/reward-poller.yml) "
                   "instead of printing them.")
@click.option("--force", is_flag=True, help="With --output: replace a file that differs.")
def deploy_prometheus(output: Path | None, force: bool) -> None:
    """The Prometheus alert rules for reward-poller's metrics (docs/metrics.md).

    Without --output the rules go to stdout. A file that exists is never replaced unless
    --force (one with the same text is left as it is).
    """
    from poller.release import files

    rules = files.read(files.PROMETHEUS_RULES)
    if output is None:
        click.echo(rules, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    _install(output, rules, force)
    click.echo(f"\nthen: name it in rule_files of prometheus.yml, check it (promtool check rules "
               f"{output}) and reload Prometheus (systemctl reload prometheus)")


@click.group()
def db() -> None:
    """The ledger's database schema."""


def _in_schema(schema: str | None) -> str:
    return "" if schema is None else f" (PostgreSQL schema {schema})"


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: Context) -> None:
    """Create the ledger or run the Alembic migrations up to the newest, and say whether
    anything changed and between which revisions."""
    from poller.ledger.migrate import upgrade

    ledger = obj.config().ledger
    done = upgrade(ledger.url, schema=ledger.schema)
    if done.migrated:
        click.echo(f"ledger schema{_in_schema(ledger.schema)} migrated from revision "
                   f"{done.before or '(none)'} to {done.after}")
    else:
        click.echo(f"ledger schema{_in_schema(ledger.schema)} already at revision "
                   f"{done.after}: nothing to migrate")


@db.command("current")
@click.pass_obj
def db_current(obj: Context) -> None:
    """The ledger's schema revision, and whether it is the one this version needs
    (exit 1 when it is not)."""
    from poller.ledger.migrate import schema_revision

    ledger = obj.config().ledger
    state = schema_revision(ledger.url, schema=ledger.schema)
    where = _in_schema(ledger.schema)
    if state.current is None:
        raise Failed(f"the ledger{where} has no reward-poller tables yet (this version "
                     f"needs revision {state.head}): run `reward-poller db upgrade`")
    if state.at_head:
        click.echo(f"ledger schema{where} at revision {state.current} (head): up to date")
        return
    click.echo(f"ledger schema{where} at revision {state.current}; this version needs "
               f"{state.head}")
    if not state.known:
        raise Failed(f"revision {state.current} is newer than this version of "
                     "reward-poller knows: upgrade reward-poller")
    raise Failed("the ledger is behind: run `reward-poller db upgrade`")
