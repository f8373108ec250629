"""Settings shared by every test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests judge correctness, not speed: on a loaded 2-core CI machine input generation
# can be slow, and a timing health check would fail a correct run.
settings.register_profile(
    "reward-poller",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("reward-poller")


# --- the built package, shared by the tests that install it -------------------------------

SHIPPED = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "CHANGELOG.md",
           "config.example.toml", "deploy", "migrations", "poller")
"""What the build reads: copied out of the checkout, so building leaves nothing in it."""


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reward-poller built as a wheel, once per test session (the install tests install it
    into virtualenvs of their own)."""
    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SHIPPED:
        path = root / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    builder = base / "builder"
    subprocess.run([sys.executable, "-m", "venv", str(builder)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}
    result = subprocess.run(
        [str(builder / "bin" / "python"), "-m", "pip", "wheel", "--disable-pip-version-check",
         "--quiet", "--no-deps", "--wheel-dir", str(base / "dist"), str(source)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (base / "dist").glob("reward_poller-*.whl")
    return wheel
