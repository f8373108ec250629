"""Logging set-up (docs/logging.md): everything on stderr, JSON lines off a terminal, the
journald priority in front under systemd, standard-library records through the same
processors, and never a secret. stdout is kept for what a command prints.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import structlog

from poller.core.redact import MIN_SECRET, UrlRedaction, looks_like_credential, url_redaction

REDACTED = "[redacted]"
LIBRARY_EVENT = "library.message"  # the event of a record from a standard ``logging`` logger
LogFormat = Literal["auto", "json", "console"]
# sd-daemon(3) priorities (SD_CRIT, SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG) by level name.
PRIORITIES = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "info": 6, "debug": 7}

# Keys whose values are secret whatever they hold.
_SECRET_KEYS = re.compile(
    r"^(.*_)?(token|api_key|apikey|secret|password|authorization|link|claim_code|pin)$",
    re.IGNORECASE,
)
# ANSI/VT escape sequences (CSI, OSC, two-byte ESC x), then any other C0/C1 control
# character and the Unicode bidirectional overrides, which can make a line read differently.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile(r"[\r\n\t\x0b\x0c\u2028\u2029\x85]+")
_stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)

_json_lines: bool | None = None  # set by ``configure``; None: decided by the terminal
_journal: bool | None = None  # set by ``configure``; None: looked up when first needed


def clean_line(text: str) -> str:
    """``text`` safe to show on one terminal line."""
    return _CONTROLS.sub("", _BREAKS.sub(" ", _ESCAPES.sub("", text)))


class Redactor:
    """Removes known secret values from every string in an event, tracebacks included, in
    context, never as a bare substring that could be an ordinary word (docs/security.md)."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._urls: dict[str, UrlRedaction] = {}
        self._lock = threading.Lock()
        self._compiled: tuple[re.Pattern[str], list[str]] | None = None
        self._stale = False

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if v and len(v) >= MIN_SECRET} - self._secrets
        if new:
            with self._lock:
                self._secrets.update(new)
                self._stale = True

    def add_url(self, url: str, secret_path: bool = True) -> None:
        """The secret parts of ``url`` (``poller.core.redact.url_redaction``)."""
        found = url_redaction(url, secret_path)
        if found and self._urls.get(found.url) != found:
            with self._lock:
                self._urls[found.url] = found
                self._stale = True

    def scrub(self, text: str) -> str:
        if self._stale:
            with self._lock:
                self._compiled = _compile(self._secrets, self._urls.values())
                self._stale = False
        compiled = self._compiled
        if compiled is None or not text:
            return text
        pattern, replacements = compiled
        return pattern.sub(lambda m: replacements[(m.lastindex or 1) - 1], text)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._value(v) for v in value)
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        for key in list(event):
            if key != "event" and _SECRET_KEYS.search(key):
                event[key] = REDACTED
            else:
                event[key] = self._value(event[key])
        return event


def _whole(value: str) -> str:
    """``value`` as a regex matching only a whole token (no letter or digit next to it)."""
    head = r"(?<![A-Za-z0-9])" if value[:1].isalnum() else ""
    tail = r"(?![A-Za-z0-9])" if value[-1:].isalnum() else ""
    return f"{head}({re.escape(value)}){tail}"


def _compile(secrets: Iterable[str],
             urls: Iterable[UrlRedaction]) -> tuple[re.Pattern[str], list[str]] | None:
    """One pattern for every secret (one group each, the longest first, so a secret that
    holds another is replaced whole) and the replacement of each group."""
    found: list[tuple[int, str, str]] = []  # (length, regex, replacement)
    for value in secrets:
        regex = f"({re.escape(value)})" if looks_like_credential(value) else _whole(value)
        found.append((len(value), regex, REDACTED))
    for url in urls:
        if url.shown is not None:
            for whole in {url.url, url.url.rstrip("/")}:
                if len(whole) >= MIN_SECRET:
                    found.append((len(whole), f"({re.escape(whole)})", url.shown))
        for password in url.passwords:
            # In its userinfo (``user:password@``): the user name stays.
            found.append((len(password) + 1, f"(?<=:)({re.escape(password)})(?=@)", REDACTED))
            if looks_like_credential(password):
                found.append((len(password), f"({re.escape(password)})", REDACTED))
        for token in url.tokens:
            found.append((len(token), _whole(token), REDACTED))
    if not found:
        return None
    found.sort(key=lambda item: -item[0])
    return re.compile("|".join(regex for _, regex, _ in found)), [r for _, _, r in found]


redactor = Redactor()


def journal_stderr() -> bool:
    """Whether stderr is the stream systemd named in ``JOURNAL_STREAM`` (systemd.exec(5)): a
    process whose stderr was redirected elsewhere inherits the variable, not the stream."""
    device, colon, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (colon and device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind sys.stderr
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def _prefix(level: str) -> str:
    """``<N>`` when stderr is the journal, else nothing."""
    global _journal
    if _journal is None:
        _journal = journal_stderr()
    return f"<{PRIORITIES.get(level.lower(), PRIORITIES['info'])}>" if _journal else ""


def json_stderr() -> bool:
    """Whether the command line writes JSON lines on stderr: as ``--log-format`` chose, else
    when stderr is not a terminal."""
    return _json_lines if _json_lines is not None else not sys.stderr.isatty()


def stderr_line(event: str, message: str, *, level: str = "error", human: str | None = None,
                **fields: Any) -> None:
    """One line on stderr from the command line itself (docs/logging.md)."""
    if json_stderr():
        record = _stamp(None, level, {"message": message, **fields, "event": event,
                                      "level": level})
        text = json.dumps(redactor(None, level, record), default=str)
    else:
        text = redactor.scrub(human if human is not None else message)
    prefix = _prefix(level)
    if prefix:
        text = "\n".join(prefix + line for line in text.split("\n"))
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed (a pipe's reader gone): nowhere to say it
        pass


def log_thread_crash(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: one ``thread.crashed`` line instead of Python's traceback
    text; a thread that calls ``sys.exit`` says nothing, as by default."""
    if issubclass(args.exc_type, SystemExit):
        return
    structlog.get_logger("poller").critical(
        "thread.crashed", thread=getattr(args.thread, "name", None),
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _library_event(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    record = event.get("_record")
    if isinstance(record, logging.LogRecord):
        event["message"] = event.pop("event", record.getMessage())
        event["event"] = LIBRARY_EVENT
        event["logger"] = record.name
    return event


def configure(fmt: LogFormat = "auto", level: str = "INFO") -> None:
    global _json_lines, _journal
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    _json_lines = not console
    _journal = journal_stderr()
    colours = console and sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=colours) if console
                     else structlog.processors.JSONRenderer())

    def render(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        prefix = _prefix(str(event.get("level", method)))  # before the renderer pops it
        text: str = renderer(logger, method, event)
        return prefix + text

    shared: list[Any] = [structlog.contextvars.merge_contextvars,
                         structlog.processors.add_log_level, _stamp]
    # Tracebacks become text before the redactor sees them, so they are scrubbed too.
    tail: list[Any] = [structlog.processors.format_exc_info, redactor, render]
    threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[_library_event, structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *tail],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries are heard from at WARNING and above: their INFO is per-request noise.
    root.setLevel(max(threshold, logging.WARNING))
