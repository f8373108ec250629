"""What every command module shares: the exit codes, the errors that become them, the
``Context`` (the config, loaded once), who is running the command, and the ledger opened the
way a command needs it.

Every command module imports this one; it imports no command module, so the CLI has no
import circle (an import-linter contract in pyproject.toml keeps it so). Nothing heavy is
imported at import time: ``--help`` stays fast.

Exit codes (docs/cli.md, "Exit codes"): 0 the command did its job; 1 it could not (a
credential rejected, a vendor or Influitive unreachable, the ledger missing or unreachable,
an operator-facing problem met by a run, a redemption not found or not movable that way);
2 a usage or configuration error.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from poller import logs
from poller.domain.errors import ConfigError, PollerError

if TYPE_CHECKING:
    from poller.config import Config
    from poller.core.budget import RequestBudget
    from poller.domain.model import LedgerEntry
    from poller.domain.states import State
    from poller.ledger.sql import SqlLedger
    from poller.ports import Changes

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


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
    """The configuration is unusable: the message names the key, variable or file; exit 2.
    Several problems are one line each on a terminal, one JSON object (``problems``) in a
    log."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        text = logs.redactor.scrub(self.format_message())
        head, *rest = text.split("\n")
        problems = [line.strip() for line in rest if line.strip()]
        logs.stderr_line("config.invalid", logs.clean_line(head.rstrip(":")),
                         human=f"reward-poller: {text}", exit_code=self.exit_code,
                         problems=[logs.clean_line(p) for p in problems] or [
                             logs.clean_line(head)])


class NotFound(PollerError):
    """No such redemption in the ledger."""


class Context:
    """The object every command receives (``@click.pass_obj``)."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            from poller.config import load_config

            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise BadConfig(str(exc)) from None
            logs.redactor.add(self._config.secrets())
        return self._config


def handled(func: F) -> F:
    """Turn our own errors into exit codes with a one-line reason (no traceback)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except ConfigError as exc:
            raise BadConfig(str(exc)) from None
        except PollerError as exc:
            raise Failed(str(exc)) from None

    return cast(F, wrapper)


# --- who runs the command ---------------------------------------------------------------


def os_user() -> str:
    """The OS user running the command (recorded as the actor of an operator command)."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (a container with a random uid): say so, not crash
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def actor_of(by: str | None) -> str:
    """``--by NAME`` when given (who the operator acts for), else the OS user."""
    if by is not None:
        name = " ".join(by.split())
        if not name:
            raise click.BadParameter("must not be empty", param_hint="--by")
        return name
    return os_user()


BY_OPTION = click.option(
    "--by", "by", metavar="NAME",
    help="Who is acting, recorded in the ledger (default: the OS user).",
)


# --- dates on the command line ---------------------------------------------------------


class UtcDateTime(click.ParamType):  # type: ignore[type-arg]
    """``2026-11-21``, ``2026-11-21T08:30``, ``2026-11-21 08:30:00+02:00``: a moment in UTC
    (a date alone is its midnight UTC; no offset means UTC)."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not a date such as 2026-11-21 or 2026-11-21T08:30", param,
                      ctx)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


UTC_DATE = UtcDateTime()

LIMIT = click.IntRange(min=1)
"""``--limit``: at least one row (0 or a negative number is a usage error, exit 2)."""


# --- the ledger, as a command needs it ----------------------------------------------------


def in_the_way(path: Path, replace: Callable[[str], bool] | None = None) -> str | None:
    """Why a config file may not be written at ``path`` (None: it may). Nothing may be
    there, not even a symbolic link whose target does not exist (writing through it would
    create a file somewhere else), unless ``replace`` accepts the text of the regular file
    found. ``init`` and ``sandbox --write-config`` both ask this."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        target = os.readlink(path)
        dangling = "" if path.exists() else ", which does not exist"
        return (f"{path} is a symbolic link to {target}{dangling}: not followed, nothing "
                "written (remove the link, or choose another path)")
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
    """Create ``path`` with ``text`` (or rewrite a regular file ``replace`` accepts);
    Failed (exit 1, naming the file) when anything else is there (``in_the_way``). A new
    file is created with O_EXCL and a replaced one opened with O_NOFOLLOW, so a link put in
    place meanwhile is never written through either."""
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
    """The path of a SQLite ledger file that does not exist, else None (it exists, it is
    in memory, or the ledger is PostgreSQL)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None  # open_ledger names the unusable URL
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return None if path.exists() else path.resolve()


def no_ledger_message(path: Path) -> str:
    return (f"no ledger at {path} (ledger.url in the config): run the worker once "
            "(`reward-poller run --run-once`) or `reward-poller db upgrade` to create it, "
            "or run this command where the config's relative path points")


def open_for_reading(config: Config) -> SqlLedger:
    """The ledger for a read-only command (``status``, ``ledger list/show``, ``report``,
    ``run --dry-run``): never created, never migrated, never written. A SQLite file that
    does not exist is an error naming the path looked for; an existing one is opened
    read-only, so a ledger on a read-only mount can be read."""
    from poller.ledger import open_ledger
    from poller.ledger.sql import SqlLedger, make_engine

    missing = missing_sqlite_file(config.ledger.url)
    if missing is not None:
        raise PollerError(no_ledger_message(missing))
    if config.ledger.url.startswith("sqlite"):
        from poller.ledger import migrate

        engine = make_engine(config.ledger.url, read_only=True)
        try:
            migrate.check(engine)
        except BaseException:
            engine.dispose()
            raise
        return SqlLedger(engine)
    return open_ledger(config.ledger.url, migrate=False, schema=config.ledger.schema)


def open_for_writing(config: Config) -> SqlLedger:
    """The ledger for an operator command that moves a redemption: it must exist already
    (a missing SQLite file is an error naming the path, never a new empty ledger)."""
    from poller.ledger import open_ledger

    missing = missing_sqlite_file(config.ledger.url)
    if missing is not None:
        raise PollerError(no_ledger_message(missing))
    return open_ledger(config.ledger.url, schema=config.ledger.schema)


@contextmanager
def reading(config: Config) -> Iterator[SqlLedger]:
    ledger = open_for_reading(config)
    try:
        yield ledger
    finally:
        ledger.close()


def find(ledger: Any, source: str, redemption_id: str) -> LedgerEntry:
    from poller.domain.model import LedgerEntry

    entry = ledger.get(source, redemption_id)
    if entry is None:
        raise NotFound(f"no redemption {redemption_id!r} from {source} in the ledger")
    assert isinstance(entry, LedgerEntry)
    return entry


def lookup(config: Config, source: str, redemption_id: str) -> LedgerEntry:
    """One redemption, read from the ledger (which must exist)."""
    ledger = open_for_writing(config)
    try:
        return find(ledger, source, redemption_id)
    finally:
        ledger.close()


def admin_move(config: Config, source: str, redemption_id: str, to: State, detail: str,
               changes: Changes, *, actor: str) -> LedgerEntry:
    """An operator's transition, recorded with who made it."""
    from poller.ports import LeaseLost

    ledger = open_for_writing(config)
    try:
        entry = find(ledger, source, redemption_id)
        try:
            return ledger.admin_transition(entry.pk, to, detail, datetime.now(UTC), changes,
                                           actor=actor)
        except LeaseLost:
            raise PollerError(
                f"redemption {redemption_id} is being worked on by a worker right now; "
                "try again in a moment"
            ) from None
    finally:
        ledger.close()


def quoted_message(message: str) -> str:
    """The operator's message as it goes into an event's detail (one line)."""
    return '"' + " ".join(message.split()) + '"'


def check_budget(config: Config, ledger: Any | None) -> RequestBudget:
    """The request budget ``check`` spends from: the ledger's, shared with every worker on
    it, when a ledger exists; else one of its own (nothing else can be using a ledger that
    does not exist yet)."""
    from poller.compose import INFLUITIVE_BUDGET_SCOPE, request_budget
    from poller.core.budget import BudgetLimit, MemoryRequestLog, RequestBudget

    if ledger is not None and hasattr(ledger, "engine"):
        return request_budget(config, ledger)
    s = config.influitive
    return RequestBudget(MemoryRequestLog(), BudgetLimit(
        scope=INFLUITIVE_BUDGET_SCOPE, max_requests=s.max_requests_per_window,
        window_seconds=s.window_seconds))
