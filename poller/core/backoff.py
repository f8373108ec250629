"""When to try a redemption again, and when to stop and ask a person."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, kw_only=True)
class RetrySchedule:
    max_attempts: int = 8
    initial_seconds: float = 30.0
    max_seconds: float = 3600.0

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempts + 1``: exponential, capped, never shorter than
        what the remote side asked for. No jitter here: attempts are already spread by the
        poll interval, and a deterministic schedule is easier for a person to read."""
        exp = self.initial_seconds * float(2 ** max(0, attempts - 1))
        wait = min(self.max_seconds, exp)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def next_at(self, now: datetime, attempts: int, retry_after: float | None = None) -> datetime:
        return now + timedelta(seconds=self.delay(attempts, retry_after))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
