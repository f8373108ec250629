"""The redemption, as its source's adapter read it, stored beside the raw payload.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

``redemptions.redemption``: one JSON object, the normalised redemption (contact, shipping,
metadata, problems...; the shape is ``poller.ledger.stored_redemption``'s ``FORMAT`` 1). New
rows get it when they are recorded; the worker's steps read it and never parse the payload
again. This migration fills it in for the rows already there, reading each payload with a
copy of the parse of the time (below), kept here because the live parse may change later
and a migration must always do what it did when it was written. A payload that cannot be
read is not dropped: its row gets ``{"format": 1, "unreadable": "<why>"}`` and the worker
holds it for a person with that reason. The raw payload is kept as it was.

Offline (``--sql``) the rows cannot be read, so the column is only added; rows left NULL
are held by the worker as having no stored redemption. A plain ADD COLUMN on both databases
(the SQLite move trigger of 0005 fires only on ``move_detail`` and stays as it is).
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FORMAT = 1
BATCH = 500

# --- the parse of revision 0006 (frozen: do not import the live one) ----------------------

MAX_ID_LENGTH = 200
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class _Unreadable(ValueError):
    pass


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return str(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _email_problem(value: Any, who: str) -> str | None:
    email = _text(value)
    if email is None:
        return f"{who} has no email address"
    if isinstance(value, str) and _CONTROL.search(value):
        return f"{who} email address contains control characters (CR/LF or similar)"
    if "@" not in email:
        return f"{who} email address is malformed"
    return None


def _currency_problem(metadata: dict[str, Any]) -> str | None:
    if "currency" not in metadata:
        return None
    from iso4217 import raw_table

    value = metadata["currency"]
    if not isinstance(value, str):
        return f"reward_metadata currency {value!r} is not a text code such as USD"
    code = value.strip().upper()
    entry = raw_table.get(code)
    units = entry.get("CcyMnrUnts") if isinstance(entry, Mapping) else None
    if not (isinstance(units, str) and units.isdigit()):
        return f"reward_metadata currency {value!r} is not an ISO 4217 currency code"
    metadata["currency"] = code
    return None


def _influitive_key(item: Mapping[str, Any]) -> str:
    raw_id = item.get("id")
    if isinstance(raw_id, bool) or raw_id is None:
        raise _Unreadable("redemption has no id")
    if isinstance(raw_id, float) and not raw_id.is_integer():
        raise _Unreadable(f"redemption id {raw_id!r} is not an integer or a string")
    if isinstance(raw_id, float):
        raw_id = int(raw_id)
    if not isinstance(raw_id, int | str):
        raise _Unreadable(f"redemption id has type {type(raw_id).__name__}")
    key = str(raw_id).strip()
    if not key:
        raise _Unreadable("redemption id is empty")
    if len(key) > MAX_ID_LENGTH or not key.isprintable():
        raise _Unreadable("redemption id is too long or not printable")
    return key


def _contact(data: Mapping[str, Any] | None, item: Mapping[str, Any]) -> dict[str, Any]:
    if data is None:
        return {"id": _text(item.get("contact_id")), "email": None, "first_name": None,
                "last_name": None, "name": None}
    return {name: _text(data.get(name))
            for name in ("id", "email", "first_name", "last_name", "name")}


def _influitive(item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored Influitive item (its side-loaded contact already folded in as ``contact``)."""
    key = _influitive_key(item)
    problems: list[str] = []
    reward = item.get("reward")
    reward_obj: Mapping[str, Any] = reward if isinstance(reward, Mapping) else {}
    nested = item.get("contact")
    data: Mapping[str, Any] | None = nested if isinstance(nested, Mapping) else None
    contact = _contact(data, item)
    email = None if data is None else data.get("email")
    bad_email = _email_problem(email if email is not None else contact["email"], "advocate")
    if bad_email:
        problems.append(bad_email)
    metadata = item.get("reward_metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        problems.append("reward_metadata is not an object")
        metadata = {}
    metadata = dict(metadata)
    bad_currency = _currency_problem(metadata)
    if bad_currency:
        problems.append(bad_currency)
    quantity = _int(item.get("quantity"))
    if item.get("quantity") is not None and (quantity is None or quantity < 1):
        problems.append(f"quantity {item.get('quantity')!r} is not a positive integer")
    if quantity is not None and quantity > 1:
        problems.append(f"quantity {quantity} is more than one; order it by hand")
    ship = item.get("shipping")
    shipping = None if not isinstance(ship, Mapping) else {
        name: _text(ship.get(name)) for name in
        ("address", "address_2", "city", "state", "zip", "country", "phone_number")
    }
    return {
        "format": FORMAT, "source": "influitive", "id": key,
        "reward_id": _text(item.get("reward_id")) or _text(reward_obj.get("id")),
        "reward_name": _text(item.get("reward_name")) or _text(reward_obj.get("name")),
        "contact": contact, "shipping": shipping, "points": _int(item.get("points")),
        "quantity": quantity if quantity and quantity > 0 else 1,
        "created_at": _text(item.get("created_at")), "metadata": metadata,
        "problems": problems,
    }


def _influenceio_text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        return str(value).strip() or None
    return None


def _influenceio(body: Mapping[str, Any]) -> dict[str, Any]:
    """A stored Influence.io ``points/redeemed`` body."""
    event_id = _influenceio_text(body.get("id"))
    if event_id is None:
        raise _Unreadable("field 'id' is missing or not a string/integer")
    if len(event_id) > MAX_ID_LENGTH or not event_id.isprintable():
        raise _Unreadable("field 'id' is too long or not printable")
    customer = body.get("customer")
    if not isinstance(customer, Mapping):
        raise _Unreadable("field 'customer' is missing or not an object")
    email = _influenceio_text(customer.get("email"))
    if email is None:
        raise _Unreadable("field 'customer.email' is missing")
    reward_type = _influenceio_text(body.get("rewardType"))
    rule_id = _influenceio_text(body.get("ruleId"))
    if reward_type is None and rule_id is None:
        raise _Unreadable("neither 'rewardType' nor 'ruleId' is set: nothing to route on")
    points = body.get("points")
    if points is not None and (isinstance(points, bool) or not isinstance(points, int | float)):
        raise _Unreadable("field 'points' is not a number")
    if isinstance(points, float) and not math.isfinite(points):
        raise _Unreadable("field 'points' is not a finite number")
    bad_email = _email_problem(customer.get("email"), "customer")
    return {
        "format": FORMAT, "source": "influenceio", "id": event_id,
        "reward_id": rule_id, "reward_name": reward_type,
        "contact": {
            "id": (_influenceio_text(customer.get("id"))
                   or _influenceio_text(customer.get("externalId"))),
            "email": email, "first_name": None, "last_name": None,
            "name": _influenceio_text(customer.get("name")),
        },
        "shipping": None,
        "points": int(points) if isinstance(points, int | float) else None,
        "quantity": 1, "created_at": None,
        "metadata": {"reward_type": reward_type, "rule_id": rule_id},
        "problems": [bad_email] if bad_email else [],
    }


def normalise(source: str, payload_text: str) -> str:
    """The ``redemption`` column's text for one stored row."""
    try:
        payload = json.loads(payload_text)
        if not isinstance(payload, dict):
            raise _Unreadable("stored payload is not a JSON object")
        found = _influenceio(payload) if source == "influenceio" else _influitive(payload)
    except (_Unreadable, ValueError) as exc:
        found = {"format": FORMAT, "unreadable": str(exc)}
    return json.dumps(found, ensure_ascii=True, separators=(",", ":"))


# --- the migration --------------------------------------------------------------------------

_ROWS = sa.table(
    "redemptions",
    sa.column("pk", sa.Integer()),
    sa.column("source", sa.Text()),
    sa.column("payload", sa.Text()),
    sa.column("redemption", sa.Text()),
)


def _backfill() -> None:
    conn = op.get_bind()
    update = (
        sa.update(_ROWS)
        .where(_ROWS.c.pk == sa.bindparam("b_pk"))
        .values(redemption=sa.bindparam("b_redemption"))
    )
    after = 0
    while True:
        rows = conn.execute(
            sa.select(_ROWS.c.pk, _ROWS.c.source, _ROWS.c.payload)
            .where(_ROWS.c.pk > after, _ROWS.c.redemption.is_(None))
            .order_by(_ROWS.c.pk)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        conn.execute(update, [
            {"b_pk": pk, "b_redemption": normalise(source, payload)}
            for pk, source, payload in rows
        ])
        after = rows[-1][0]


def upgrade() -> None:
    op.add_column("redemptions", sa.Column("redemption", sa.Text(), nullable=True))
    if not context.is_offline_mode():
        _backfill()


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"downgrading below 0006 needs SQLite 3.35 or later (ALTER TABLE DROP COLUMN); "
            f"this Python has SQLite {sqlite3.sqlite_version}"
        )
    op.drop_column("redemptions", "redemption")
