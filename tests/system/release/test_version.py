"""One version everywhere: pyproject.toml, ``poller.__version__``, ``reward-poller --version``
and the newest released section of CHANGELOG.md agree, and an install command in the README
or docs/ that names a release tag names that version, and a tag this repository has."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from click.testing import CliRunner

import poller
from poller.cli.main import cli

ROOT = Path(__file__).resolve().parents[3]

RELEASED = re.compile(r"^## \[(\d+\.\d+\.\d+)\]", re.MULTILINE)
"""A released section's heading, ``## [0.1.0] - 2026-11-21`` (not ``## [Unreleased]``)."""

NAMED_TAG = re.compile(r"(?:@|--branch[ =]|checkout |/tree/|/releases/tag/|/archive/)"
                       r"v(\d+\.\d+\.\d+)\b")
"""A concrete release tag where an install command or a download names one (``@v1.2.3`` in a
pip requirement, ``git clone --branch v1.2.3``...); ``vX.Y.Z`` as a placeholder is not."""


def pyproject_version() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def test_the_package_the_command_and_the_changelog_name_one_version() -> None:
    version = pyproject_version()
    assert poller.__version__ == version
    shown = CliRunner().invoke(cli, ["--version"])
    assert shown.exit_code == 0
    assert shown.output.split() == ["reward-poller,", "version", version]
    released = RELEASED.findall((ROOT / "CHANGELOG.md").read_text())
    assert released, "CHANGELOG.md has no released version"
    assert released[0] == version, f"newest release in CHANGELOG.md: {released[0]}"


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _git_tags() -> set[str] | None:
    """The repository's tags; None for a source tree without git metadata (an sdist)."""
    if not (ROOT / ".git").exists():
        return None
    found = subprocess.run(["git", "-C", str(ROOT), "tag", "--list"], capture_output=True,
                           text=True, timeout=30, check=True)
    return set(found.stdout.split())


def test_install_commands_name_only_the_current_release_tag_and_only_one_that_exists() -> None:
    version = pyproject_version()
    tags = _git_tags()
    wrong = []
    for document in _documents():
        for number, line in enumerate(document.read_text().splitlines(), 1):
            for named in NAMED_TAG.findall(line):
                where = f"{document.relative_to(ROOT)}:{number}: v{named}"
                if named != version:
                    wrong.append(f"{where} is not the version, {version}")
                elif tags is not None and f"v{named}" not in tags:
                    wrong.append(f"{where} is not a tag of this repository (install from a "
                                 "checkout or a wheel until it is published)")
    assert wrong == []


def test_the_tag_pattern_finds_what_an_install_command_names() -> None:
    """The check above sees the forms an install command takes, and not a placeholder."""
    named = [NAMED_TAG.findall(line) for line in (
        "pip install 'reward-poller @ git+https://github.com/o/reward-poller@v1.2.3'",
        "git clone --branch v1.2.3 https://github.com/o/reward-poller",
        "git checkout v1.2.3",
        "https://github.com/o/reward-poller/releases/tag/v1.2.3",
        "a release tag (`@vX.Y.Z`) once published",
    )]
    assert named == [["1.2.3"], ["1.2.3"], ["1.2.3"], ["1.2.3"], []]
