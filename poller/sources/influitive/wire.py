"""Tolerant parsing of Influitive list pages and redemption payloads. docs/influitive.md lists
which fields are assumed rather than confirmed; every assumption here degrades to "record it
and hold it for a person with a reason", never to a crash that would also stop the good
redemptions of the same poll."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import structlog

from poller.domain.model import INFLUITIVE, Contact, Redemption, Shipping, email_problem
from poller.domain.money import CurrencyProblem, parse_currency

log = structlog.get_logger(__name__)

MAX_ID_LENGTH = 200
# ASCII digits only (str.isdigit also takes "²"), and short enough for int() to accept.
_INTEGER = re.compile(r"-?[0-9]{1,18}")


class Unkeyable(ValueError):
    """An item without a usable id: it cannot be recorded under a key, so it is reported."""


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    return text or None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _texts(cls: Any, data: Mapping[str, Any]) -> Any:
    """A Contact or Shipping from the same-named fields of ``data``, each as text."""
    return cls(**{f.name: _text(data.get(f.name)) for f in fields(cls)})


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


def _contact_data(
    item: Mapping[str, Any], contacts: Mapping[str, Mapping[str, Any]],
) -> Mapping[str, Any] | None:
    """The advocate, nested as ``contact`` or side-loaded by ``contact_id``."""
    nested = item.get("contact")
    if isinstance(nested, Mapping):
        return nested
    cid = _text(item.get("contact_id"))
    return contacts.get(cid) if cid is not None else None


def parse_redemption(
    item: Mapping[str, Any], contacts: Mapping[str, Mapping[str, Any]] | None = None
) -> Redemption:
    """Parse one list item. Raises Unkeyable only when there is no usable id."""
    key = redemption_key(item)
    problems: list[str] = []
    reward = item.get("reward")
    reward_obj: Mapping[str, Any] = reward if isinstance(reward, Mapping) else {}
    data = _contact_data(item, contacts or {})
    contact = (_texts(Contact, data) if data is not None
               else Contact(id=_text(item.get("contact_id"))))
    # The e-mail exactly as received: the Contact's is stripped.
    bad_email = email_problem(data.get("email") if data is not None else None)
    if bad_email:
        problems.append(bad_email)
    metadata = item.get("reward_metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        problems.append("reward_metadata is not an object")
        metadata = {}
    metadata = dict(metadata)
    if "currency" in metadata:
        # The one place a code from outside is normalised.
        try:
            metadata["currency"] = parse_currency(metadata["currency"])
        except CurrencyProblem as exc:
            problems.append(f"reward_metadata {exc}")
    quantity = _int(item.get("quantity"))
    if item.get("quantity") is not None and (quantity is None or quantity < 1):
        problems.append(f"quantity {item.get('quantity')!r} is not a positive integer")
    if quantity is not None and quantity > 1:
        problems.append(f"quantity {quantity} is more than one; order it by hand")
    # The item as received, with a side-loaded contact folded in as ``contact``, so the
    # stored payload alone is enough to parse the redemption again (parse is idempotent).
    raw = dict(item)
    if data is not None and not isinstance(item.get("contact"), Mapping):
        raw["contact"] = dict(data)
    shipping = item.get("shipping")
    return Redemption(
        source=INFLUITIVE,
        id=key,
        reward_id=_text(item.get("reward_id")) or _text(reward_obj.get("id")),
        reward_name=_text(item.get("reward_name")) or _text(reward_obj.get("name")),
        contact=contact,
        shipping=_texts(Shipping, shipping) if isinstance(shipping, Mapping) else None,
        points=_int(item.get("points")),
        quantity=quantity if quantity and quantity > 0 else 1,
        created_at=_text(item.get("created_at")),
        metadata=metadata,
        raw=raw,
        problems=tuple(problems),
    )


def parse_page(body: Any) -> tuple[list[Mapping[str, Any]], dict[str, Mapping[str, Any]]]:
    """Raw items and side-loaded contacts of the documented object (``reward_redemptions`` +
    ``contacts``) or, defensively, a bare array; else ValueError."""
    if isinstance(body, list):
        return [i for i in body if isinstance(i, Mapping)], {}
    if not isinstance(body, Mapping):
        raise ValueError(f"list page is a {type(body).__name__}, not an object")
    items = body.get("reward_redemptions")
    if items is None:
        items = body.get("data")
    if not isinstance(items, list):
        raise ValueError("list page has no reward_redemptions array")
    listed = body.get("contacts")
    contacts: dict[str, Mapping[str, Any]] = {}
    for contact in listed if isinstance(listed, list) else []:
        cid = _text(contact.get("id")) if isinstance(contact, Mapping) else None
        if cid is not None:
            contacts[cid] = contact
    return list(items), contacts


@dataclass(frozen=True, kw_only=True)
class PageItems:
    """The items of one list page, parsed: every item is either a redemption or a reason."""

    redemptions: tuple[Redemption, ...]
    rejected: tuple[str, ...]


def parse_items(body: Any, page: int = 1) -> PageItems:
    """ValueError only for a page of the wrong shape: an item without a usable id becomes a
    rejection reason, one with an id is always kept (held if it cannot be parsed)."""
    raw_items, contacts = parse_page(body)
    # parse_page drops non-objects from a bare array; report them like any other bad item.
    items: list[Any] = list(body) if isinstance(body, list) else raw_items
    redemptions: list[Redemption] = []
    rejected: list[str] = []
    for index, item in enumerate(items):
        where = f"page {page} item {index}"
        if not isinstance(item, Mapping):
            rejected.append(f"{where}: item is a {type(item).__name__}, not an object")
            continue
        try:
            redemptions.append(parse_redemption(item, contacts))
        except Unkeyable as exc:
            rejected.append(f"{where}: {exc}")
        except (ValueError, TypeError, RecursionError) as exc:
            # Keyable but unparseable (parse_redemption may raise on odd numbers): record
            # it and hold it for a person rather than lose it.
            try:
                key = redemption_key(item)
            except Unkeyable as unkeyable:
                rejected.append(f"{where}: {unkeyable}")
                continue
            log.warning("influitive.item.unparseable", redemption_id=key,
                        error=type(exc).__name__)
            problem = f"payload could not be parsed ({type(exc).__name__}); check it by hand"
            redemptions.append(Redemption(id=key, raw=dict(item), problems=(problem,)))
    return PageItems(redemptions=tuple(redemptions), rejected=tuple(rejected))
