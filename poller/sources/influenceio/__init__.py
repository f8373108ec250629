"""Influence.io, the second source: ``points/redeemed`` webhooks become redemptions
(docs/influenceio.md). Influence.io pushes; nothing is polled. It has no decision endpoint:
the loop closes with the vendor's own delivery, and a refusal's points are given back by hand
or through the Platform API (``refunds``)."""

from __future__ import annotations

SOURCE = "influenceio"
REDEEMED_TOPIC = "points/redeemed"
KNOWN_TOPICS: frozenset[str] = frozenset({
    "customers/updated",
    "customers/tier_changed",
    "customers/tier_entry_reward_earned",
    "points/earned",
    "points/redeemed",
    "referrals/started",
    "referrals/completed",
})
"""Every webhook topic Influence.io documents (the table and its source: docs/influenceio.md).
Each is acknowledged; only ``REDEEMED_TOPIC`` is acted on. A topic not listed here is answered
4xx, so a new one shows in the sender's delivery log until it is added."""
IGNORED_TOPICS: frozenset[str] = KNOWN_TOPICS - {REDEEMED_TOPIC}
