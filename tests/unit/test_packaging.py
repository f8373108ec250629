"""What the wheel ships: every package of the source tree (setuptools lists them by hand in
pyproject.toml; a package left out is missing from an install, not from a checkout)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_of_the_tree_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    tree = {".".join(init.parent.relative_to(ROOT).parts)
            for init in (ROOT / "poller").rglob("__init__.py")
            if "__pycache__" not in init.parts}
    assert tree - listed == set()
    assert "poller.ledger.sql" in listed
