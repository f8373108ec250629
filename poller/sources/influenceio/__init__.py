"""Influence.io, the second source: ``points/redeemed`` webhooks become redemptions.

Influence.io pushes; nothing is polled. Each event is stored in the ledger before the webhook
is answered 2xx, then the same worker machinery orders the reward. Influence.io has no
decision endpoint: the loop closes with the vendor's own delivery to the customer, and the
ledger records the outcome (``InfluenceioDecisions``).
"""

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
"""Every webhook topic Influence.io documents, as far as known: the table "Supported Webhook
Topics" of its developer reference (https://developer.influence.io/reference/
introduction-to-webhooks). A merchant may subscribe the receiver's URL to any of them, so
each is acknowledged; only ``REDEEMED_TOPIC`` is acted on. A topic not listed here is
answered 4xx, so a new one shows in the sender's delivery log until it is added."""
IGNORED_TOPICS: frozenset[str] = KNOWN_TOPICS - {REDEEMED_TOPIC}
