"""A systemd unit started the way systemd starts it, without systemd (the tests run where no
service manager is PID 1).

What is emulated, from the unit file as written (systemd.exec(5), systemd.service(5)):

* ``ExecStart=``: split like systemd splits it (quotes), specifiers resolved (``%d``,
  ``%%``), then ``${VAR}`` and ``$VAR`` expanded from the service's environment;
* ``User=``/``DynamicUser=``: the command runs as an unprivileged user (``setpriv``), with no
  supplementary groups, ``NoNewPrivileges=`` and ``UMask=``;
* ``StateDirectory=``/``WorkingDirectory=``: a state folder owned by that user, with
  ``StateDirectoryMode=``, kept from one start to the next, is the working directory;
* ``LoadCredential=ID:PATH``: each file read as root (a missing one fails the start, as
  systemd's ``243/CREDENTIALS``) and copied into a private folder of the user's, files 0400,
  named by ``$CREDENTIALS_DIRECTORY``, removed when the process ends;
* ``Environment=``, and the variables systemd itself sets: ``PATH``, ``USER``, ``LOGNAME``,
  ``HOME``, ``SHELL``, ``INVOCATION_ID``, ``STATE_DIRECTORY``, ``JOURNAL_STREAM`` (stderr is
  a pipe, as the journal's stream is no terminal), and for ``Type=notify`` ``NOTIFY_SOCKET``
  (a datagram socket whose messages are kept) and ``WATCHDOG_USEC`` from ``WatchdogSec=``.

Not emulated: the mount namespace (``ProtectSystem=``, ``ProtectHome=``, ``PrivateTmp=``), the
system call filter, restarts, and the timer's schedule (a test starts the one-shot unit).
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.system.daemon.test_systemd_units import parse, seconds

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""systemd's default $PATH for system services (Debian 12's build)."""


class CredentialMissing(RuntimeError):
    """A ``LoadCredential=`` file that cannot be read: systemd does not start the unit."""


# --- the unit file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A unit file as tests/system/daemon/test_systemd_units.py's parser reads it."""

    name: str
    sections: dict[str, dict[str, list[str]]]

    def values(self, key: str, section: str = "Service") -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def value(self, key: str, section: str = "Service") -> str | None:
        found = self.values(key, section)
        return found[-1] if found else None  # the last assignment wins

    def credentials(self) -> list[tuple[str, str]]:
        """(ID, PATH) of every ``LoadCredential=``."""
        return [(ident, path) for ident, _, path in
                (v.partition(":") for v in self.values("LoadCredential"))]


def load_unit(path: Path) -> Unit:
    return Unit(path.name, parse(path))


def resolve_specifiers(text: str, table: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        assert letter in table, f"specifier %{letter} is not emulated"
        return table[letter]

    return re.sub(r"%(.)", one, text)


def expand(words: Sequence[str], env: dict[str, str]) -> list[str]:
    """systemd.service(5), "Command lines": ``${FOO}`` in a word becomes FOO's value (one
    word); ``$FOO`` as a word of its own is split at whitespace; unknown variables are
    empty."""
    out: list[str] = []
    for word in words:
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            out.extend(env.get(whole.group(1), "").split())
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                          lambda m: env.get(m.group(1), ""), word))
    return out


def exec_words(value: str) -> list[str]:
    """``ExecStart=``'s words before expansion. Its prefixes (``-``, ``@``, ``:``, ``+``,
    ``!``) are not emulated: the rehearsed units use none."""
    assert value and value[0] not in "-@:+!", f"ExecStart= prefix not emulated: {value}"
    return shlex.split(value)


# --- starting it -----------------------------------------------------------------------------


@dataclass
class Running:
    """A started service: its output, read as it comes, and what it told systemd."""

    process: subprocess.Popen[bytes]
    credentials: Path
    notify: socket.socket | None
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start_reading(self, out_fd: int, err_fd: int) -> None:
        for fd, into in ((out_fd, self.stdout_lines), (err_fd, self.stderr_lines)):
            thread = threading.Thread(target=_read_lines, args=(fd, into), daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.notify is not None:
            thread = threading.Thread(target=_read_datagrams,
                                      args=(self.notify, self.notifications), daemon=True)
            thread.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def notified(self, text: str, timeout: float) -> bool:
        """Whether a notification with the line ``text`` (e.g. ``READY=1``) came in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in message.splitlines() for message in list(self.notifications)):
                return True
            if self.process.poll() is not None:
                time.sleep(0.2)  # a last datagram may still be on its way
                return any(text in m.splitlines() for m in self.notifications)
            time.sleep(0.1)
        return False

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit code (a negative number: killed by that signal). SIGKILL after
        ``timeout``, as systemd does after TimeoutStopSec=."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.notify is not None:
            time.sleep(0.1)
            self.notify.close()
        shutil.rmtree(self.credentials, ignore_errors=True)
        return code

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def _read_lines(fd: int, into: list[str]) -> None:
    with os.fdopen(fd, "rb") as stream:
        for line in stream:
            into.append(line.decode("utf-8", "replace"))


def _read_datagrams(sock: socket.socket, into: list[str]) -> None:
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        into.append(data.decode("utf-8", "replace"))


class ServiceManager:
    """Starts units as systemd would, in a scratch folder of its own: ``state/`` for the
    state directories, ``credentials/`` for each start's credentials."""

    def __init__(self, scratch: Path, user: str = "nobody") -> None:
        self.scratch = scratch
        self.user = pwd.getpwnam(user)
        scratch.mkdir(parents=True, exist_ok=True)
        scratch.chmod(0o755)  # the user must reach its folders inside it

    def state_directory(self, unit: Unit) -> Path:
        """StateDirectory= as systemd makes it at the first start: owned by the user, mode
        StateDirectoryMode= (0755 by default); kept from start to start."""
        name = unit.value("StateDirectory")
        assert name, f"{unit.name} has no StateDirectory="
        path = self.scratch / "state" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.parent.chmod(0o755)
            path.mkdir()
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
            path.chmod(int(unit.value("StateDirectoryMode") or "0755", 8))
        return path

    def _credentials(self, unit: Unit) -> Path:
        """LoadCredential=: read by the service manager (root), copied into a folder only the
        service's user can read."""
        base = self.scratch / "credentials"
        base.mkdir(exist_ok=True)
        base.chmod(0o755)
        folder = base / f"{unit.name}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(mode=0o700)
        try:
            for ident, source in unit.credentials():
                try:
                    data = Path(source).read_bytes()
                except OSError as exc:
                    raise CredentialMissing(f"{unit.name}: LoadCredential={ident}:{source}: "
                                            f"{exc.strerror}") from None
                target = folder / ident
                target.write_bytes(data)
                target.chmod(0o400)
                os.chown(target, self.user.pw_uid, self.user.pw_gid)
        except BaseException:
            shutil.rmtree(folder)
            raise
        os.chown(folder, self.user.pw_uid, self.user.pw_gid)
        folder.chmod(0o500)
        return folder

    def environment(self, unit: Unit, credentials: Path, state: Path) -> dict[str, str]:
        env = {
            "PATH": SYSTEM_PATH, "USER": self.user.pw_name, "LOGNAME": self.user.pw_name,
            "HOME": "/", "SHELL": "/usr/sbin/nologin", "INVOCATION_ID": uuid.uuid4().hex,
            "CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": str(state),
        }
        table = {"d": str(credentials), "S": str(state.parent), "n": unit.name,
                 "N": unit.name.rsplit(".", 1)[0]}
        for line in unit.values("Environment"):
            for assignment in shlex.split(resolve_specifiers(line, table)):
                key, _, value = assignment.partition("=")
                env[key] = value
        return env

    def start(self, unit: Unit, *, argv: Sequence[str] | None = None) -> Running:
        """Start ``unit``'s ExecStart= (or, like ``systemd-run`` with the unit's settings,
        ``argv``, whose words are expanded the same way)."""
        state = self.state_directory(unit)
        working = unit.value("WorkingDirectory")
        assert working == f"/var/lib/{unit.value('StateDirectory')}", (
            f"{unit.name}: WorkingDirectory={working} is not the state directory")
        credentials = self._credentials(unit)
        env = self.environment(unit, credentials, state)
        table = {"d": str(credentials), "S": str(state.parent), "n": unit.name,
                 "N": unit.name.rsplit(".", 1)[0]}
        if argv is None:
            exec_start = unit.value("ExecStart")
            assert exec_start, f"{unit.name} has no ExecStart="
            argv = exec_words(resolve_specifiers(exec_start, table))
        words = expand(argv, env)

        notify: socket.socket | None = None
        if unit.value("Type") == "notify":
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            address = credentials.parent / f"notify-{uuid.uuid4().hex[:8]}"
            notify.bind(str(address))
            address.chmod(0o777)  # NotifyAccess=main: the service's user sends to it
            env["NOTIFY_SOCKET"] = str(address)
            watchdog = unit.value("WatchdogSec")
            if watchdog:
                env["WATCHDOG_USEC"] = str(int(seconds(watchdog) * 1_000_000))

        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        err_stat = os.fstat(err_w)
        env["JOURNAL_STREAM"] = f"{err_stat.st_dev}:{err_stat.st_ino}"
        wrapper = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                   "--clear-groups"]
        if unit.value("NoNewPrivileges") == "yes":
            wrapper.append("--no-new-privs")
        umask = int(unit.value("UMask") or "0022", 8)
        try:
            process = subprocess.Popen(
                [*wrapper, "--", *words], cwd=state, env=env, stdin=subprocess.DEVNULL,
                stdout=out_w, stderr=err_w, umask=umask, start_new_session=True,
            )
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        running = Running(process, credentials, notify)
        running.start_reading(out_r, err_r)
        return running

    def run(self, unit: Unit, *, argv: Sequence[str] | None = None,
            timeout: float = 120) -> tuple[int, Running]:
        """Start and wait for the end (a one-shot unit, or a command)."""
        running = self.start(unit, argv=argv)
        return running.wait(timeout), running

    def stop(self, running: Running, unit: Unit, *, at_most: float) -> int:
        """``systemctl stop``: KillSignal= (SIGTERM), then SIGKILL after TimeoutStopSec=
        (or ``at_most`` seconds, when shorter: a test does not wait 20 minutes)."""
        name = unit.value("KillSignal") or "SIGTERM"
        running.signal(getattr(signal, name))
        return running.wait(min(seconds(unit.value("TimeoutStopSec") or "90s"), at_most))
