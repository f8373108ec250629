"""The files shipped inside the package (the example configuration, the systemd units, the
Prometheus alert rules) and the units rendered for this install (``deploy systemd``).

The files live once in the repository, at the top level, and the build (``setup.py``) copies
them into ``poller/release/data/`` of the wheel; an editable install has no such copy and
reads them from the checkout.

The shipped units name ``/opt/reward-poller/bin/reward-poller`` and ``/etc/reward-poller/``;
rendering puts there the executable of the running install, the configuration file the
operator chose and the ``credentials/`` folder beside it, so what is written can be enabled
as it is. The service reads its configuration through ``LoadCredential=``, so that path is
never hidden by the units' sandbox; the paths the service opens itself (the install, a
SQLite ledger, the metrics textfile) can be, and are warned about (docs/deployment.md).
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import sysconfig
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from poller import __version__
from poller.domain.errors import PollerError

EXAMPLE_CONFIG = "config.example.toml"
UNITS = ("reward-poller.service", "reward-poller-once.service", "reward-poller-once.timer",
         "reward-poller-audit.service", "reward-poller-audit.timer")  # as deploy prints them
PROMETHEUS_RULES = "prometheus/alerts.yml"

SOURCES: dict[str, str] = {
    EXAMPLE_CONFIG: "config.example.toml",
    **{f"systemd/{unit}": f"deploy/systemd/{unit}" for unit in UNITS},
    PROMETHEUS_RULES: "deploy/prometheus/alerts.yml",
}
"""Package data name -> the file in the repository it is copied from (``setup.py``)."""


class MissingPackageData(PollerError):
    """A shipped file is missing: the install is broken."""


def read(name: str) -> str:
    """The text of a shipped file, by its package data name (``systemd/<unit>`` for a unit)."""
    packaged = resources.files("poller.release").joinpath("data", *name.split("/"))
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / SOURCES[name]
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise MissingPackageData(
        f"{name} is not in this install of reward-poller (looked in {packaged} and "
        f"{checkout}): reinstall it"
    )


def example_config() -> str:
    return read(EXAMPLE_CONFIG)


SHIPPED_EXECUTABLE = "/opt/reward-poller/bin/reward-poller"
SHIPPED_CONFIG = "/etc/reward-poller/config.toml"
SHIPPED_CREDENTIALS = "/etc/reward-poller/credentials/"
SANDBOXED = {
    **dict.fromkeys(("/home", "/root", "/run/user"),
                    "which the units hide from the service (ProtectHome=yes)"),
    **dict.fromkeys(("/tmp", "/var/tmp"),
                    "which the service sees as an empty folder of its own (PrivateTmp=yes)"),
}
"""Where the units' sandbox keeps the service from a path: hidden, or a private folder whose
files are gone when the service stops."""
INSTALL_ADVICE = "install reward-poller outside it, e.g. into /opt/reward-poller"
_SQLITE_FILE = re.compile(r"sqlite(?:\+\w+)?:///([^?]+)")  # sqlite:////absolute.db's file


class RenderedUnit(NamedTuple):
    name: str
    text: str


def executable() -> str:
    """This install's ``reward-poller`` script (a venv's or pipx's ``bin/``), or, when it has
    none (a source checkout run with ``python -m poller``), this interpreter."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.prefix) / "bin"):
        if (folder / "reward-poller").is_file():
            return str((folder / "reward-poller").absolute())
    found = shutil.which("reward-poller") or sys.executable
    return str(Path(found).absolute())


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")  # "%" starts a specifier (systemd.unit(5)), "%%" is one


def render(name: str, *, config_path: str = SHIPPED_CONFIG) -> RenderedUnit:
    text = read(f"systemd/{name}")
    if "ExecStart=" in text:
        if SHIPPED_EXECUTABLE not in text or f"config.toml:{SHIPPED_CONFIG}" not in text:
            raise MissingPackageData(
                f"{name}: ExecStart= does not name {SHIPPED_EXECUTABLE} or no LoadCredential= "
                "loads the configuration; the shipped unit was changed and cannot be rendered"
            )
        # systemd.service(5) splits ExecStart= like a shell would, quotes included.
        found = executable()
        command = _specifiers(shlex.quote(found))
        text = text.replace(SHIPPED_EXECUTABLE, command if Path(found).name == "reward-poller"
                            else f"{command} -m poller")
        # LoadCredential= (commented out or not) takes the rest of the line as the path: no
        # shell quoting, specifiers on.
        credentials = str(Path(config_path).parent / "credentials") + "/"
        text = "".join(
            line.replace(f":{SHIPPED_CONFIG}", f":{_specifiers(config_path)}").replace(
                f":{SHIPPED_CREDENTIALS}", f":{_specifiers(credentials)}")
            if line.lstrip("# ").startswith("LoadCredential=") else line
            for line in text.splitlines(keepends=True))
    return RenderedUnit(name, f"# Written by `reward-poller deploy systemd` (reward-poller "
                              f"{__version__}, installed in {sys.prefix}).\n{text}")


def render_all(*, config_path: str = SHIPPED_CONFIG) -> list[RenderedUnit]:
    return [render(name, config_path=config_path) for name in UNITS]


def sandbox_problem(path: str) -> str | None:
    """Why the units' sandbox keeps the service from ``path``, or None."""
    top = next((top for top in SANDBOXED if path == top or path.startswith(top + "/")), None)
    return None if top is None else f"is under {top}, {SANDBOXED[top]}"


def config_paths(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, path, advice) for the paths a configuration's raw TOML names that the service
    opens itself, when absolute (a relative ledger path is in the state directory,
    WorkingDirectory=)."""
    found = []
    ledger, metrics = data.get("ledger"), data.get("metrics")
    url = ledger.get("url") if isinstance(ledger, dict) else None
    sqlite = _SQLITE_FILE.match(url) if isinstance(url, str) else None
    if sqlite is not None and sqlite.group(1).startswith("/"):
        found.append(("the SQLite ledger ([ledger] url)", sqlite.group(1),
                      'keep it in the state directory: url = "sqlite:///reward-poller.db"'))
    textfile = metrics.get("textfile") if isinstance(metrics, dict) else None
    if isinstance(textfile, str) and textfile.startswith("/"):
        found.append(("the metrics textfile ([metrics] textfile)", textfile,
                      "write it into node_exporter's textfile collector folder"))
    return found


def warnings(config_path: str) -> list[tuple[str, str, dict[str, str]]]:
    """(event, message, fields) for what would keep the service from starting or from its
    files: a missing configuration (systemd refuses to start a unit whose LoadCredential=
    file is missing), an install (a virtualenv's python links to one that may live under a
    home directory), ledger or textfile the units' sandbox keeps from it."""
    found: list[tuple[str, str, dict[str, str]]] = []
    paths = [("the executable", executable(), INSTALL_ADVICE)]
    interpreter = str(Path(sys.executable).resolve())
    if interpreter != paths[0][1]:
        paths.append(("the Python interpreter", interpreter,
                      f"{INSTALL_ADVICE}, made with the system's python3"))
    try:
        with open(config_path, "rb") as fh:
            paths += config_paths(tomllib.load(fh))
    except FileNotFoundError:
        found.append(("deploy.config.missing", f"{config_path} does not exist: the service "
                      "cannot start until it does (reward-poller init)", {"config": config_path}))
    except (OSError, tomllib.TOMLDecodeError):
        pass  # `check` and the service's start name what is wrong with it
    for what, path, advice in paths:
        problem = sandbox_problem(path)
        if problem is not None:
            found.append(("deploy.path.hidden",
                          f"{what} {path} {problem}: {advice} (docs/deployment.md)", {}))
    return found
