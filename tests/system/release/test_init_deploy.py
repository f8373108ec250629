"""``init``, ``deploy systemd`` and ``db upgrade``/``db current`` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from poller.cli.main import cli
from poller.config import load_config
from poller.ledger import migrate
from poller.release import files

ROOT = Path(__file__).resolve().parents[3]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- the shipped files -------------------------------------------------------------------


def test_the_shipped_files_are_the_repository_files() -> None:
    """One place: what the package ships is read from the top-level files (a wheel carries
    copies made at build time, checked in tests/system/release/test_fresh_install.py)."""
    assert files.example_config() == (ROOT / "config.example.toml").read_text()
    assert set(files.UNITS) == {p.name for p in (ROOT / "deploy" / "systemd").iterdir()}
    for unit in files.UNITS:
        assert files.read(f"systemd/{unit}") == (ROOT / "deploy" / "systemd" / unit).read_text()
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert files.read(files.PROMETHEUS_RULES) == rules


# --- init ----------------------------------------------------------------------------------


def test_init_writes_the_example_config_readable_by_its_owner_only(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path / "config.toml"))
    assert result.exit_code == 0, result.output
    written = tmp_path / "config.toml"
    assert written.read_text() == (ROOT / "config.example.toml").read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert "check" in result.output
    tomllib.loads(written.read_text())  # valid TOML as written


def test_init_defaults_to_config_toml_or_the_config_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("init").exit_code == 0
    assert (tmp_path / "config.toml").is_file()
    assert invoke("--config", "other.toml", "init").exit_code == 0
    assert (tmp_path / "other.toml").is_file()


def test_init_refuses_to_overwrite_and_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("# mine\n")
    result = CliRunner().invoke(cli, ["init", str(target)])
    assert result.exit_code == 1
    assert str(target) in result.output
    assert "not overwritten" in result.output
    assert target.read_text() == "# mine\n"


def test_the_written_config_loads(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    assert invoke("init", str(target)).exit_code == 0
    config = load_config(target)
    assert "tremendous" in config.vendors
    assert config.rewards


# --- deploy systemd ------------------------------------------------------------------------


def test_deploy_systemd_prints_every_unit_with_this_installs_paths() -> None:
    result = invoke("deploy", "systemd")
    assert result.exit_code == 0, result.output
    names = [line[4:] for line in result.output.splitlines() if line.startswith("### ")]
    assert names == list(files.UNITS)
    executable = files.executable()
    assert Path(executable).is_file()
    assert executable.startswith(sys.prefix) or shutil.which("reward-poller") == executable
    assert files.SHIPPED_EXECUTABLE not in result.output
    # systemd reads the root-only configuration and hands the service a copy of its own.
    from_credentials = "--config ${CREDENTIALS_DIRECTORY}/config.toml"
    assert f"ExecStart={executable} {from_credentials} run\n" in result.output
    assert f"ExecStart={executable} {from_credentials} run --run-once\n" in result.output
    assert f"ExecStart={executable} {from_credentials} audit\n" in result.output
    assert result.output.count(
        "\nLoadCredential=config.toml:/etc/reward-poller/config.toml\n") == 3
    assert sys.prefix in result.output


def test_deploy_systemd_loads_the_config_option_and_the_credentials_beside_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "etc" / "config.toml"
    result = invoke("--config", str(config), "deploy", "systemd")
    creds = tmp_path / "etc" / "credentials"
    for line in (f"LoadCredential=config.toml:{config}",
                 f"LoadCredential=influitive-token:{creds}/influitive-token",
                 f"LoadCredential=tremendous-api-key:{creds}/tremendous-api-key",
                 f"# LoadCredential=alerts-webhook:{creds}/alerts-webhook"):
        assert result.output.count(f"\n{line}\n") == 3, line
    assert "/etc/reward-poller" not in result.output.replace(
        "needs no access to /etc/reward-poller", "")
    assert "--config ${CREDENTIALS_DIRECTORY}/config.toml run\n" in result.output


def test_a_percent_sign_in_a_path_is_not_a_specifier(tmp_path: Path) -> None:
    config = tmp_path / "100%" / "config.toml"
    unit = files.render("reward-poller.service", config_path=str(config)).text
    assert f"LoadCredential=config.toml:{tmp_path}/100%%/config.toml\n" in unit


def test_deploy_systemd_writes_the_units_and_never_replaces_a_changed_one(
    tmp_path: Path,
) -> None:
    target = tmp_path / "units"
    target.mkdir()
    first = invoke("deploy", "systemd", "--prefix", str(target))
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in target.iterdir()) == sorted(files.UNITS)
    printed = invoke("deploy", "systemd").output
    for unit in files.UNITS:
        text = (target / unit).read_text()
        assert f"### {unit}\n{text}" in printed
    assert "unchanged" in invoke("deploy", "systemd", "--prefix", str(target)).output

    changed = target / "reward-poller.service"
    changed.write_text(changed.read_text() + "# mine\n")
    refused = CliRunner().invoke(cli, ["deploy", "systemd", "--prefix", str(target)])
    assert refused.exit_code == 1
    assert str(changed) in refused.output
    assert changed.read_text().endswith("# mine\n")
    forced = invoke("deploy", "systemd", "--prefix", str(target), "--force")
    assert forced.exit_code == 0
    assert not changed.read_text().endswith("# mine\n")


def test_a_prefix_that_does_not_exist_is_refused_unless_asked_to_create_it(
    tmp_path: Path,
) -> None:
    typo = tmp_path / "etc" / "systemd" / "sytsem"
    refused = CliRunner().invoke(cli, ["deploy", "systemd", "--prefix", str(typo)])
    assert refused.exit_code == 2
    assert f"{typo} does not exist" in refused.output
    assert "--create-prefix" in refused.output
    assert not typo.exists() and not typo.parent.exists()
    created = invoke("deploy", "systemd", "--prefix", str(typo), "--create-prefix")
    assert created.exit_code == 0, created.output
    assert sorted(p.name for p in typo.iterdir()) == sorted(files.UNITS)


def test_a_home_directory_install_is_warned_about() -> None:
    for path in ("/home/ada/.local/bin/reward-poller", "/root/.local/bin/reward-poller"):
        assert "ProtectHome=yes" in (files.sandbox_problem(path) or "")
    assert files.sandbox_problem("/opt/reward-poller/bin/reward-poller") is None
    assert files.sandbox_problem("/homestead/bin/reward-poller") is None


@pytest.mark.parametrize(("path", "unit_setting"), [
    ("/home/ada/venv/bin/reward-poller", "ProtectHome=yes"),
    ("/run/user/1000/reward-poller", "ProtectHome=yes"),
    ("/tmp/venv/bin/reward-poller", "PrivateTmp=yes"),
    ("/var/tmp/reward-poller.db", "PrivateTmp=yes"),
    ("/opt/reward-poller/bin/reward-poller", None),
    ("/var/lib/reward-poller/reward-poller.db", None),
    ("/tmpfs/reward-poller", None),
])
def test_what_the_units_sandbox_hides(path: str, unit_setting: str | None) -> None:
    problem = files.sandbox_problem(path)
    assert (problem is None) == (unit_setting is None)
    if unit_setting:
        assert unit_setting in (problem or "")


def _deploy_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, executable: str,
                 interpreter: str, config: str | None) -> Result:
    monkeypatch.setattr(files, "executable", lambda: executable)
    monkeypatch.setattr(files.sys, "executable", interpreter)
    path = tmp_path / "config.toml"
    if config is not None:
        path.write_text(config)
    return CliRunner().invoke(cli, ["--config", str(path), "deploy", "systemd"])


def test_install_ledger_and_textfile_paths_the_units_hide_are_warned_about(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    result = _deploy_with(
        monkeypatch, tmp_path, executable="/tmp/venv/bin/reward-poller",
        interpreter="/root/.pyenv/versions/3.11.7/bin/python3.11",
        config='[ledger]\nurl = "sqlite:////var/tmp/rp/reward-poller.db"\n'
               '[metrics]\ntextfile = "/home/ada/metrics/reward-poller.prom"\n',
    )
    assert result.exit_code == 0, result.output
    assert _warnings(result.output) == [
        "warning: the executable /tmp/venv/bin/reward-poller is under /tmp, which the service "
        "sees as an empty folder of its own (PrivateTmp=yes): install reward-poller outside "
        "it, e.g. into /opt/reward-poller (docs/deployment.md)",
        "warning: the Python interpreter /root/.pyenv/versions/3.11.7/bin/python3.11 is under "
        "/root, which the units hide from the service (ProtectHome=yes): install "
        "reward-poller outside it, e.g. into /opt/reward-poller, made with the system's "
        "python3 (docs/deployment.md)",
        "warning: the SQLite ledger ([ledger] url) /var/tmp/rp/reward-poller.db is under "
        "/var/tmp, which the service sees as an empty folder of its own (PrivateTmp=yes): "
        'keep it in the state directory: url = "sqlite:///reward-poller.db" '
        "(docs/deployment.md)",
        "warning: the metrics textfile ([metrics] textfile) /home/ada/metrics/reward-poller.prom"
        " is under /home, which the units hide from the service (ProtectHome=yes): write it "
        "into node_exporter's textfile collector folder (docs/deployment.md)",
    ]


def _warnings(output: str) -> list[str]:
    """The warnings as a terminal shows them; off one (as here) each is a JSON line."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record["level"] == "warning":
                found.append(f"warning: {record['message']}")
        elif line.startswith("warning:"):
            found.append(line)
    return found


def test_a_config_anywhere_and_a_relative_ledger_are_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """The configuration reaches the service through LoadCredential=, which systemd reads
    before the sandbox applies: a config under /tmp (tmp_path) is fine."""
    result = _deploy_with(
        monkeypatch, tmp_path, executable="/opt/reward-poller/bin/reward-poller",
        interpreter="/usr/bin/python3.11",
        config='[ledger]\nurl = "sqlite:///reward-poller.db"\n',
    )
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_a_missing_config_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """systemd refuses to start a unit whose LoadCredential= file is missing."""
    result = _deploy_with(
        monkeypatch, tmp_path, executable="/opt/reward-poller/bin/reward-poller",
        interpreter="/usr/bin/python3.11", config=None,
    )
    assert result.exit_code == 0, result.output
    assert (f"warning: {tmp_path / 'config.toml'} does not exist: the service cannot start "
            "until it does (reward-poller init)") in _warnings(result.output)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_the_written_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify checks that ExecStart='s executable exists: the rendered path is real."""
    assert invoke("deploy", "systemd", "--prefix", str(tmp_path)).exit_code == 0
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u) for u in files.UNITS)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


# --- deploy prometheus ---------------------------------------------------------------------


def test_deploy_prometheus_prints_the_shipped_rules() -> None:
    result = invoke("deploy", "prometheus")
    assert result.exit_code == 0, result.output
    assert result.output == (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert "alert: RewardPollerOperatorFacingErrors" in result.output


def test_deploy_prometheus_writes_the_rules_and_never_replaces_a_changed_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "rules" / "reward-poller.yml"
    old_umask = os.umask(0o077)
    try:
        first = invoke("deploy", "prometheus", "--output", str(target))
    finally:
        os.umask(old_umask)
    assert first.exit_code == 0, first.output
    assert f"wrote {target}" in first.output
    assert target.read_text() == files.read(files.PROMETHEUS_RULES)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # Prometheus runs as another user
    assert f"unchanged {target}" in invoke("deploy", "prometheus", "--output",
                                           str(target)).output

    target.write_text(target.read_text() + "# mine\n")
    refused = CliRunner().invoke(cli, ["deploy", "prometheus", "--output", str(target)])
    assert refused.exit_code == 1
    assert str(target) in refused.output and "--force" in refused.output
    assert target.read_text().endswith("# mine\n")
    forced = invoke("deploy", "prometheus", "--output", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    assert target.read_text() == files.read(files.PROMETHEUS_RULES)


# --- db upgrade / db current ---------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[influitive]
api_token = "t"
org_id = "o"

[ledger]
url = "sqlite:///{tmp_path / 'ledger.db'}"
""")
    return path


def test_db_upgrade_says_whether_it_migrated_and_from_where(tmp_path: Path) -> None:
    config = _config(tmp_path)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate.upgrade(url, "0001")
    first = invoke("--config", str(config), "db", "upgrade")
    assert first.exit_code == 0
    assert f"migrated from revision 0001 to {migrate.head()}" in first.output
    again = invoke("--config", str(config), "db", "upgrade")
    assert again.exit_code == 0
    assert f"already at revision {migrate.head()}: nothing to migrate" in again.output


def test_db_upgrade_of_an_empty_database(tmp_path: Path) -> None:
    result = invoke("--config", str(_config(tmp_path)), "db", "upgrade")
    assert f"migrated from revision (none) to {migrate.head()}" in result.output


def test_db_current(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    runner = CliRunner()

    empty = runner.invoke(cli, ["--config", config, "db", "current"])
    assert empty.exit_code == 1
    assert "no reward-poller tables" in empty.output

    migrate.upgrade(url, "0001")
    behind = runner.invoke(cli, ["--config", config, "db", "current"])
    assert behind.exit_code == 1
    assert f"at revision 0001; this version needs {migrate.head()}" in behind.output
    assert "db upgrade" in behind.output

    migrate.upgrade(url)
    current = runner.invoke(cli, ["--config", config, "db", "current"])
    assert current.exit_code == 0
    assert f"at revision {migrate.head()} (head): up to date" in current.output


def test_db_current_of_a_ledger_migrated_by_a_newer_version(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate.upgrade(url)
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    result = CliRunner().invoke(cli, ["--config", config, "db", "current"])
    assert result.exit_code == 1
    assert "newer than this version" in result.output
