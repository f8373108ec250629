"""Tolerant parsing of Influitive redemption payloads.

docs/influitive-api.md lists which fields are assumed rather than confirmed; every assumption
here degrades to "record it and hold it for a person with a reason", never to a crash that
would also stop the good redemptions of the same poll.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from poller.domain.model import INFLUITIVE, Contact, Redemption, Shipping, email_problem
from poller.domain.money import CurrencyProblem, parse_currency

MAX_ID_LENGTH = 200
# ASCII digits only (str.isdigit also takes "²"), and short enough for int() to accept.
_INTEGER = re.compile(r"-?[0-9]{1,18}")


def currency_problem(metadata: dict[str, Any]) -> str | None:
    """Upper-cases ``metadata["currency"]`` in place when it is an ISO 4217 code (the one
    place a code from outside is normalised); the problem, naming the value, otherwise."""
    if "currency" not in metadata:
        return None
    try:
        metadata["currency"] = parse_currency(metadata["currency"])
    except CurrencyProblem as exc:
        return f"reward_metadata {exc}"
    return None


class Unkeyable(ValueError):
    """An item without a usable id: it cannot be recorded under a key, so it is reported."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
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


def redemption_key(item: Mapping[str, Any]) -> str:
    """The ledger key of a raw item, or Unkeyable with the reason."""
    raw_id = item.get("id")
    if isinstance(raw_id, bool) or raw_id is None:
        raise Unkeyable("redemption has no id")
    if isinstance(raw_id, float) and not raw_id.is_integer():
        raise Unkeyable(f"redemption id {raw_id!r} is not an integer or a string")
    if isinstance(raw_id, float):
        raw_id = int(raw_id)
    if not isinstance(raw_id, int | str):
        raise Unkeyable(f"redemption id has type {type(raw_id).__name__}")
    key = str(raw_id).strip()
    if not key:
        raise Unkeyable("redemption id is empty")
    if len(key) > MAX_ID_LENGTH or not key.isprintable():
        raise Unkeyable("redemption id is too long or not printable")
    return key


def contacts_by_id(contacts: Iterable[Any]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for c in contacts:
        if isinstance(c, Mapping):
            cid = _text(c.get("id"))
            if cid is not None:
                out[cid] = c
    return out


def _contact(item: Mapping[str, Any], contacts: Mapping[str, Mapping[str, Any]]) -> Contact:
    nested = item.get("contact")
    data: Mapping[str, Any] | None = nested if isinstance(nested, Mapping) else None
    if data is None:
        cid = _text(item.get("contact_id"))
        if cid is not None:
            data = contacts.get(cid)
    if data is None:
        return Contact(id=_text(item.get("contact_id")))
    return Contact(
        id=_text(data.get("id")),
        email=_text(data.get("email")),
        first_name=_text(data.get("first_name")),
        last_name=_text(data.get("last_name")),
        name=_text(data.get("name")),
    )


def _raw_email(item: Mapping[str, Any], contacts: Mapping[str, Mapping[str, Any]]) -> Any:
    """The contact's e-mail value exactly as received (``_contact`` strips it)."""
    nested = item.get("contact")
    data: Mapping[str, Any] | None = nested if isinstance(nested, Mapping) else None
    if data is None:
        cid = _text(item.get("contact_id"))
        data = contacts.get(cid) if cid is not None else None
    return None if data is None else data.get("email")


def _with_contact(
    item: Mapping[str, Any], contacts: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The item as received, with a side-loaded contact folded in as ``contact`` so the
    stored payload alone is enough to parse the redemption again (parse is idempotent)."""
    raw = dict(item)
    if not isinstance(raw.get("contact"), Mapping):
        cid = _text(item.get("contact_id"))
        if cid is not None and cid in contacts:
            raw["contact"] = dict(contacts[cid])
    return raw


def _shipping(item: Mapping[str, Any]) -> Shipping | None:
    data = item.get("shipping")
    if not isinstance(data, Mapping):
        return None
    return Shipping(
        address=_text(data.get("address")),
        address_2=_text(data.get("address_2")),
        city=_text(data.get("city")),
        state=_text(data.get("state")),
        zip=_text(data.get("zip")),
        country=_text(data.get("country")),
        phone_number=_text(data.get("phone_number")),
    )


def parse_redemption(
    item: Mapping[str, Any], contacts: Mapping[str, Mapping[str, Any]] | None = None
) -> Redemption:
    """Parse one list item. Raises Unkeyable only when there is no usable id."""
    key = redemption_key(item)
    problems: list[str] = []
    reward = item.get("reward")
    reward_obj: Mapping[str, Any] = reward if isinstance(reward, Mapping) else {}
    reward_id = _text(item.get("reward_id")) or _text(reward_obj.get("id"))
    reward_name = _text(item.get("reward_name")) or _text(reward_obj.get("name"))
    contact = _contact(item, contacts or {})
    email = _raw_email(item, contacts or {})
    bad_email = email_problem(email if email is not None else contact.email)
    if bad_email:
        problems.append(bad_email)
    metadata = item.get("reward_metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        problems.append("reward_metadata is not an object")
        metadata = {}
    metadata = dict(metadata)
    bad_currency = currency_problem(metadata)
    if bad_currency:
        problems.append(bad_currency)
    quantity = _int(item.get("quantity"))
    if item.get("quantity") is not None and (quantity is None or quantity < 1):
        problems.append(f"quantity {item.get('quantity')!r} is not a positive integer")
    if quantity is not None and quantity > 1:
        problems.append(f"quantity {quantity} is more than one; order it by hand")
    return Redemption(
        source=INFLUITIVE,
        id=key,
        reward_id=reward_id,
        reward_name=reward_name,
        contact=contact,
        shipping=_shipping(item),
        points=_int(item.get("points")),
        quantity=quantity if quantity and quantity > 0 else 1,
        created_at=_text(item.get("created_at")),
        metadata=metadata,
        raw=_with_contact(item, contacts or {}),
        problems=tuple(problems),
    )


def parse_page(body: Any) -> tuple[list[Mapping[str, Any]], dict[str, Mapping[str, Any]]]:
    """Split one list page into raw items and side-loaded contacts.

    Accepts the documented object (``reward_redemptions`` + ``contacts``) and, defensively,
    a bare array. Raises ValueError when the page has neither shape.
    """
    if isinstance(body, list):
        return [i for i in body if isinstance(i, Mapping)], {}
    if not isinstance(body, Mapping):
        raise ValueError(f"list page is a {type(body).__name__}, not an object")
    items = body.get("reward_redemptions")
    if items is None:
        items = body.get("data")
    if not isinstance(items, list):
        raise ValueError("list page has no reward_redemptions array")
    contacts = body.get("contacts")
    return list(items), contacts_by_id(contacts if isinstance(contacts, list) else [])
