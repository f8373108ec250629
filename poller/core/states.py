"""The ledger's states and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a redemption stands. Stored as its value in the ledger."""

    NEW = "new"
    """Recorded from a poll; nothing ordered yet."""
    WAITING = "waiting"
    """An attempt failed (transient or operator-facing); due again at ``next_attempt_at``."""
    ORDERING = "ordering"
    """The idempotency key is saved and the vendor call may have happened: the outcome is
    unknown until the vendor is asked again with the same key."""
    PENDING = "pending"
    """The vendor accepted the order but it is not final yet (approval, funds)."""
    ORDERED = "ordered"
    """The vendor confirmed the order; the redemption still has to be fulfilled at Influitive."""
    REFUSING = "refusing"
    """Decided to refuse; the refusal still has to be sent to Influitive."""
    HELD = "held"
    """Needs a person: see ``hold_reason``. ``ledger retry`` or ``ledger refuse`` releases it."""
    FULFILLED = "fulfilled"
    REFUSED = "refused"
    CLOSED_UPSTREAM = "closed_upstream"
    """Decided by someone else at Influitive (it left the outstanding list, or Influitive
    answered "already decided"). Never ordered after that."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def order_placed(self) -> bool:
        """True once a vendor order is known to exist."""
        return self in (State.PENDING, State.ORDERED, State.FULFILLED)


TERMINAL = frozenset({State.FULFILLED, State.REFUSED, State.CLOSED_UPSTREAM})

# Work the worker picks up on its own. HELD waits for a person, terminal states for nobody.
ACTIVE = frozenset(
    {State.NEW, State.WAITING, State.ORDERING, State.PENDING, State.ORDERED, State.REFUSING}
)

_ALLOWED: dict[State, frozenset[State]] = {
    State.NEW: frozenset(
        {State.ORDERING, State.REFUSING, State.HELD, State.CLOSED_UPSTREAM, State.WAITING}
    ),
    # WAITING/HELD -> ORDERED/PENDING: reconciling by key found the order an earlier
    # attempt created although its answer was lost.
    State.WAITING: frozenset(
        {State.ORDERING, State.REFUSING, State.HELD, State.CLOSED_UPSTREAM, State.WAITING,
         State.ORDERED, State.PENDING}
    ),
    State.ORDERING: frozenset(
        {
            State.ORDERED,
            State.PENDING,
            State.REFUSING,
            State.WAITING,
            State.HELD,
            State.CLOSED_UPSTREAM,
            State.ORDERING,
        }
    ),
    State.PENDING: frozenset(
        {State.ORDERED, State.PENDING, State.REFUSING, State.HELD, State.CLOSED_UPSTREAM}
    ),
    State.ORDERED: frozenset(
        {State.FULFILLED, State.CLOSED_UPSTREAM, State.ORDERED, State.HELD}
    ),
    State.REFUSING: frozenset({State.REFUSED, State.CLOSED_UPSTREAM, State.REFUSING, State.HELD}),
    State.HELD: frozenset(
        {State.NEW, State.WAITING, State.REFUSING, State.FULFILLED, State.CLOSED_UPSTREAM,
         State.ORDERED, State.PENDING, State.HELD}
    ),
    State.FULFILLED: frozenset(),
    State.REFUSED: frozenset(),
    State.CLOSED_UPSTREAM: frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, current: State, target: State) -> None:
        super().__init__(f"a redemption in state {current.value!r} cannot move to {target.value!r}")
        self.current = current
        self.target = target


def check_transition(current: State, target: State) -> None:
    """Raise IllegalTransition unless ``current -> target`` is allowed."""
    if target not in _ALLOWED[current]:
        raise IllegalTransition(current, target)


def can_transition(current: State, target: State) -> bool:
    return target in _ALLOWED[current]
