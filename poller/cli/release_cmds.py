"""``init``, ``deploy systemd``, ``deploy prometheus`` and ``db current``: putting an install
in place.

Like the other command modules, nothing heavy is imported at import time; main.py only
registers the commands (and ``db upgrade`` in ``poller.cli.db`` calls ``report_upgrade``).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from poller.cli.context import Context, Failed, handled, write_new_file
from poller.logs import stderr_line


def _failed(message: str) -> click.ClickException:
    return Failed(message)


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
    try:
        text = files.example_config()
    except files.MissingPackageData as exc:
        raise _failed(str(exc)) from None
    write_new_file(target, text)
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
    from poller.release import deploy, files

    config_path = (str(Path(obj.config_path).absolute()) if obj.config_path
                   else deploy.SHIPPED_CONFIG)
    if prefix is not None and not prefix.is_dir() and not create_prefix:
        # A typo would otherwise leave the units where systemd never looks.
        raise click.BadParameter(
            f"{prefix} does not exist (a typo? systemd reads /etc/systemd/system); add "
            "--create-prefix to create it", param_hint="'--prefix'")
    try:
        units = deploy.render_all(config_path=config_path)
    except files.MissingPackageData as exc:
        raise _failed(str(exc)) from None
    _warn_about_paths(config_path)
    if prefix is None:
        for unit in units:
            click.echo(f"### {unit.name}")
            click.echo(unit.text)
        return
    prefix.mkdir(parents=True, exist_ok=True)
    for unit in units:
        target = prefix / unit.name
        if target.exists():
            if target.read_text(encoding="utf-8") == unit.text:
                click.echo(f"unchanged {target}")
                continue
            if not force:
                raise _failed(f"{target} exists and differs: not overwritten (--force "
                              "replaces it)")
        target.write_text(unit.text, encoding="utf-8")
        os.chmod(target, 0o644)
        click.echo(f"wrote {target}")
    click.echo("\nthen: systemctl daemon-reload && systemctl enable --now "
               "reward-poller.service   (or reward-poller-once.timer, not both; with the "
               "timer, reward-poller-audit.timer too)")


def _warn_about_paths(config_path: str) -> None:
    """Warn (stderr) about what would keep the service from starting or from its files: a
    missing configuration (systemd refuses to start a unit whose LoadCredential= file is
    missing), an install, ledger or textfile the units' sandbox hides."""
    import tomllib

    from poller.release import deploy

    paths = deploy.install_paths()
    config = Path(config_path)
    try:
        with config.open("rb") as fh:
            paths += deploy.config_paths(tomllib.load(fh))
    except FileNotFoundError:
        warning = (f"{config} does not exist: the service cannot start until it does "
                   "(reward-poller init)")
        stderr_line("deploy.config.missing", warning, level="warning",
                    human=f"warning: {warning}", config=str(config))
    except (OSError, tomllib.TOMLDecodeError):
        pass  # `check` and the service's start name what is wrong with it
    for line in deploy.path_warnings(paths):
        stderr_line("deploy.path.hidden", line.removeprefix("warning: "), level="warning",
                    human=line)


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

    try:
        rules = files.prometheus_rules()
    except files.MissingPackageData as exc:
        raise _failed(str(exc)) from None
    if output is None:
        click.echo(rules, nl=False)
        return
    if output.exists():
        if output.read_text(encoding="utf-8") == rules:
            click.echo(f"unchanged {output}")
            return
        if not force:
            raise _failed(f"{output} exists and differs: not overwritten (--force replaces "
                          "it)")
        output.write_text(rules, encoding="utf-8")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_new_file(output, rules, 0o644)
    os.chmod(output, 0o644)  # Prometheus runs as its own user
    click.echo(f"wrote {output}")
    click.echo(f"\nthen: name it in rule_files of prometheus.yml, check it (promtool check rules "
               f"{output}) and reload Prometheus (systemctl reload prometheus)")


def _in_schema(schema: str | None) -> str:
    return "" if schema is None else f" (PostgreSQL schema {schema})"


def report_upgrade(url: str, schema: str | None = None) -> None:
    """``db upgrade``: create the ``[ledger] schema`` if it is set and missing, migrate, and
    say whether anything changed and between which revisions."""
    from poller.ledger.migrate import upgrade

    done = upgrade(url, schema=schema)
    if done.migrated:
        click.echo(f"ledger schema{_in_schema(schema)} migrated from revision "
                   f"{done.before or '(none)'} to {done.after}")
    else:
        click.echo(f"ledger schema{_in_schema(schema)} already at revision {done.after}: "
                   "nothing to migrate")


@click.command("current")
@click.pass_obj
def db_current(obj: Context) -> None:
    """The ledger's schema revision, and whether it is the one this version needs
    (exit 1 when it is not)."""
    from poller.ledger.migrate import schema_revision

    def show() -> None:
        ledger = obj.config().ledger
        state = schema_revision(ledger.url, schema=ledger.schema)
        where = _in_schema(ledger.schema)
        if state.current is None:
            raise _failed(f"the ledger{where} has no reward-poller tables yet (this version "
                          f"needs revision {state.head}): run `reward-poller db upgrade`")
        if state.at_head:
            click.echo(f"ledger schema{where} at revision {state.current} (head): up to date")
            return
        click.echo(f"ledger schema{where} at revision {state.current}; this version needs "
                   f"{state.head}")
        if not state.known:
            raise _failed(f"revision {state.current} is newer than this version of "
                          "reward-poller knows: upgrade reward-poller")
        raise _failed("the ledger is behind: run `reward-poller db upgrade`")

    handled(show)()
