"""The decision side of Influence.io: a refused redemption's points given back exactly once,
though an award is not idempotent there (docs/influenceio.md, "Refunds of refused
redemptions")."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog

from poller.domain.errors import SourceUnavailable
from poller.domain.states import State
from poller.ports import Ledger
from poller.sources.influenceio import SOURCE
from poller.sources.influenceio.points import Outcome, PointsClient

log = structlog.get_logger(__name__)

MARKER_PREFIX = "influenceio.refund:"
SENDING = "sending"
DONE = "done"
NOT_APPLIED = "not_applied"
DEFAULT_REASON = "Refund: reward redemption {redemption_id} was refused"


@dataclass(frozen=True, kw_only=True)
class RefundPlan:
    """Who gets how many points back, and the reason the history will show."""

    customer_id: str
    points: int
    reason: str

    def describe(self) -> str:
        return (f"refund of {self.points} points to Influence.io customer {self.customer_id} "
                f"(reason {self.reason!r})")


def plan_refund(
    payload: Mapping[str, Any], redemption_id: str, *, customer_id_field: str = "id",
    reason_template: str = DEFAULT_REASON,
) -> RefundPlan | str:
    """The refund for a stored ``points/redeemed`` body, or why none can be planned."""
    customer = payload.get("customer")
    raw_id = customer.get(customer_id_field) if isinstance(customer, Mapping) else None
    if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id).strip():
        return f"the event has no customer.{customer_id_field} to refund"
    raw_points = payload.get("points")
    if isinstance(raw_points, bool) or not isinstance(raw_points, int | float | str):
        return "the event does not say how many points were spent"
    try:
        points = abs(Decimal(str(raw_points)))
    except InvalidOperation:
        return "the event's points are not a number"
    if points == 0 or points != points.to_integral_value():
        return f"the event's points ({raw_points}) are not a positive whole number"
    return RefundPlan(customer_id=str(raw_id).strip(), points=int(points),
                      reason=reason_template.replace("{redemption_id}", redemption_id))


class InfluenceioDecisions:
    """``Decider`` for Influence.io without ``[influenceio] api_key``: a refusal is logged
    for a person to refund by hand (the ledger shows it as refused with the reason)."""

    def fulfill(self, redemption_id: str, message: str) -> None:
        log.info("influenceio.decision.skipped", redemption_id=redemption_id, source=SOURCE)

    def refuse(self, redemption_id: str, message: str) -> None:
        log.warning("influenceio.refusal.manual", redemption_id=redemption_id, source=SOURCE,
                    action="refund the customer's points by hand in Influence.io if needed")


class InfluenceioRefunds(InfluenceioDecisions):
    """``Decider`` for Influence.io when ``[influenceio] api_key`` is set."""

    def __init__(
        self, points: PointsClient, ledger: Ledger, *, owner: str,
        customer_id_field: str = "id", reason_template: str = DEFAULT_REASON,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``owner``: the worker's lease owner, under which the intent is recorded."""
        self._points = points
        self._ledger = ledger
        self._owner = owner
        self._customer_id_field = customer_id_field
        self._reason_template = reason_template
        self._clock = clock

    def close(self) -> None:
        self._points.close()

    def refuse(self, redemption_id: str, message: str) -> None:
        entry = self._ledger.get(SOURCE, redemption_id)
        if entry is None:
            raise SourceUnavailable(f"Influence.io redemption {redemption_id} is not in the "
                                    "ledger; nothing refunded")
        plan = plan_refund(entry.payload, redemption_id,
                           customer_id_field=self._customer_id_field,
                           reason_template=self._reason_template)
        if isinstance(plan, str):
            # Nothing the API can do; as without a key: a person refunds by hand.
            log.warning("influenceio.refund.manual", redemption_id=redemption_id, reason=plan,
                        action="refund the points by hand in Influence.io")
            return
        key = MARKER_PREFIX + redemption_id
        marker = self._marker(key)
        if marker == DONE:
            log.info("influenceio.refund.already_made", redemption_id=redemption_id)
            return
        if marker == SENDING:
            # An earlier award's outcome is unknown: find it before any repeat.
            found = self._points.find(plan.customer_id, redemption_id)
            if found is None:
                raise SourceUnavailable(
                    f"Influence.io: an earlier {plan.describe()} may or may not have been "
                    "applied and the points history could not tell; not repeated (check the "
                    f"customer's points in Influence.io)"
                )
            if found:
                self._set(key, DONE, plan)
                log.info("influenceio.refund.found", redemption_id=redemption_id)
                return
        elif entry.state is State.REFUSING:
            # The intent, in the ledger before the call: an event people read (under the
            # worker's lease), and the marker below that the next attempt reads.
            self._ledger.transition(entry.pk, self._owner, State.REFUSING,
                                    f"refunding: {plan.describe()}", self._clock(),
                                    expect=State.REFUSING)
        self._set(key, SENDING, plan)
        answer = self._points.award(plan.customer_id, plan.points, plan.reason)
        if answer.outcome is Outcome.APPLIED:
            self._set(key, DONE, plan)
            log.info("influenceio.refund.applied", redemption_id=redemption_id,
                     points=plan.points)
            return
        if answer.outcome is Outcome.NOT_APPLIED:
            self._clear(key)
            log.warning("influenceio.refund.not_applied", redemption_id=redemption_id,
                        error=answer.detail)
            raise SourceUnavailable(f"{plan.describe()} not applied: {answer.detail}")
        log.warning("influenceio.refund.outcome_unknown",
                    redemption_id=redemption_id, error=answer.detail)
        raise SourceUnavailable(f"{plan.describe()}: outcome unknown ({answer.detail}); "
                                "looked up before any repeat")

    def _marker(self, key: str) -> str | None:
        raw = self._ledger.cache_get(key, self._clock())
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return SENDING  # unreadable: assume the worst, look it up
        state = value.get("state") if isinstance(value, Mapping) else None
        if state == NOT_APPLIED:
            return None
        return state if state in (SENDING, DONE) else SENDING

    def _set(self, key: str, state: str, plan: RefundPlan) -> None:
        self._ledger.cache_put(key, json.dumps({
            "state": state, "customer_id": plan.customer_id, "points": plan.points,
            "reason": plan.reason, "at": self._clock().isoformat(),
        }), None)

    def _clear(self, key: str) -> None:
        self._ledger.cache_put(key, json.dumps({"state": NOT_APPLIED}), None)
