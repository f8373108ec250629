"""Idempotency keys: derived from the redemption, never random, so a replayed order is
recognised by the vendor on any machine and after any restart. Alphanumeric and short enough
for every vendor (Tango: at most 100 characters)."""

from __future__ import annotations

import hashlib

KEY_PREFIX = "rp"


def idempotency_key(*, namespace: str, source: str, redemption_id: str, generation: int = 0) -> str:
    """``namespace`` is the Influitive org id (so two orgs sharing a vendor account never
    collide); ``generation`` moves on only when the vendor confirmed no order exists and a
    person asked for a fresh attempt."""
    material = f"{namespace}\x1f{source}\x1f{redemption_id}"
    if generation:
        material += f"\x1f{generation}"
    return KEY_PREFIX + hashlib.sha256(material.encode()).hexdigest()[:40]


_KEY_LENGTH = len(KEY_PREFIX) + 40
_HEX = frozenset("0123456789abcdef")


def is_our_key(text: str | None) -> bool:
    """Whether ``text`` has the shape of our keys: an order under one is reward-poller's."""
    return (
        text is not None and len(text) == _KEY_LENGTH and text.startswith(KEY_PREFIX)
        and set(text[len(KEY_PREFIX):]) <= _HEX
    )
