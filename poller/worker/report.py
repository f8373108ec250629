"""What one worker cycle did: the report ``Worker.run_cycle`` returns, and the
operator-facing problems it met."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    VendorError,
    VendorUnreachable,
)
from poller.domain.model import LedgerEntry
from poller.domain.states import State

SOURCE_NAME = "influitive"

_FUNDS_WORDS = ("fund", "balance", "insufficient")


@dataclass(kw_only=True)
class OperatorProblem:
    """An operator-facing error a cycle met: who (a vendor's name, or ``influitive``), what
    kind (``credentials``, ``funds``, ``configuration``, ``firewall``, ``page_cap``,
    ``other``), the error's text, and how many redemptions wait on it in this cycle."""

    who: str
    kind: str
    detail: str
    redemptions: int = 0

    @property
    def cause(self) -> str:
        return f"{self.who}.{self.kind}"


def vendor_problem(vendor: str, exc: OperatorFacingError) -> OperatorProblem:
    """Classify an operator-facing vendor error by what the operator must fix."""
    text = str(exc).lower()
    if isinstance(exc, ConfigFixable):
        kind = "configuration"
    elif exc.status in (401, 403):
        kind = "credentials"
    elif exc.status == 402 or any(w in text for w in _FUNDS_WORDS):
        kind = "funds"
    else:
        kind = "other"
    return OperatorProblem(who=exc.vendor or vendor, kind=kind, detail=str(exc))


@dataclass(kw_only=True)
class CycleReport:
    poll_ok: bool = False
    poll_complete: bool = False
    seen: int = 0
    new: int = 0
    rejected: int = 0
    steps: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stopped_early: bool = False
    pages: int = 0
    """Pages the poll read (with ``poll_complete`` False and the page cap reached, the poll
    stopped at ``[influitive] max_pages``)."""
    problems: dict[str, OperatorProblem] = field(default_factory=dict)
    """Operator-facing errors met, by cause (``OperatorProblem.cause``)."""
    reasons: dict[str, int] = field(default_factory=dict)
    """``"<state>: <reason>"`` -> redemptions left held or waiting for that reason."""
    released: int = 0
    """Redemptions a stop caught after their claim and before their step's first call (the
    vendor's or Influitive's): nothing was sent, their lease was given back, the next cycle
    takes them at once."""
    not_started: int = 0
    """Redemptions a stop left untouched (never claimed) in this cycle."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """The worker threads of one cycle count into the same report."""

    @property
    def ok(self) -> bool:
        """False when the cycle could not do its job (``--run-once`` exits 1)."""
        return self.poll_ok

    def count(self, state: State) -> None:
        with self._lock:
            self.outcomes[state.value] = self.outcomes.get(state.value, 0) + 1

    def problem(self, found: OperatorProblem, *, redemptions: int = 1) -> None:
        """``redemptions`` more wait on an operator-facing error (0: the poll met it)."""
        with self._lock:
            known = self.problems.setdefault(found.cause, found)
            known.redemptions += redemptions

    def left(self, entry: LedgerEntry) -> None:
        """Count why a redemption was left held or waiting."""
        if entry.state not in (State.HELD, State.WAITING):
            return
        reason = " ".join((entry.hold_reason or entry.last_error or "no reason").split())
        key = f"{entry.state.value}: {reason[:160]}"
        with self._lock:
            self.reasons[key] = self.reasons.get(key, 0) + 1

    def vendor_error(self, vendor: str, exc: VendorError) -> None:
        """Count a vendor error a person must look at: an operator-facing one, or a vendor
        that could not be reached at all (the redemption waits either way; ``run
        --run-once`` exits 1 naming the vendor)."""
        if isinstance(exc, OperatorFacingError):
            self.problem(vendor_problem(vendor, exc))
        elif isinstance(exc, VendorUnreachable):
            self.problem(OperatorProblem(who=exc.vendor or vendor, kind="unreachable",
                                         detail=str(exc)))

    def release(self) -> None:
        """A stop caught a redemption after its claim and before its step's first call."""
        with self._lock:
            self.released += 1

    def stepped(self, state: State) -> None:
        """One redemption moved on, to ``state``."""
        with self._lock:
            self.steps += 1
            self.outcomes[state.value] = self.outcomes.get(state.value, 0) + 1
