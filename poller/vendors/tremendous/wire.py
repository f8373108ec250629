"""Tremendous: the shapes of its answers (orders, errors) and how they are read."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from poller.domain.model import OrderStatus
from poller.vendors.base import json_or_none

# Order states (docs/vendors.md). An unknown state is read as PENDING: asking again later
# is safe, while calling it COMPLETE or FAILED could mislead the advocate.
_ORDER_STATUS: Mapping[str, OrderStatus] = {
    "EXECUTED": OrderStatus.COMPLETE,
    "OPEN": OrderStatus.PENDING,
    "CART": OrderStatus.PENDING,
    "PENDING APPROVAL": OrderStatus.PENDING,
    "PENDING INTERNAL PAYMENT APPROVAL": OrderStatus.PENDING,
    "PENDING SETTLEMENT": OrderStatus.PENDING,
    "FAILED": OrderStatus.FAILED,
    "CANCELED": OrderStatus.FAILED,
    "CANCELLED": OrderStatus.FAILED,
}


def _order_of(response: httpx.Response) -> dict[str, Any] | None:
    data = json_or_none(response)
    order = data.get("order") if isinstance(data, dict) else None
    if not isinstance(order, dict) or not isinstance(order.get("id"), str | int):
        return None
    return order


def _first_reward(order: Mapping[str, Any]) -> Mapping[str, Any]:
    rewards = order.get("rewards")
    if isinstance(rewards, list) and rewards and isinstance(rewards[0], dict):
        return rewards[0]
    return {}


def _errors_of(response: httpx.Response) -> dict[str, Any] | None:
    """The ``errors`` object of an error body, tolerating a list of them."""
    data = json_or_none(response)
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        errors = next((e for e in errors if isinstance(e, dict)), None)
    return errors if isinstance(errors, dict) else None


def _is_tremendous_error(response: httpx.Response) -> bool:
    """A 404 that Tremendous itself wrote (its error shape), as opposed to a wrong base_url
    answered by some other server: only the former may say "no such order".

    That Tremendous's 404 carries the ``errors`` body is unconfirmed (the docs give that
    shape for errors in general); if it does not, look-ups of unknown keys hold for an
    operator instead of returning None, which is the safe way to be wrong."""
    return _errors_of(response) is not None


_RECIPIENT_WORDS = frozenset({"recipient", "recipients", "email"})
_PRODUCT_WORDS = frozenset(
    {"product", "products", "value", "denomination", "currency_code", "sku", "catalog"}
)
_CONFIG_WORDS = frozenset({"payment", "funding_source_id", "delivery", "method"})
_RECIPIENT_TEXT = re.compile(r"\b(recipient|e-?mail)\b", re.IGNORECASE)
_PRODUCT_TEXT = re.compile(r"\b(products?|denomination|sku|catalog)\b", re.IGNORECASE)


def _paths(payload: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The key paths leading to each leaf of an error payload."""
    if isinstance(payload, dict):
        if not payload and prefix:
            yield prefix
        for key, value in payload.items():
            yield from _paths(value, (*prefix, str(key).lower()))
    elif isinstance(payload, list) and any(isinstance(v, dict | list) for v in payload):
        for value in payload:
            yield from _paths(value, prefix)
    elif prefix:
        yield prefix


def _classify_invalid(errors: Mapping[str, Any] | None) -> str:
    """``recipient``, ``product``, ``config``, ``both`` or ``other`` for a 400/422 body.

    The payload layout is unconfirmed, so this leans towards ``other`` (hold for a person):
    refusing a redemption refunds the advocate's points, a hold costs only a look.
    """
    if not errors:
        return "other"
    kinds: set[str] = set()
    for path in _paths(errors.get("payload")):
        words = set(path)
        if words & _RECIPIENT_WORDS:
            kinds.add("recipient")
        elif words & _PRODUCT_WORDS:
            kinds.add("product")
        elif words & _CONFIG_WORDS:
            kinds.add("config")
        else:
            kinds.add("other")
    if not kinds:
        message = errors.get("message")
        text = message if isinstance(message, str) else ""
        if _RECIPIENT_TEXT.search(text):
            kinds.add("recipient")
        if _PRODUCT_TEXT.search(text):
            kinds.add("product")
        if len(kinds) != 1:
            return "other"
    if "other" in kinds or not kinds:
        return "other"
    if "config" in kinds:
        return "config" if kinds <= {"config", "product"} else "other"
    return "both" if len(kinds) == 2 else kinds.pop()

