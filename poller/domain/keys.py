"""Idempotency keys: derived from the redemption, never random.

The same redemption gets the same key on any machine and after any restart, so a replayed
order is recognised by the vendor. The key is alphanumeric and short enough for every
vendor in docs (Tango: alphanumeric, at most 100 characters).
"""

from __future__ import annotations

import hashlib


def idempotency_key(*, namespace: str, source: str, redemption_id: str, generation: int = 0) -> str:
    """``namespace`` is the Influitive org id (so two orgs sharing a vendor account never
    collide); ``generation`` moves on only when the vendor confirmed no order exists and a
    person asked for a fresh attempt."""
    material = f"{namespace}\x1f{source}\x1f{redemption_id}"
    if generation:
        material += f"\x1f{generation}"
    return "rp" + hashlib.sha256(material.encode()).hexdigest()[:40]
