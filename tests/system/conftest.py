"""What the deployment rehearsal needs from the machine: root (the documented steps run with
sudo), setpriv (util-linux) to start the units' commands as an unprivileged user, the
system's python3 with venv, promtool (Debian's prometheus) for the alert rules.

Locally a missing one skips the rehearsal, saying what is missing; under CI (``CI=true``)
it fails: .ci/run installs every one of them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.release.conftest import clean_env

SYSTEM_PYTHON = "/usr/bin/python3"
"""The interpreter the docs make the virtualenv with (``sudo python3 -m venv``): the
system's, which the units' dynamic user can run (a Python under a home directory it cannot)."""
SERVICE_USER = "nobody"


def require(ok: bool, what: str, who: str = "the deployment rehearsal") -> None:
    """Skip (locally) or fail (CI) when ``ok`` is false; ``what`` says what is missing."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{who} needs {what} (.ci/run installs it)")
    pytest.skip(f"{who} needs {what}")


def require_tool(name: str, package: str) -> str:
    found = shutil.which(name)
    require(found is not None, f"{name} (Debian: apt-get install {package})")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def host() -> None:
    """The rehearsal's prerequisites, checked once."""
    require(os.geteuid() == 0, "root, as the documented steps run with sudo")
    require_tool("setpriv", "util-linux")
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        require(False, f"the user {SERVICE_USER}")
    usable = Path(SYSTEM_PYTHON).is_file() and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys, ensurepip, venv; "
         "sys.exit(sys.version_info < (3, 11))"], capture_output=True, timeout=60,
    ).returncode == 0
    require(usable, f"{SYSTEM_PYTHON} 3.11 or newer with venv (Debian: python3-venv)")


def scratch_dir(parent: str) -> Path:
    """A new folder reward-poller-rehearsal-<random> in ``parent`` (/opt, /etc, /tmp), mode
    0755 like the folders the docs create there."""
    path = Path(tempfile.mkdtemp(prefix="reward-poller-rehearsal-", dir=parent))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def installed(host: None, built_wheel: Path) -> Iterator[Path]:
    """docs/deployment.md, "Install": a virtualenv of the system's python3 outside any home
    directory (/opt/reward-poller-rehearsal-<random> standing in for /opt/reward-poller),
    the wheel installed with its own pip. Returns the virtualenv; removed afterwards."""
    venv = scratch_dir("/opt")
    try:
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=300,
                       capture_output=True)
        result = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "--quiet",
             str(built_wheel)],
            capture_output=True, text=True, timeout=600, env=clean_env(),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield venv
    finally:
        shutil.rmtree(venv, ignore_errors=True)
