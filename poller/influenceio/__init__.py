"""Influence.io, the second source: ``points/redeemed`` webhooks become redemptions.

Influence.io pushes; nothing is polled. Each event is stored in the ledger before the webhook
is answered 2xx, then the same worker machinery orders the reward. Influence.io has no
decision endpoint: the loop closes with the vendor's own delivery to the customer, and the
ledger records the outcome (``InfluenceioDecisions``).
"""

from __future__ import annotations

SOURCE = "influenceio"
REDEEMED_TOPIC = "points/redeemed"
