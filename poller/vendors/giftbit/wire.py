"""Giftbit: the campaign id, the codes and states it answers, and how they are read."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import httpx

from poller.domain.keys import is_our_key
from poller.vendors.base import json_or_none

MAX_CAMPAIGN_ID = 40
INVALID_BRAND = "ERROR_CAMPAIGN_INVALID_BRAND"
NO_SUCH_BRAND = "ERROR_BRANDS_NO_SUCH_BRAND"
NO_CONTACTS = "ERROR_CAMPAIGN_NO_CONTACTS"
FUNDS_REQUIRED = "INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED"
FUNDS_PENDING = "INFO_CAMPAIGN_CREATED_FUNDS_PENDING"
API_CREATING = "API_CREATING"
AWAITING_FUNDS = "AWAITING_FUNDS"
CAMPAIGN_CREATED = "CAMPAIGN_CREATED"

DELIVERED = frozenset({"DELIVERED"})
UNDELIVERABLE = frozenset({"UNDELIVERABLE", "COMPLAINT", "UNSUBSCRIBED"})
"""Final for this recipient: Giftbit will not deliver (or send again) to that address."""
NOT_YET = frozenset({"UNSENT", "TEMPORARILY_UNDELIVERABLE"})

_CAMPAIGN_ID = re.compile(rf"^[A-Za-z0-9]{{1,{MAX_CAMPAIGN_ID}}}$")

def campaign_id(idempotency_key: str) -> str:
    """The Giftbit campaign ``id`` for an idempotency key: the key itself when it fits the
    assumed limits, else a stable hash of it (see the package doc)."""
    if _CAMPAIGN_ID.fullmatch(idempotency_key):
        return idempotency_key
    return "rp" + hashlib.sha256(idempotency_key.encode()).hexdigest()[: MAX_CAMPAIGN_ID - 2]


def is_our_campaign(text: str) -> bool:
    """Whether a campaign id has the shape ``campaign_id`` gives one of our keys."""
    return (text.startswith("rp") and len(text) == MAX_CAMPAIGN_ID
            and set(text[2:]) <= set("0123456789abcdef")) or is_our_key(text)


_DUPLICATE = re.compile(r"duplicate|already[ _-]?(exists|used|taken)|id[ _-]?exists|in use",
                        re.IGNORECASE)
_RECIPIENT = re.compile(r"e-?mail|contact|recipient", re.IGNORECASE)
_FUNDS = re.compile(r"insufficient|\bfunds?\b|balance", re.IGNORECASE)


def _campaign_of(data: Any) -> dict[str, Any] | None:
    campaign = data.get("campaign") if isinstance(data, dict) else None
    return campaign if isinstance(campaign, dict) else None


def _info_code(data: Any) -> str | None:
    info = data.get("info") if isinstance(data, dict) else None
    code = info.get("code") if isinstance(info, dict) else None
    return code if isinstance(code, str) else None


def _first_email(campaign: Mapping[str, Any]) -> str | None:
    contacts = campaign.get("contacts")
    if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
        email = contacts[0].get("email")
        return email if isinstance(email, str) else None
    return None


def _error_of(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of a Giftbit error body (None when the body is not one)."""
    data = json_or_none(response)
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None


def _is_duplicate(error: Mapping[str, Any] | None) -> bool:
    if not error:
        return False
    text = " ".join(str(error.get(k, "")) for k in ("code", "name", "message"))
    return bool(_DUPLICATE.search(text))


def _funds_of(data: Any) -> dict[str, int] | None:
    """``{"USD": 125000}`` from ``GET /funds``: ``fundsbycurrency`` maps each currency to
    ``{"available_in_cents", "pending_in_cents", "reserved_in_cents"}`` (a list of
    ``{"currency", "available_in_cents"}`` is tolerated too)."""
    if not isinstance(data, dict):
        return None
    by = next((data[k] for k in ("fundsbycurrency", "funds_by_currency", "funds")
               if k in data), None)
    found: dict[str, int] = {}
    if isinstance(by, dict):
        for currency, value in by.items():
            cents = value.get("available_in_cents") if isinstance(value, dict) else value
            if isinstance(cents, int) and not isinstance(cents, bool):
                found[str(currency).upper()] = cents
    elif isinstance(by, list):
        for value in by:
            if isinstance(value, dict) and isinstance(value.get("available_in_cents"), int):
                found[str(value.get("currency") or value.get("currencyisocode") or "?")
                      .upper()] = value["available_in_cents"]
    else:
        return None
    return found

