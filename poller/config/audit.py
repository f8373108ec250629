"""``[audit]``: when the daemon balances the books, and over how many days (docs/audit.md).

A section of its own module, imported by the config model in ``poller.config``."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value: Any) -> float:
    """Seconds from a number of seconds or a duration written ``90s``, ``30m``, ``24h`` or
    ``1d``: an audit interval is read by people as hours and days."""
    if isinstance(value, bool):
        raise ValueError("write a duration such as \"24h\" or \"1d\", or a number of seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(
        f"{value!r} is not a duration: write \"24h\", \"1d\", \"30m\" or \"90s\", "
        "or a number of seconds (0: never)"
    )


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval: float = Field(default=86400.0, ge=0)
    """The daemon runs ``audit`` this often, in seconds once read: ``"24h"``, ``"1d"`` or a
    number of seconds (0: never; a timer may run it instead)."""
    window_days: int = Field(default=7, ge=1, le=366)
    """Each audit covers this many days back from now (``audit`` without ``--since``)."""

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> float:
        return duration_seconds(value)
