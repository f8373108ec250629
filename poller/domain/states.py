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
    """Influitive took our fulfilment. Reopened (back to ORDERED) if a later complete poll
    still lists the redemption: the poll is the truth for "still outstanding"."""
    REFUSED = "refused"
    """Influitive took our refusal. Reopened (back to REFUSING) if still listed."""
    CLOSED_UPSTREAM = "closed_upstream"
    """Decided by someone else at Influitive: it was missing from complete polls in enough
    separate cycles (``[ledger] gone_after_polls``). Reopened if it is listed again."""
    PERHAPS_FULFILLED = "perhaps_fulfilled"
    """The fulfilment was answered 404/409/422: *perhaps* already decided (our own earlier
    decision whose answer was lost, an admin, or a wrong route). The next complete poll
    settles it: absent, it becomes FULFILLED; still listed, the fulfilment is sent again."""
    PERHAPS_REFUSED = "perhaps_refused"
    """As PERHAPS_FULFILLED, for a refusal."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def order_placed(self) -> bool:
        """True once a vendor order is known to exist."""
        return self in (State.PENDING, State.ORDERED, State.FULFILLED)


TERMINAL = frozenset({State.FULFILLED, State.REFUSED, State.CLOSED_UPSTREAM})
"""Finished as far as the ledger knows. Only a complete poll that still lists the redemption
moves one back (``reopen_to``); nothing else ever does."""

UNCONFIRMED = frozenset({State.PERHAPS_FULFILLED, State.PERHAPS_REFUSED})
"""A decision was sent and Influitive's answer did not say whether it took effect: waiting
for the next complete poll."""

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
        {State.FULFILLED, State.CLOSED_UPSTREAM, State.ORDERED, State.HELD,
         State.PERHAPS_FULFILLED}
    ),
    State.REFUSING: frozenset(
        {State.REFUSED, State.CLOSED_UPSTREAM, State.REFUSING, State.HELD,
         State.PERHAPS_REFUSED}
    ),
    State.HELD: frozenset(
        {State.NEW, State.WAITING, State.REFUSING, State.FULFILLED, State.CLOSED_UPSTREAM,
         State.ORDERED, State.PENDING, State.HELD}
    ),
    # Reopening: a complete poll still lists the redemption (see ``reopen_to``).
    State.FULFILLED: frozenset({State.ORDERED, State.HELD}),
    State.REFUSED: frozenset({State.REFUSING, State.HELD}),
    State.CLOSED_UPSTREAM: frozenset({State.NEW, State.ORDERED, State.HELD}),
    # Settled by the next complete poll: confirmed when absent, sent again when listed.
    State.PERHAPS_FULFILLED: frozenset({State.FULFILLED, State.ORDERED, State.HELD}),
    State.PERHAPS_REFUSED: frozenset({State.REFUSED, State.REFUSING, State.HELD}),
}


def reopen_to(state: State, *, order_placed: bool) -> State | None:
    """Where a finished (or unconfirmed) row goes back when a complete poll, started after
    the row got there, still lists the redemption; None if the state is not finished.

    Our fulfilment did not take effect -> ORDERED (send it again); our refusal -> REFUSING;
    closed as gone -> NEW when no vendor order exists (it is worked like any new one, and a
    saved key is reconciled first), ORDERED when one does.
    """
    if state in (State.FULFILLED, State.PERHAPS_FULFILLED):
        return State.ORDERED
    if state in (State.REFUSED, State.PERHAPS_REFUSED):
        return State.REFUSING
    if state is State.CLOSED_UPSTREAM:
        return State.ORDERED if order_placed else State.NEW
    return None


def confirmed(state: State) -> State | None:
    """The final state an unconfirmed decision becomes once a complete poll no longer lists
    the redemption; None for any other state."""
    return {State.PERHAPS_FULFILLED: State.FULFILLED,
            State.PERHAPS_REFUSED: State.REFUSED}.get(state)


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
