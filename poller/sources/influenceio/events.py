"""Influence.io events: parsing (in ``poller.sources.influenceio.wire``) and the decision side;
bodies (shapes from Influence.io's developer reference:
``{"id", "customer": {"id", "externalId", "email", "name", "pointBalance", ...}, "action",
"points", "type", "ruleId", "couponCode", "rewardType"}``)."""

from __future__ import annotations

import structlog

from poller.sources.influenceio import SOURCE
from poller.sources.influenceio.wire import BadEvent, parse_redeemed

__all__ = ["BadEvent", "InfluenceioDecisions", "parse_redeemed"]

log = structlog.get_logger(__name__)


class InfluenceioDecisions:
    """The decision side of the source Protocol for Influence.io, which has none: the
    vendor's delivery closes the loop. A refusal cannot refund points through the API, so it
    is logged for a person (the ledger shows it as refused with the reason)."""

    def fulfill(self, redemption_id: str, message: str) -> None:
        log.info("influenceio.decision.skipped",
                 redemption_id=redemption_id, source=SOURCE)

    def refuse(self, redemption_id: str, message: str) -> None:
        log.warning("influenceio.refusal.manual", redemption_id=redemption_id, source=SOURCE,
                    action="refund the customer's points by hand in Influence.io if needed")
