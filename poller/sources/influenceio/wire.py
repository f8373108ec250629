"""Parsing Influence.io ``points/redeemed`` webhook bodies (their shape: docs/influenceio.md).
Pure: the receiver turns a body into a ``Redemption`` with it before storing; the ledger keeps
that model beside the body, so nothing parses a stored body again."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from poller.domain.model import Contact, Redemption, email_problem
from poller.sources.influenceio import SOURCE

MAX_ID_LENGTH = 200


class BadEvent(ValueError):
    """The body is not a usable ``points/redeemed`` event; the message says why (it is
    returned to the sender with a 4xx, so it names fields, never values)."""


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return str(value).strip() or None


def parse_redeemed(body: Any) -> Redemption:
    """A redemption from a ``points/redeemed`` body, or BadEvent."""
    if not isinstance(body, Mapping):
        raise BadEvent("body is not a JSON object")
    event_id = _text(body.get("id"))
    if event_id is None:
        raise BadEvent("field 'id' is missing or not a string/integer")
    if len(event_id) > MAX_ID_LENGTH or not event_id.isprintable():
        raise BadEvent("field 'id' is too long or not printable")
    customer = body.get("customer")
    if not isinstance(customer, Mapping):
        raise BadEvent("field 'customer' is missing or not an object")
    email = _text(customer.get("email"))
    if email is None:
        raise BadEvent("field 'customer.email' is missing")
    reward_type = _text(body.get("rewardType"))
    rule_id = _text(body.get("ruleId"))
    if reward_type is None and rule_id is None:
        raise BadEvent("neither 'rewardType' nor 'ruleId' is set: nothing to route on")
    points = body.get("points")
    if points is not None and (isinstance(points, bool) or not isinstance(points, int | float)):
        raise BadEvent("field 'points' is not a number")
    if isinstance(points, float) and not math.isfinite(points):
        # NaN or an overflowing literal (1e400): int() of it would raise, not refuse.
        raise BadEvent("field 'points' is not a finite number")
    problems: list[str] = []
    bad_email = email_problem(customer.get("email"), "customer")
    if bad_email:
        problems.append(bad_email)
    return Redemption(
        source=SOURCE,
        id=event_id,
        reward_id=rule_id,
        reward_name=reward_type,
        contact=Contact(
            id=_text(customer.get("id")) or _text(customer.get("externalId")),
            email=email,
            name=_text(customer.get("name")),
        ),
        points=int(points) if isinstance(points, int | float) else None,
        metadata={"reward_type": reward_type, "rule_id": rule_id},
        raw=dict(body),
        problems=tuple(problems),
    )
