"""The HTTP vendor's wire format: the signature, the order body and the answers
(docs/vendors.md, "The generic HTTP vendor"). ``verify_signature`` is the receiver's side
of the signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import asdict

import httpx
from pydantic import SecretStr

from poller.domain.model import OrderRequest
from poller.vendors.base import json_or_none, obj, scrub

SIGNATURE_HEADER = "X-Reward-Poller-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
NOT_FOUND = "not_found"
"""The ``status`` of the look-up's 404 answer that means "no order under this key"."""
KEY_PLACEHOLDER = "{idempotency_key}"
"""Where the key goes in ``lookup_url``."""


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
    max_age: float | None = 300.0, *, now: float | None = None,
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
    data = obj(json_or_none(response))
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


def _message_of(response: httpx.Response) -> str:
    data = obj(json_or_none(response))
    return next((data[k] for k in ("message", "error", "detail") if isinstance(data.get(k), str)),
                "")
