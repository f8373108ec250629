"""``[audit]``: when the daemon balances the books, and over how many days (docs/audit.md).

A section of its own module, imported by the config model in ``poller.config``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_seconds: float = Field(default=86400.0, ge=0)
    """The daemon runs ``audit`` this often (0: never; a timer may run it instead)."""
    window_days: int = Field(default=7, ge=1, le=366)
    """Each audit covers this many days back from now (``audit`` without ``--since``)."""
