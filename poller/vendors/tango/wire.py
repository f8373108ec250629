"""Tango Card: the shapes of its answers (orders, error keys) and how they are read."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from poller.domain.model import OrderStatus
from poller.vendors.base import json_or_none

CONFIG_KEYS = frozenset({"422.024", "422.025", "422.026", "422.027", "422.030", "422.097",
                         "422.098", "422.099"})
"""UTID, amount and inactive-item errors: the operator's routing config."""
RECIPIENT_KEYS = frozenset({"422.009", "422.028", "422.029", "422.134"})
"""Errors about the recipient: refuse (the advocate's address)."""
FUNDS_KEY = "402.001"
IN_PROCESS_KEY = "409.002"
EXISTS_KEY = "409.024"
NO_ORDERS_KEY = "404.110"
_EXTERNAL_REF = re.compile(r"^[A-Za-z0-9]{1,100}$")


# Order states (docs/vendors.md: PENDING is a review of up to 2-3 business days). An unknown
# state is read as PENDING: asking again later is safe, a wrong final answer is not.
_ORDER_STATUS: Mapping[str, OrderStatus] = {
    "COMPLETE": OrderStatus.COMPLETE,
    "COMPLETED": OrderStatus.COMPLETE,
    "PENDING": OrderStatus.PENDING,
    "PARTIAL": OrderStatus.NEEDS_PERSON,
    "FAILED": OrderStatus.FAILED,
    "CANCELED": OrderStatus.FAILED,
    "CANCELLED": OrderStatus.FAILED,
}


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _order_of(data: Any) -> dict[str, Any] | None:
    """An order object (Tango answers a create with the order at the top level; some
    answers may wrap it in ``order``)."""
    if isinstance(data, dict) and isinstance(data.get("order"), dict):
        data = data["order"]
    if not isinstance(data, dict) or not isinstance(data.get("referenceOrderID"), str | int):
        return None
    return data


def _reward_link(reward: Mapping[str, Any]) -> str | None:
    """The first redemption URL in the reward (layout unconfirmed; see the package doc)."""
    candidates: list[Any] = []
    for entry in reward.get("credentialList") or []:
        if isinstance(entry, dict):
            kind = str(entry.get("type", "")).lower() + str(entry.get("label", "")).lower()
            if "url" in kind or "link" in kind:
                candidates.append(entry.get("value"))
    credentials = reward.get("credentials")
    if isinstance(credentials, dict):
        candidates.extend(v for k, v in credentials.items() if "url" in str(k).lower())
    candidates.append(reward.get("redemptionUrl"))
    for value in candidates:
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            return value
    return None


def _keys_of(response: httpx.Response) -> list[str]:
    """Tango's error ids (``i18nKey``), top level first, then each of ``errors[]``."""
    data = json_or_none(response)
    if not isinstance(data, dict):
        return []
    found = [data.get("i18nKey")] + [e.get("i18nKey") for e in _errors_of(response)]
    return list(dict.fromkeys(k.strip() for k in found if isinstance(k, str) and k.strip()))


def _errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    data = json_or_none(response)
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, dict):
        errors = [errors]
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


_FUNDS = re.compile(r"insufficient|\bfunds?\b|balance", re.IGNORECASE)
_RECIPIENT = re.compile(r"recipient|e-?mail|first_?name|last_?name", re.IGNORECASE)
_ITEM = re.compile(r"\butid\b|\bitem\b|amount|denomination|catalog|\bbrand\b|face_?value",
                   re.IGNORECASE)


def classify_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """``funds``, ``recipient``, ``product``, ``both`` or ``other`` for a 4xx ``errors`` list
    whose ``i18nKey`` values are not among the documented ones (those decide first, see
    ``TangoVendor._invalid_request``).

    Leans towards ``other`` (hold for a person): refusing a redemption refunds the points,
    a hold costs only a look. The culprit is read from ``path`` (and ``field``, ``i18nKey``,
    ``code``), then from ``message``."""
    kinds: set[str] = set()
    seen = False
    for error in errors:
        seen = True
        where = " ".join(str(error.get(k, "")) for k in ("path", "field", "i18nKey", "code"))
        message = str(error.get("message", ""))
        if _FUNDS.search(where) or _FUNDS.search(message):
            return "funds"
        if _RECIPIENT.search(where) or (not where.strip() and _RECIPIENT.search(message)):
            kinds.add("recipient")
        elif _ITEM.search(where) or (not where.strip() and _ITEM.search(message)):
            kinds.add("product")
        else:
            kinds.add("other")
    if not seen or not kinds or "other" in kinds:
        return "other"
    return "both" if len(kinds) == 2 else kinds.pop()

