"""``reward-poller demo``: its help names every service, and its closing hint holds: with
``--keep`` every command it prints works afterwards; without, it sends nobody to a ledger
that is gone."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from tests.system.release.conftest import cli

pytestmark = pytest.mark.e2e


def test_demo_help_names_all_six_services(tmp_path: Path) -> None:
    result = cli("demo", "--help", cwd=tmp_path)
    text = " ".join(result.stdout.split())
    for name in ("Influitive", "Tremendous", "Tango Card", "Giftbit", "HTTP vendor",
                 "manual"):
        assert name in text


def test_demo_keep_prints_commands_that_work_afterwards(tmp_path: Path) -> None:
    result = cli("demo", "--keep", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("kept: "))
    commands = [line.strip() for line in lines[start + 1:] if line.startswith("  reward-poller ")]
    assert len(commands) >= 3
    kept = Path(lines[start].split()[1])
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        for command in commands:
            args = shlex.split(command)[1:]
            ran = cli(*args, cwd=elsewhere)
            assert ran.returncode == 0, f"{command}: {ran.stdout}{ran.stderr}"
            assert ran.stdout.strip()
        held = cli(*shlex.split(commands[1])[1:], cwd=elsewhere)
        assert "4815" in held.stdout and "4818" in held.stdout
        assert list(elsewhere.iterdir()) == []  # no stray ledger was created
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_demo_without_keep_points_to_keep_and_the_sandbox(tmp_path: Path) -> None:
    result = cli("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ledger list --state held" not in result.stdout
    assert "demo --keep" in result.stdout
    assert "sandbox" in result.stdout
    assert "--config" not in result.stdout
