"""The ledger's states and the transitions allowed between them (docs/delivery.md, "States")."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a redemption stands, stored as its value. docs/delivery.md says what each means
    and who moves it on."""

    NEW = "new"
    WAITING = "waiting"
    ORDERING = "ordering"
    PENDING = "pending"
    ORDERED = "ordered"
    REFUSING = "refusing"
    HELD = "held"
    FULFILLED = "fulfilled"
    REFUSED = "refused"
    CLOSED_UPSTREAM = "closed_upstream"
    PERHAPS_FULFILLED = "perhaps_fulfilled"
    PERHAPS_REFUSED = "perhaps_refused"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def order_placed(self) -> bool:
        return self in (State.PENDING, State.ORDERED, State.FULFILLED)


# Only a complete poll that still lists the redemption moves a finished row back.
TERMINAL = frozenset({State.FULFILLED, State.REFUSED, State.CLOSED_UPSTREAM})

# A decision was sent and Influitive's answer did not say whether it took effect.
UNCONFIRMED = frozenset({State.PERHAPS_FULFILLED, State.PERHAPS_REFUSED})

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
        {State.ORDERED, State.PENDING, State.REFUSING, State.WAITING, State.HELD,
         State.CLOSED_UPSTREAM, State.ORDERING}
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

_REOPEN = {State.FULFILLED: State.ORDERED, State.PERHAPS_FULFILLED: State.ORDERED,
           State.REFUSED: State.REFUSING, State.PERHAPS_REFUSED: State.REFUSING}

_CONFIRMED = {State.PERHAPS_FULFILLED: State.FULFILLED, State.PERHAPS_REFUSED: State.REFUSED}


def reopen_to(state: State, *, order_placed: bool) -> State | None:
    """Where a finished (or unconfirmed) row goes back when a complete poll, started after
    it got there, still lists the redemption; None if the state is not finished. Closed as
    gone -> NEW when no vendor order exists (a saved key is reconciled first)."""
    if state is State.CLOSED_UPSTREAM:
        return State.ORDERED if order_placed else State.NEW
    return _REOPEN.get(state)


def confirmed(state: State) -> State | None:
    """The final state of an unconfirmed decision once complete polls no longer list it."""
    return _CONFIRMED.get(state)


class IllegalTransition(ValueError):
    def __init__(self, current: State, target: State) -> None:
        super().__init__(f"a redemption in state {current.value!r} cannot move to {target.value!r}")
        self.current = current
        self.target = target


def check_transition(current: State, target: State) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(current, target)


def can_transition(current: State, target: State) -> bool:
    return target in _ALLOWED[current]
