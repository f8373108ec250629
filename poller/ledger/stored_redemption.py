"""The redemption as the ledger stores it beside the raw payload (``redemptions.redemption``),
read by the source's adapter once, when recorded, so no step parses a payload again.

One JSON column, not typed ones: a redemption is nested (contact, shipping, the source's
own metadata object, a list of problems), so typed columns would take some twenty columns
and a child table; nothing queries inside it (reward and e-mail have typed columns); and
JSON text reads back byte for byte alike on SQLite and PostgreSQL. ``raw`` is the payload.

The shape (``FORMAT`` 1)::

    {"format": 1, "source", "id", "reward_id", "reward_name",
     "contact": {"id", "email", "first_name", "last_name", "name"},
     "shipping": {"address", "address_2", "city", "state", "zip", "country",
                  "phone_number"} | null,
     "points", "quantity", "created_at", "metadata": {...}, "problems": [...]}

or ``{"format": 1, "unreadable": "why"}`` for a payload that could not be read (rows
recorded before the column existed; migration 0006 writes this same shape).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from poller.domain.model import Contact, Redemption, Shipping

FORMAT = 1

_CONTACT = ("id", "email", "first_name", "last_name", "name")
_SHIPPING = ("address", "address_2", "city", "state", "zip", "country", "phone_number")


def _plain(value: Any) -> Any:
    # Values come from JSON, but a caller may hand read-only mappings or tuples.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"payload value of type {type(value).__name__} is not JSON")


def encode_json(value: Mapping[str, Any]) -> str:
    """JSON text as the ledger stores it: ``ensure_ascii`` escapes NUL and lone surrogates,
    so any text a source sent can be stored, and reads back unchanged."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=_plain)


def encode_redemption(redemption: Redemption) -> str:
    return encode_json({
        "format": FORMAT,
        "source": redemption.source,
        "id": redemption.id,
        "reward_id": redemption.reward_id,
        "reward_name": redemption.reward_name,
        "contact": asdict(redemption.contact),
        "shipping": None if redemption.shipping is None else asdict(redemption.shipping),
        "points": redemption.points,
        "quantity": redemption.quantity,
        "created_at": redemption.created_at,
        "metadata": dict(redemption.metadata),
        "problems": list(redemption.problems),
    })


def encode_unreadable(reason: str) -> str:
    return encode_json({"format": FORMAT, "unreadable": reason})


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def decode_redemption(
    text: str | None, payload: Mapping[str, Any]
) -> tuple[Redemption | None, str | None]:
    """The stored redemption (its ``raw`` being ``payload``), or None and why there is none."""
    if text is None:
        return None, "no redemption is stored with the payload"
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None, "the stored redemption is in a format this version cannot read"
    if "unreadable" in data:
        return None, str(data["unreadable"])
    contact = data.get("contact") or {}
    shipping = data.get("shipping")
    points = data.get("points")
    quantity = data.get("quantity")
    return Redemption(
        source=str(data["source"]),
        id=str(data["id"]),
        reward_id=_text(data, "reward_id"),
        reward_name=_text(data, "reward_name"),
        contact=Contact(**{name: _text(contact, name) for name in _CONTACT}),
        shipping=None if not isinstance(shipping, dict)
        else Shipping(**{name: _text(shipping, name) for name in _SHIPPING}),
        points=points if isinstance(points, int) else None,
        quantity=quantity if isinstance(quantity, int) else 1,
        created_at=_text(data, "created_at"),
        metadata=dict(data.get("metadata") or {}),
        raw=payload,
        problems=tuple(str(p) for p in data.get("problems") or ()),
    ), None
