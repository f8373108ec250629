"""An in-memory ``RedemptionSource`` for the worker's tests, like the real API where the worker
can tell: decided redemptions leave the list, a second decision (or one on a redemption an
admin decided in the UI, or an unknown one) raises AlreadyDecided."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from poller.domain.errors import AlreadyDecided
from poller.domain.model import PollResult, Redemption
from poller.sources.influitive.wire import parse_items

Operation = Literal["poll", "fulfill", "refuse"]
Verb = Literal["fulfill", "refuse"]


@dataclass(frozen=True, kw_only=True)
class FakeDecision:
    """One decision the fake received (``by="worker"``) or an admin took (``by="admin"``)."""

    redemption_id: str
    verb: Verb
    message: str
    accepted: bool
    by: Literal["worker", "admin"] = "worker"


class FakeInfluitive:
    """``RedemptionSource`` in memory. Seed it, script errors, then read ``decisions``."""

    def __init__(self, redemptions: Iterable[Redemption | Mapping[str, Any]] = ()) -> None:
        self._lock = threading.Lock()
        self._outstanding: dict[str, Redemption] = {}
        self._rejected: list[str] = []
        self._seeded = 0
        self._decided: dict[str, Verb] = {}
        self._errors: defaultdict[Operation, deque[Exception]] = defaultdict(deque)
        self.decisions: list[FakeDecision] = []
        self.complete = True
        """What ``poll`` reports as ``complete``; set False to act out a cut-short poll."""
        self.polls = 0
        self._empty_polls = 0
        self._ignored: dict[Verb, int] = {"fulfill": 0, "refuse": 0}
        self.closed = False
        self.seed(*redemptions)

    def seed(self, *items: Redemption | Mapping[str, Any]) -> None:
        """Add outstanding redemptions: parsed ones, or raw API items (parsed as a page
        would be; an unkeyable raw item is reported in every poll's ``rejected``)."""
        with self._lock:
            for item in items:
                if isinstance(item, Redemption):
                    parsed: tuple[Redemption, ...] = (item,)
                else:
                    page = parse_items({"reward_redemptions": [item], "contacts": []})
                    parsed = page.redemptions
                    n = self._seeded
                    self._rejected.extend(
                        f"seeded item {n}: {r.split(': ', 1)[-1]}" for r in page.rejected
                    )
                self._seeded += 1
                for redemption in parsed:
                    if redemption.id not in self._decided:
                        self._outstanding.setdefault(redemption.id, redemption)

    def fail_next(self, operation: Operation, *errors: Exception) -> None:
        """The next calls of ``operation`` raise these errors, one per call, in order."""
        with self._lock:
            self._errors[operation].extend(errors)

    def empty_polls(self, count: int = 1) -> None:
        """The next ``count`` polls list nothing, yet report complete: the glitch of an API
        that answers an empty page for a moment."""
        with self._lock:
            self._empty_polls += count

    def ignore_next(self, verb: Verb) -> None:
        """The next decision of ``verb`` returns as if accepted but applies nothing (a
        firewall challenge answered 2xx, taken for success by a client that does not
        recognise it): the redemption stays outstanding."""
        with self._lock:
            self._ignored[verb] += 1

    def decide_in_ui(self, redemption_id: str, verb: Verb = "fulfill", message: str = "") -> None:
        """An admin decides in the Influitive UI: the redemption leaves the list."""
        with self._lock:
            self._outstanding.pop(redemption_id, None)
            self._decided[redemption_id] = verb
            self.decisions.append(FakeDecision(
                redemption_id=redemption_id, verb=verb, message=message, accepted=True,
                by="admin",
            ))

    @property
    def outstanding(self) -> list[Redemption]:
        with self._lock:
            return list(self._outstanding.values())

    def decided(self, redemption_id: str) -> Verb | None:
        with self._lock:
            return self._decided.get(redemption_id)

    def accepted_decisions(self) -> list[FakeDecision]:
        """The worker's decisions that took effect."""
        with self._lock:
            return [d for d in self.decisions if d.accepted and d.by == "worker"]

    def _scripted(self, operation: Operation) -> None:
        with self._lock:
            queue = self._errors[operation]
            error = queue.popleft() if queue else None
        if error is not None:
            raise error

    def poll(self) -> PollResult:
        self._scripted("poll")
        with self._lock:
            self.polls += 1
            empty = self._empty_polls > 0
            if empty:
                self._empty_polls -= 1
            return PollResult(
                redemptions=() if empty else tuple(self._outstanding.values()),
                complete=self.complete,
                pages=1,
                requests=1,
                rejected=tuple(self._rejected),
            )

    def fulfill(self, redemption_id: str, message: str) -> None:
        self._decide(redemption_id, "fulfill", message)

    def refuse(self, redemption_id: str, message: str) -> None:
        self._decide(redemption_id, "refuse", message)

    def _decide(self, redemption_id: str, verb: Verb, message: str) -> None:
        self._scripted(verb)
        with self._lock:
            ignored = self._ignored[verb] > 0
            accepted = not ignored and redemption_id in self._outstanding
            self.decisions.append(FakeDecision(
                redemption_id=redemption_id, verb=verb, message=message, accepted=accepted,
            ))
            if ignored:
                self._ignored[verb] -= 1
                return
            if accepted:
                del self._outstanding[redemption_id]
                self._decided[redemption_id] = verb
                return
            earlier = self._decided.get(redemption_id)
        if earlier is None:
            raise AlreadyDecided(f"redemption {redemption_id} is not outstanding: perhaps already "
                                 "decided (HTTP 404)")
        raise AlreadyDecided(
            f"redemption {redemption_id}: perhaps already decided ({earlier}) (HTTP 422)"
        )

    def close(self) -> None:
        self.closed = True
