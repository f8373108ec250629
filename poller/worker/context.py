"""What every step module works with: the ledger, the vendors, the decision endpoints, the
policy, this cycle's report, and the few moves they all make.

The step modules (``record``, ``order``, ``decide``, ``reconcile``) carry out the actions
``poller.core.nextstep.next_step`` chooses; ``StepContext.next`` is how they ask it. Log
lines name the redemption through structlog's context variables, bound once per step by
the cycle (``Worker._step``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog

from poller.core.backoff import RetrySchedule
from poller.core.decide import SpendPolicy
from poller.core.nextstep import Action, Event, Rules, facts_of, needs_payload, next_step
from poller.domain.errors import ConfigError
from poller.domain.messages import MessageTemplates
from poller.domain.model import LedgerEntry, OrderRequest, Redemption, UnreadablePayload
from poller.domain.states import TERMINAL, UNCONFIRMED, State
from poller.ports import Changes, Decider, Ledger, SpendGuard, Vendor
from poller.worker.leases import LeaseKeeper
from poller.worker.report import CycleReport

log = structlog.get_logger("poller.worker")

NOT_DUE = frozenset({"next_attempt_at"})
"""A held redemption waits for a person, not for a time."""

RELEASED = TERMINAL | UNCONFIRMED
"""A step that moves a redemption into one of these has nothing left to do on it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def redemption_of(entry: LedgerEntry) -> Redemption:
    """The redemption a ledger row records, as its source's adapter read it when it was
    recorded (nothing parses a stored payload again); raises UnreadablePayload for a row
    whose payload could not be read."""
    return entry.parsed()


@dataclass(frozen=True, kw_only=True)
class WorkerPolicy:
    namespace: str
    """Mixed into idempotency keys: the Influitive org id."""
    schedule: RetrySchedule = RetrySchedule()
    lease_seconds: float = 300.0
    batch_size: int = 500
    unmapped: Literal["hold", "refuse"] = "hold"
    unavailable: Literal["refuse", "hold"] = "refuse"
    """A product the vendor will not sell although its catalog lists it: refused, or held
    for a person (``[fulfillment] unavailable_reward``)."""
    pending_recheck_seconds: float = 300.0
    concurrency: int = 1
    """Threads working the due redemptions of a cycle; 1 works them one after another."""
    spend: SpendPolicy = SpendPolicy()
    gone_after_polls: int = 2
    """Complete polls (separate cycles) a redemption must be missing from before it counts
    as decided elsewhere (``[ledger] gone_after_polls``)."""
    heartbeat: bool = True
    """Renew the lease while a vendor or Influitive call is in flight, so a call slower
    than ``lease_seconds`` does not hand the row to the next cycle mid-call."""


@dataclass(kw_only=True)
class StepContext:
    """One cycle's (or one operator command's) working set, shared by its threads."""

    ledger: Ledger
    vendor: Callable[[str], Vendor]
    deciders: Mapping[str, Decider]
    polled_sources: frozenset[str]
    policy: WorkerPolicy
    rules: Rules
    messages: MessageTemplates
    owner: str
    clock: Callable[[], datetime]
    stop: threading.Event
    keeper: LeaseKeeper
    report: CycleReport

    # --- deciding ------------------------------------------------------------------------

    def next(self, entry: LedgerEntry, event: Event, *, claimed: bool = True) -> Action:
        """``next_step`` on the row as it stands."""
        redemption: Redemption | str | None = None
        if needs_payload(entry):
            try:
                redemption = self.parsed(entry)
            except UnreadablePayload as exc:  # held, with why, by next_step
                redemption = str(exc)
        facts = facts_of(entry, polled=entry.source in self.polled_sources, claimed=claimed,
                         redemption=redemption)
        return next_step(facts, event, self.rules)

    def parsed(self, entry: LedgerEntry) -> Redemption:
        return redemption_of(entry)

    # --- writing -------------------------------------------------------------------------

    def move(
        self, entry: LedgerEntry, to: State, detail: str, changes: Changes | None = None,
        guard: SpendGuard | None = None,
    ) -> LedgerEntry:
        # A move to a finished (or unconfirmed) state is the step's last write: the lease
        # goes back with it, and the cycle releases nothing more.
        moved = self.ledger.transition(entry.pk, self.owner, to, detail, self.clock(), changes,
                                       expect=entry.state, guard=guard,
                                       release=to in RELEASED)
        log.debug("redemption.transition", from_state=entry.state.value, to_state=to.value,
                  detail=detail)
        return moved

    def hold(self, entry: LedgerEntry, reason: str, changes: Changes) -> LedgerEntry:
        return self.move(entry, State.HELD, reason, changes)

    # --- stopping ------------------------------------------------------------------------

    def stopping(self, before: str) -> bool:
        """Whether a stop was asked for: then no new call leaves for this redemption. What
        it has reached is in the ledger already; the cycle gives its lease back, so the next
        cycle takes it at once, with no attempt counted (its key, if saved, is looked up
        first there, as after any interruption). Once a stop is asked for, the Influitive
        request budget sends nothing either (``poller.core.budget``)."""
        if not self.stop.is_set():
            return False
        log.info("redemption.stopping", reason=f"stopping before {before}")
        return True

    def released_before(self, before: str) -> bool:
        """``stopping`` at the start of a step's first call: the step ends with nothing
        done, counted as released."""
        if not self.stopping(before):
            return False
        self.report.release()
        return True

    @contextmanager
    def heartbeat(self, entry: LedgerEntry) -> Iterator[None]:
        """Keep the lease while a call that may outlast it is in flight: renewed every third
        of ``lease_seconds`` (``LeaseKeeper``). A renewal that fails is logged; the step then
        ends in LeaseLost at its next write, never in a second worker calling at the same
        time (the lease is only taken over once it has run out)."""
        if not self.policy.heartbeat:
            yield
            return
        with self.keeper.held(entry.pk):
            yield

    # --- what is sent --------------------------------------------------------------------

    def decider(self, entry: LedgerEntry) -> Decider:
        decider = self.deciders.get(entry.source)
        if decider is None:
            raise ConfigError(f"no decision endpoint configured for source {entry.source!r}")
        return decider

    def request(self, entry: LedgerEntry) -> OrderRequest:
        redemption = self.parsed(entry)
        assert entry.idempotency_key and entry.vendor and entry.amount and entry.currency
        return OrderRequest(
            idempotency_key=entry.idempotency_key,
            redemption_id=entry.redemption_id,
            source=entry.source,
            vendor=entry.vendor,
            product=entry.product,
            amount=entry.amount,
            currency=entry.currency,
            recipient_name=redemption.contact.display_name,
            recipient_email=redemption.contact.email or "",
            reward_name=redemption.reward_name,
            shipping=redemption.shipping,
        )

    def render(self, template: str, entry: LedgerEntry, **extra: str) -> str:
        try:
            contact = self.parsed(entry).contact
        except UnreadablePayload:
            contact = None
        values: Mapping[str, object] = {
            "reward_name": entry.reward_name or "reward",
            "recipient_name": contact.display_name if contact else "",
            "email": entry.email or "",
            "vendor": entry.vendor or "",
            "amount": entry.amount if entry.amount is not None else "",
            "currency": entry.currency or "",
            "redemption_id": entry.redemption_id,
            **extra,
        }
        return self.messages.render(template, values)
