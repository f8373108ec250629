"""structlog set-up: to stderr, JSON lines when piped, readable on a terminal, no secrets.

stdout is reserved for what a command prints (tables, --json, reports, plans), so logs never
mix into output a user pipes somewhere.
"""

from __future__ import annotations

import logging
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


def configure(fmt: LogFormat = "auto", level: str = "INFO") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks become text before the redactor sees them, so they are scrubbed too.
    processors += [structlog.processors.format_exc_info, redactor, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (alembic, uvicorn) go to stderr too, quietly.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
