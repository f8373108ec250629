"""Logging set-up: everything to stderr, one JSON object per line when stderr is not a
terminal, readable on a terminal, never a secret.

stdout is reserved for what a command prints (tables, --json, reports, plans), so logs never
mix into output a user pipes somewhere. Records of libraries that use the standard
``logging`` module (APScheduler, uvicorn, httpx, Alembic) are routed through the same
structlog processors, so they are JSON lines too (event ``library.message``, with the
library's ``logger`` and its ``message``), redacted like ours. Event names and the fields
each event carries: docs/logging.md.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import structlog

REDACTED = "[redacted]"

# Keys whose values are secret whatever they hold.
_SECRET_KEYS = re.compile(
    r"^(.*_)?(token|api_key|apikey|secret|password|authorization|link|claim_code|pin)$",
    re.IGNORECASE,
)

# ANSI/VT escape sequences (CSI ... final byte, OSC ... BEL/ST, and two-byte ESC x), then any
# other C0/C1 control character and the Unicode bidirectional overrides, which can make a
# line read differently from what it holds.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile(r"[\r\n\t\x0b\x0c\u2028\u2029\x85]+")


def clean_line(text: str) -> str:
    """``text`` safe to show on one terminal line: escape sequences and control characters
    removed, line breaks and tabs turned into a space."""
    text = _ESCAPES.sub("", text)
    text = _BREAKS.sub(" ", text)
    return _CONTROLS.sub("", text)


class Redactor:
    """Removes known secret values from every string in an event, tracebacks included."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        # Very short values would redact ordinary words; real tokens are long.
        self._secrets.update(v for v in values if v and len(v) >= 6)

    def scrub(self, text: str) -> str:
        # Longest first: a secret that contains another (a URL's "user:password" and its
        # password) is replaced whole, not left half-shown around a shorter one.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

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


redactor = Redactor()

LogFormat = Literal["auto", "json", "console"]

LIBRARY_EVENT = "library.message"
"""The event name of a record from a library's standard ``logging`` logger."""

LIBRARY_LEVEL = logging.WARNING
"""Libraries are heard from at this level and above (their INFO is per-request noise)."""


def _library_event(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """A standard-library record: its text becomes ``message``, the event name is fixed."""
    record = event.get("_record")
    if isinstance(record, logging.LogRecord):
        event["message"] = event.pop("event", record.getMessage())
        event["event"] = LIBRARY_EVENT
        event["logger"] = record.name
    return event


def _drop_meta(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    event.pop("_record", None)
    event.pop("_from_structlog", None)
    return event


def use_console(fmt: LogFormat) -> bool:
    return fmt == "console" or (fmt == "auto" and sys.stderr.isatty())


def configure(fmt: LogFormat = "auto", level: str = "INFO") -> None:
    console = use_console(fmt)
    colours = console and sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=colours)
        if console
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks become text before the redactor sees them, so they are scrubbed too.
    tail: list[Any] = [structlog.processors.format_exc_info, redactor, renderer]
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
        processors=[_library_event, _drop_meta, *tail],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(threshold, LIBRARY_LEVEL))
