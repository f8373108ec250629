"""The acceptance test of a release: the built wheel installed into a new virtualenv (not
editable), then, from a folder with no file of the repository, ``reward-poller init`` and
``reward-poller sandbox`` in one process, ``reward-poller check`` and ``reward-poller run
--run-once`` in another; ``deploy systemd`` and ``deploy prometheus`` print what the wheel
ships."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from poller.release import files
from tests.system.release.conftest import clean_env, cli, free_port_base, read_until, start, stop

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def installed(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the built wheel installed (tests/conftest.py). Returns its
    bin/ folder."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
         "--quiet", str(built_wheel)],
        capture_output=True, text=True, timeout=600, env=clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return venv / "bin"


def site_packages(bin_dir: Path) -> Path:
    found = subprocess.run(
        [str(bin_dir / "python"), "-c", "import poller, pathlib; "
         "print(pathlib.Path(poller.__file__).parent)"],
        capture_output=True, text=True, check=True, cwd=bin_dir, env=clean_env())
    return Path(found.stdout.strip())


def test_the_wheel_ships_the_example_config_the_units_and_the_alert_rules(
    installed: Path,
) -> None:
    package = site_packages(installed)
    assert "site-packages" in str(package)  # the installed copy, not the checkout
    data = package / "release" / "data"
    assert (data / "config.example.toml").read_text() == files.example_config()
    for unit in files.UNITS:
        assert (data / "systemd" / unit).read_text() == files.read(f"systemd/{unit}")
    assert (data / "prometheus" / "alerts.yml").read_text() == (
        ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert (package / "migrations" / "versions").is_dir()


def test_the_wheel_ships_the_consoles_templates_and_stylesheet(installed: Path) -> None:
    """The console renders from files, not code: each template and the stylesheet must be
    in the wheel, as they are in the source tree."""
    package = site_packages(installed)
    source = ROOT / "poller" / "console"
    shipped = sorted(p.relative_to(source) for p in source.rglob("*")
                     if p.suffix in {".html", ".css"})
    assert shipped, "the console has templates and a stylesheet in the source tree"
    for name in shipped:
        assert (package / "console" / name).read_bytes() == (source / name).read_bytes()


def test_init_sandbox_check_run_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    exe = [str(installed / "reward-poller")]
    here = tmp_path / "rehearsal"
    here.mkdir()

    init = cli("init", cwd=here, command=exe)
    assert init.returncode == 0, init.stderr
    assert (here / "config.toml").read_text() == files.example_config()

    base = free_port_base()
    sandbox = start("sandbox", "--write-config", "--port-base", str(base), cwd=here,
                    command=exe)
    try:
        read_until(sandbox, lambda line: line.startswith("ready;"), timeout=120)

        check = cli("check", cwd=here, command=exe)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "all checks passed" in check.stdout

        run = cli("run", "--run-once", cwd=here, command=exe)
        assert run.returncode == 0, run.stdout + run.stderr

        listed = cli("ledger", "list", "--json", cwd=here, command=exe)
        assert listed.returncode == 0, listed.stderr
        states = {r["redemption_id"]: r["state"] for r in json.loads(listed.stdout)}
        assert states["4812"] == "fulfilled"
        assert states["4815"] == "held"

        current = cli("db", "current", cwd=here, command=exe)
        assert current.returncode == 0, current.stdout + current.stderr
    finally:
        stop(sandbox)

    units = cli("deploy", "systemd", cwd=here, command=exe)
    assert units.returncode == 0, units.stderr
    assert f"ExecStart={installed / 'reward-poller'} --config " in units.stdout
    rules = cli("deploy", "prometheus", cwd=here, command=exe)
    assert rules.returncode == 0, rules.stderr
    assert rules.stdout == (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    version = cli("--version", cwd=here, command=exe)
    assert version.stdout.split()[-1] == tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert sorted(p.name for p in here.iterdir()) == ["config.toml", "reward-poller.db"]
