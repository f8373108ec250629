"""What every command module shares: the exit codes, the errors that become them, the
``Context`` (the config, loaded once), who runs the command, and the ledger opened the way a
command needs it. It imports no command module and nothing heavy at import time (``--help``
stays fast). Exit codes: docs/cli.md ("Exit codes").
"""

from __future__ import annotations

import getpass
import os
import signal
import threading
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from poller import logs
from poller.domain.errors import PollerError

if TYPE_CHECKING:
    from poller.config import Config
    from poller.domain.model import LedgerEntry
    from poller.ledger.sql import SqlLedger

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Failed(click.ClickException):
    """The command could not do its job: one line on stderr, exit 1. ``fields`` go into
    that line's JSON object when stderr carries JSON lines (``source``, ``fix``...)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields

    def show(self, file: Any = None) -> None:
        text = logs.clean_line(logs.redactor.scrub(self.format_message()))
        logs.stderr_line("cli.failed", text, human=f"reward-poller: {text}",
                         exit_code=self.exit_code, **self.fields)


class BadConfig(click.ClickException):
    """The configuration is unusable, exit 2. Several problems are one line each on a
    terminal, one JSON object (``problems``) in a log."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        text = logs.redactor.scrub(self.format_message())
        head, *rest = text.split("\n")
        problems = [logs.clean_line(line.strip()) for line in rest if line.strip()]
        logs.stderr_line("config.invalid", logs.clean_line(head.rstrip(":")),
                         human=f"reward-poller: {text}", exit_code=self.exit_code,
                         problems=problems or [logs.clean_line(head)])


class Context:
    """The object every command receives (``@click.pass_obj``)."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            from poller.config import load_config

            self._config = load_config(self.config_path)
            logs.redactor.add(self._config.secrets())
        return self._config


def os_user() -> str:
    """The OS user running the command (recorded as the actor of an operator command)."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (a container with a random uid): say so, not crash
        return f"uid {os.getuid()}"


def not_empty(value: str, param_hint: str) -> str:
    """``value`` with its whitespace runs made one space; empty is a usage error."""
    text = " ".join(value.split())
    if not text:
        raise click.BadParameter("must not be empty", param_hint=param_hint)
    return text


class UtcDateTime(click.ParamType):  # type: ignore[type-arg]
    """``2026-11-21``, ``2026-11-21T08:30``, ``2026-11-21 08:30:00+02:00``: a moment in UTC
    (a date alone is its midnight UTC; no offset means UTC)."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(
                text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            self.fail(f"{value!r} is not a date such as 2026-11-21 or 2026-11-21T08:30", param,
                      ctx)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


UTC_DATE = UtcDateTime()


def until_stopped(announce: Callable[[], None]) -> None:
    """``announce`` what is served, then wait for Ctrl-C or SIGTERM (the handler is in place
    before anyone can read the announcement and send it)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        announce()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def in_the_way(path: Path, replace: Callable[[str], bool] | None = None) -> str | None:
    """Why a config file may not be written at ``path`` (None: it may). Nothing may be
    there, not even a dangling symbolic link (writing through it would create a file
    somewhere else), unless ``replace`` accepts the text of the regular file found."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        dangling = "" if path.exists() else ", which does not exist"
        return (f"{path} is a symbolic link to {os.readlink(path)}{dangling}: not followed, "
                "nothing written (remove the link, or choose another path)")
    if replace is not None and path.is_file():
        try:
            if replace(path.read_text(encoding="utf-8")):
                return None
        except (OSError, UnicodeDecodeError):
            pass
    return f"{path} exists: not overwritten (move it away, or choose another path)"


def write_new_file(
    path: Path, text: str, mode: int = 0o600, *, replace: Callable[[str], bool] | None = None,
) -> None:
    """Create ``path`` with ``text`` (or rewrite a regular file ``replace`` accepts), else
    Failed naming the file. O_EXCL for a new file and O_NOFOLLOW for a replaced one: a link
    put in place meanwhile is never written through."""
    why = in_the_way(path, replace)
    if why is not None:
        raise Failed(why)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if os.path.lexists(path):
        flags = os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, mode)
        os.fchmod(fd, mode)
    except FileExistsError:
        raise Failed(f"{path} exists: not overwritten (move it away, or choose another "
                     "path)") from None
    except OSError as exc:
        raise Failed(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def missing_sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None  # open_ledger names the unusable URL
    database = parsed.database or ""
    if (parsed.get_backend_name() != "sqlite" or database in ("", ":memory:")
            or database.startswith("file:")):
        return None
    path = Path(database).expanduser()
    return None if path.exists() else path.resolve()


def open_existing(config: Config, *, read_only: bool = False) -> SqlLedger:
    """The ledger, which must exist already: a missing SQLite file is an error naming the
    path looked for, never a new empty ledger. ``read_only`` (``status``, ``ledger list``,
    ``report``...): never migrated nor written, and a SQLite file is opened read-only, so a
    ledger on a read-only mount can be read."""
    from poller.ledger import migrate, open_ledger
    from poller.ledger.sql import SqlLedger, make_engine

    missing = missing_sqlite_file(config.ledger.url)
    if missing is not None:
        raise PollerError(
            f"no ledger at {missing} (ledger.url in the config): run the worker once "
            "(`reward-poller run --run-once`) or `reward-poller db upgrade` to create it, "
            "or run this command where the config's relative path points")
    if read_only and config.ledger.url.startswith("sqlite"):
        engine = make_engine(config.ledger.url, read_only=True)
        try:
            migrate.check(engine)
        except BaseException:
            engine.dispose()
            raise
        return SqlLedger(engine)
    return open_ledger(config.ledger.url, migrate=False if read_only else None,
                       schema=config.ledger.schema)


def reading(config: Config) -> closing[SqlLedger]:
    return closing(open_existing(config, read_only=True))


def find(ledger: Any, source: str, redemption_id: str) -> LedgerEntry:
    entry: LedgerEntry | None = ledger.get(source, redemption_id)
    if entry is None:
        raise PollerError(f"no redemption {redemption_id!r} from {source} in the ledger")
    return entry


def lookup(config: Config, source: str, redemption_id: str) -> LedgerEntry:
    """One redemption, read from the ledger (which must exist)."""
    with closing(open_existing(config)) as ledger:
        return find(ledger, source, redemption_id)
