"""The HTTP vendor's wire format: what is sent to your endpoint and what it answers.

The request
    ``POST {url}`` with ``Content-Type: application/json`` and this body (keys sorted, no
    spaces, non-ASCII characters escaped as ``\\uXXXX``; ``amount`` is a decimal string so no
    float rounding ever touches money)::

        {"advocate": {"email": "ada@example.com", "name": "Ada Lovelace",
                      "shipping": null | {"address", "address_2", "city", "state", "zip",
                                          "country", "phone_number"}},
         "idempotency_key": "rp3f9c...",
         "redemption": {"id": "1021", "reward_name": "$25 gift card", "source": "influitive"},
         "routing": {"amount": "25.00", "currency": "USD", "product": "AMZN" | null,
                     "vendor": "http"}}

    Headers: ``Idempotency-Key: <idempotency_key>`` and
    ``X-Reward-Poller-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is the
    HMAC-SHA256, keyed with the configured ``secret``, of ``"<t>.<raw body>"`` (the bytes
    exactly as received). ``verify_signature`` below is the receiver's side: it recomputes
    the HMAC in constant time and rejects a timestamp older (or further in the future) than
    ``max_age`` seconds, so a captured request cannot be replayed later. Several ``v1=``
    entries may appear (a receiver rotating secrets accepts any that matches).

The answer
    A 2xx with ``{"status": "accepted" | "pending" | "refused", "order_id": "...",
    "message": "..."}``:

    * ``accepted``: done. ``message`` (optional, shown to the advocate as the delivery, with
      any URL removed) and ``order_id`` (optional; the idempotency key stands in for it).
    * ``pending``: taken, not final. The worker asks again on later cycles by repeating the
      *identical* request (same body, same ``Idempotency-Key``, a fresh signature) until the
      answer is ``accepted`` or ``refused``.
    * ``refused``: the redemption is refused (the advocate's points are refunded) and
      ``message`` is the reason the advocate reads.

    Anything else: 5xx and 429 are transient (retried with backoff, Retry-After honoured),
    other 4xx are for the operator (held, never refused), a 2xx that is not the JSON above
    is for the operator too.

The receiver's side of the contract
    Be idempotent on ``Idempotency-Key``: answer a repeat with the current state of the first
    order, never a second order. A non-2xx answer means "not taken": the same request comes
    again later.

The look-up (optional: ``lookup_url``)
    ``GET {lookup_url}`` with ``{idempotency_key}`` in it replaced by the key, the header
    ``Idempotency-Key: <key>`` and ``X-Reward-Poller-Signature: t=<unix seconds>,v1=<hex>``
    where ``<hex>`` signs the key's bytes in place of a body (``verify_signature(SECRET,
    header, key.encode())``). It must create nothing. Answers: a 2xx with the order's answer
    as above (found); a 404 with ``{"status": "not_found"}`` (no order under the key);
    anything else (another 404, 5xx, 429, 401, an unreadable body, no answer) is "could not
    ask", never "no order".

The order list (optional: ``orders_url``, read by ``reward-poller audit``)
    ``GET {orders_url}`` with the query ``since=<RFC 3339>&until=<RFC 3339>`` (and
    ``&cursor=<c>`` after the first page) appended to any query ``orders_url`` has, and the
    header ``X-Reward-Poller-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` signs the
    whole query string as sent (the bytes after ``?``) in place of a body
    (``verify_signature(SECRET, header, request.url.query.encode())``). It must create
    nothing. Answer: a 2xx with::

        {"orders": [{"idempotency_key": "rp3f9c..." | null, "order_id": "...",
                     "created_at": "2026-05-01T14:11:09Z",
                     "status": "accepted" | "pending" | "refused" | "cancelled" | "failed",
                     "amount": "25.00", "currency": "USD", "product": "AMZN" | null,
                     "email": "ada@example.com" | null}, ...],
         "next_cursor": "<opaque>" | null}

    listing every order created in [since, until), a page at a time: ``next_cursor`` says
    there is more and is sent back as ``cursor`` (a cursor seen twice ends the read as an
    error). An order with no ``idempotency_key`` was not placed by reward-poller. Anything
    else (non-2xx, an unreadable body, no answer) is "could not read the list", never an
    empty one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import asdict

import httpx
from pydantic import SecretStr

from poller.domain.model import OrderRequest
from poller.vendors.base import scrub

SIGNATURE_HEADER = "X-Reward-Poller-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
LIST_STATUSES = ("accepted", "pending", "refused", "cancelled", "failed")
"""The ``status`` values of an order in the order list."""
NOT_FOUND = "not_found"
"""The ``status`` of the look-up's 404 answer that means "no order under this key"."""
DEFAULT_MAX_AGE = 300.0
"""What ``verify_signature`` tolerates by default between signing and checking, seconds."""


# --- the signature ----------------------------------------------------------------------


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes | SecretStr, body: bytes, timestamp: int) -> str:
    """The ``X-Reward-Poller-Signature`` value for ``body`` signed at ``timestamp``."""
    digest = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str | bytes, header: str | None, body: bytes,
    max_age: float | None = DEFAULT_MAX_AGE, *, now: float | None = None,
) -> bool:
    """For receivers: True when ``header`` (the ``X-Reward-Poller-Signature`` value) signs
    ``body`` (the raw bytes received) with ``secret`` and, unless ``max_age`` is None, was
    made at most ``max_age`` seconds from ``now`` (either way). Never raises on bad input.

    ::

        from poller.vendors.http import verify_signature
        if not verify_signature(SECRET, request.headers.get("X-Reward-Poller-Signature"),
                                await request.body()):
            return Response(status_code=401)
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        return False
    if max_age is not None:
        current = time.time() if now is None else now
        if abs(current - timestamp) > max_age:
            return False
    expected = signature(secret, body, timestamp).partition(",v1=")[2]
    # Compare against every candidate (no early exit on the first match).
    matches = [hmac.compare_digest(expected, c) for c in candidates]
    return any(matches)


# --- the order body ---------------------------------------------------------------------


def order_body(request: OrderRequest) -> bytes:
    """The JSON order for ``request``: the same bytes for the same request, every time."""
    shipping = asdict(request.shipping) if request.shipping is not None else None
    document = {
        "idempotency_key": request.idempotency_key,
        "redemption": {
            "id": request.redemption_id,
            "source": request.source,
            "reward_name": request.reward_name,
        },
        "advocate": {
            "name": request.recipient_name,
            "email": request.recipient_email,
            "shipping": shipping,
        },
        "routing": {
            "vendor": request.vendor,
            "product": request.product,
            "amount": str(request.amount),
            "currency": request.currency,
        },
    }
    # ASCII only: any character (a lone surrogate from a malformed payload too) becomes a
    # \uXXXX escape, so the bytes encode, store and repeat exactly.
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("ascii")


def _answer_of(response: httpx.Response) -> tuple[str, str | None, str] | None:
    """(status, order_id, message) from a 2xx answer, or None when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    status = data.get("status")
    if not isinstance(status, str) or status.lower() not in ("accepted", "pending", "refused"):
        return None
    order_id = data.get("order_id")
    message = data.get("message")
    return (
        status.lower(),
        str(order_id)[:200] if isinstance(order_id, str | int) and str(order_id) else None,
        scrub(message) if isinstance(message, str) else "",
    )


def _status_of(response: httpx.Response) -> str | None:
    """The ``status`` field of a JSON answer, lower-cased; None without one."""
    try:
        data = response.json()
    except ValueError:
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status.lower() if isinstance(status, str) else None


def _message_of(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        for name in ("message", "error", "detail"):
            if isinstance(data.get(name), str):
                return str(data[name])
    return ""


