"""Edges of the command line met by people running it: a vendor host nothing answers on, a
``--vendor`` that names no vendor, a config file that is not there, a config path that is a
dangling symbolic link."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from poller.cli.main import cli
from tests.system.cli.conftest import Standins, run_cli
from tests.system.daemon.conftest import free_port

pytestmark = pytest.mark.e2e


def test_run_once_exits_1_naming_a_vendor_it_cannot_reach(standins: Standins) -> None:
    standins.seed(1, 2)
    config = standins.config()
    nobody = f"http://127.0.0.1:{free_port()}"  # connection refused
    config.write_text(config.read_text().replace(standins.tremendous_url, nobody))
    result = run_cli("run", "--run-once", config=config)
    assert result.returncode == 1, result.stderr
    last = json.loads(result.stderr.strip().splitlines()[-1])  # stderr is not a terminal
    assert last["event"] == "cli.failed"
    assert last["message"].startswith("vendor tremendous could not be reached (")
    assert "2 redemptions wait on it" in last["message"]
    assert "[vendors.tremendous]" in last["message"]
    # Nothing is given up on: both wait for a later run, which orders them once the vendor
    # answers again.
    rows = json.loads(run_cli("ledger", "list", "--json", config=config).stdout)
    assert {r["state"] for r in rows} == {"waiting"}
    assert standins.accepted() == {}


def test_ledger_list_with_a_vendor_nobody_configured_is_a_usage_error(
    standins: Standins,
) -> None:
    standins.seed(1)
    config = standins.config()
    assert run_cli("run", "--run-once", config=config).returncode == 0
    typo = run_cli("ledger", "list", "--vendor", "tremendos", config=config)
    assert typo.returncode == 2
    assert "configured vendors: tremendous" in typo.stderr
    assert "did you mean 'tremendous'?" in typo.stderr
    assert typo.stdout == ""
    other = run_cli("ledger", "list", "--vendor", "giftbit", "--json", config=config)
    assert other.returncode == 2 and "no vendor 'giftbit'" in other.stderr
    # A configured vendor with nothing ordered is an empty answer, not an error.
    standins.seed(2)
    none_yet = run_cli("ledger", "list", "--vendor", "tremendous", "--state", "new", "--json",
                       config=config)
    assert none_yet.returncode == 0 and json.loads(none_yet.stdout) == []


def test_a_missing_config_points_at_init(tmp_path: Path) -> None:
    missing = tmp_path / "config.toml"
    result = run_cli("status", config=missing)
    assert result.returncode == 2
    assert f"`reward-poller init {missing}`" in result.stderr
    assert "config.example.toml" not in result.stderr
    # And the hint works as written, with nothing but the installed package.
    assert run_cli("init", str(missing)).returncode == 0
    assert missing.is_file()


@pytest.mark.parametrize("command", [["init"], ["sandbox", "--write-config"]])
def test_a_dangling_symlink_is_never_written_through(tmp_path: Path, command: list[str]) -> None:
    link = tmp_path / "config.toml"
    elsewhere = tmp_path / "elsewhere" / "real.toml"
    elsewhere.parent.mkdir()
    os.symlink(elsewhere, link)
    result = CliRunner().invoke(cli, ["--config", str(link), *command])
    assert result.exit_code == 1, result.output
    assert (f"{link} is a symbolic link to {elsewhere}, which does not exist: not followed"
            in result.output)
    assert not elsewhere.exists() and link.is_symlink()
