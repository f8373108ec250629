"""``reward-poller deploy systemd``: the shipped units, with this install's paths in them.

The units in the repository name ``/opt/reward-poller/bin/reward-poller`` (the install the
docs suggest) and ``/etc/reward-poller/`` (the configuration and its ``credentials/``
folder); rendering puts the executable of the running install there instead, and the
configuration file the operator chose with the credentials folder beside it, so what is
written can be enabled as it is.

The service reads its configuration from ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``):
systemd reads the root-only file and hands the dynamic user a private copy. So the
configuration's own path is never hidden by the units' sandbox; the paths the service opens
itself (the install, a SQLite ledger, the metrics textfile) can be, and are warned about.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poller import __version__
from poller.release import files

SHIPPED_EXECUTABLE = "/opt/reward-poller/bin/reward-poller"
SHIPPED_CONFIG = "/etc/reward-poller/config.toml"
SHIPPED_CREDENTIALS = "/etc/reward-poller/credentials/"
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")
PRIVATE_TMP = ("/tmp", "/var/tmp")
_SQLITE_FILE = re.compile(r"sqlite(?:\+\w+)?:///([^?]+)")
"""A SQLite URL's file: ``sqlite:///relative.db``, ``sqlite:////absolute.db``."""


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
    # systemd.service(5) splits ExecStart= like a shell would, quotes included; a "%" would
    # start a specifier (systemd.unit(5)), "%%" is a plain one.
    return _specifiers(shlex.quote(path))


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")


def credentials_folder(config_path: str) -> str:
    """Where the units load the secrets from: ``credentials/`` beside the configuration."""
    return str(Path(config_path).parent / "credentials") + "/"


def render(name: str, *, config_path: str = SHIPPED_CONFIG) -> RenderedUnit:
    text = files.unit(name)
    header = (
        f"# Written by `reward-poller deploy systemd` (reward-poller {__version__}, "
        f"installed in {sys.prefix}).\n"
    )
    if "ExecStart=" in text:
        if SHIPPED_EXECUTABLE not in text or f"config.toml:{SHIPPED_CONFIG}" not in text:
            raise files.MissingPackageData(
                f"{name}: ExecStart= does not name {SHIPPED_EXECUTABLE} or no LoadCredential= "
                "loads the configuration; the shipped unit was changed and cannot be rendered"
            )
        text = text.replace(SHIPPED_EXECUTABLE, command())
        text = "".join(_credential_paths(line, config_path)
                       for line in text.splitlines(keepends=True))
    return RenderedUnit(name=name, text=header + text)


def _credential_paths(line: str, config_path: str) -> str:
    """A ``LoadCredential=`` line (commented out or not) with the operator's paths."""
    if not line.lstrip("# ").startswith("LoadCredential="):
        return line
    # LoadCredential= takes the rest of the line as the path: no shell quoting, specifiers on.
    line = line.replace(f":{SHIPPED_CONFIG}", f":{_specifiers(config_path)}")
    return line.replace(f":{SHIPPED_CREDENTIALS}",
                        f":{_specifiers(credentials_folder(config_path))}")


def render_all(*, config_path: str = SHIPPED_CONFIG) -> list[RenderedUnit]:
    return [render(name, config_path=config_path) for name in files.UNITS]


def _under(path: str, tops: tuple[str, ...]) -> str | None:
    return next((top for top in tops if path == top or path.startswith(top + "/")), None)


def hidden_from_units(path: str) -> bool:
    """True when the units' ``ProtectHome=yes`` hides ``path`` from the service."""
    return _under(path, HIDDEN_BY_PROTECT_HOME) is not None


def sandbox_problem(path: str) -> str | None:
    """Why the units' sandbox keeps the service from ``path``, or None: ``ProtectHome=yes``
    hides home directories, ``PrivateTmp=yes`` gives the service an empty /tmp and /var/tmp
    of its own (a file written there is gone when the service stops)."""
    top = _under(path, HIDDEN_BY_PROTECT_HOME)
    if top is not None:
        return f"is under {top}, which the units hide from the service (ProtectHome=yes)"
    top = _under(path, PRIVATE_TMP)
    if top is not None:
        return (f"is under {top}, which the service sees as an empty folder of its own "
                "(PrivateTmp=yes)")
    return None


@dataclass(frozen=True)
class UsedPath:
    """A path the service opens itself, and what to do when the units' sandbox hides it."""

    what: str
    path: str
    advice: str

    def warning(self) -> str | None:
        problem = sandbox_problem(self.path)
        if problem is None:
            return None
        return f"warning: {self.what} {self.path} {problem}: {self.advice} (docs/deployment.md)"


INSTALL_ADVICE = "install reward-poller outside it, e.g. into /opt/reward-poller"


def install_paths() -> list[UsedPath]:
    """What the service starts from: the executable, and the interpreter it runs on (a
    virtualenv's python links to one that may live under a home directory)."""
    found = [UsedPath("the executable", executable(), INSTALL_ADVICE)]
    interpreter = str(Path(sys.executable).resolve())
    if interpreter != found[0].path:
        found.append(UsedPath("the Python interpreter", interpreter,
                              f"{INSTALL_ADVICE}, made with the system's python3"))
    return found


def config_paths(data: dict[str, Any]) -> list[UsedPath]:
    """The paths a configuration's raw TOML names that the service opens itself: a SQLite
    ledger's file and the metrics textfile, when absolute (a relative ledger path is in the
    state directory, WorkingDirectory=)."""
    found: list[UsedPath] = []
    ledger = data.get("ledger")
    url = ledger.get("url") if isinstance(ledger, dict) else None
    sqlite = _SQLITE_FILE.match(url) if isinstance(url, str) else None
    if sqlite is not None and sqlite.group(1).startswith("/"):
        found.append(UsedPath("the SQLite ledger ([ledger] url)", sqlite.group(1),
                              'keep it in the state directory: url = "sqlite:///reward-poller.db"'))
    metrics = data.get("metrics")
    textfile = metrics.get("textfile") if isinstance(metrics, dict) else None
    if isinstance(textfile, str) and textfile.startswith("/"):
        found.append(UsedPath("the metrics textfile ([metrics] textfile)", textfile,
                              "write it into node_exporter's textfile collector folder"))
    return found


def path_warnings(paths: list[UsedPath]) -> list[str]:
    return [line for line in (p.warning() for p in paths) if line is not None]
