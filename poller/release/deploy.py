"""``reward-poller deploy systemd``: the shipped units, with this install's paths in them.

The units in the repository name ``/opt/reward-poller/bin/reward-poller`` (the install the
docs suggest); rendering puts the executable of the running install there instead, and the
configuration file the operator chose, so what is written can be enabled as it is.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from poller import __version__
from poller.release import files

SHIPPED_EXECUTABLE = "/opt/reward-poller/bin/reward-poller"
SHIPPED_CONFIG = "/etc/reward-poller/config.toml"
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")


@dataclass(frozen=True)
class RenderedUnit:
    name: str
    text: str


def executable() -> str:
    """This install's ``reward-poller`` script (a venv's or pipx's ``bin/``), or, when it has
    none (a source checkout run with ``python -m poller``), this interpreter."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.prefix) / "bin"):
        script = folder / "reward-poller"
        if script.is_file():
            return str(script.absolute())
    found = shutil.which("reward-poller")
    if found:
        return str(Path(found).absolute())
    return str(Path(sys.executable).absolute())


def command() -> str:
    """How systemd should start this install (ExecStart='s first words)."""
    found = executable()
    if Path(found).name == "reward-poller":
        return _quote(found)
    return f"{_quote(found)} -m poller"


def _quote(path: str) -> str:
    # systemd.service(5) splits ExecStart= like a shell would, quotes included.
    return shlex.quote(path)


def render(name: str, *, config_path: str = SHIPPED_CONFIG) -> RenderedUnit:
    text = files.unit(name)
    header = (
        f"# Written by `reward-poller deploy systemd` (reward-poller {__version__}, "
        f"installed in {sys.prefix}).\n"
    )
    if "ExecStart=" in text:
        if SHIPPED_EXECUTABLE not in text:
            raise files.MissingPackageData(
                f"{name}: ExecStart= does not name {SHIPPED_EXECUTABLE}; the shipped unit "
                "was changed and cannot be rendered"
            )
        text = text.replace(SHIPPED_EXECUTABLE, command())
        text = text.replace(f"--config {SHIPPED_CONFIG}", f"--config {_quote(config_path)}")
    return RenderedUnit(name=name, text=header + text)


def render_all(*, config_path: str = SHIPPED_CONFIG) -> list[RenderedUnit]:
    return [render(name, config_path=config_path) for name in files.UNITS]


def hidden_from_units(path: str) -> bool:
    """True when the units' ``ProtectHome=yes`` hides ``path`` from the service."""
    return any(path == top or path.startswith(top + "/") for top in HIDDEN_BY_PROTECT_HOME)
