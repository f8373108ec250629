"""Giftbit (papi v1): campaigns that Giftbit emails to the recipient. What its documentation
and recorded traffic say and what this package assumes on top of it are in docs/vendors.md
("Giftbit", "Listing orders"), with sources."""

from __future__ import annotations

from pydantic import SecretStr

from poller.vendors import BuildContext
from poller.vendors.base import ApiSettings
from poller.vendors.giftbit.client import MAX_CAMPAIGN_ID, NAME, campaign_id
from poller.vendors.giftbit.vendor import GiftbitOrderBook, GiftbitVendor, gift_status
from poller.vendors.ratelimit import list_bucket

__all__ = ["MAX_CAMPAIGN_ID", "GiftbitOrderBook", "GiftbitVendor", "Settings", "build",
           "campaign_id", "gift_status", "order_book"]

SANDBOX_URL = "https://api-testbed.giftbit.com/papi/v1"


class Settings(ApiSettings):
    """The ``[vendors.giftbit]`` config section."""

    base_url: str = SANDBOX_URL
    api_key: SecretStr


def build(settings: Settings, context: BuildContext) -> GiftbitVendor:
    return GiftbitVendor(settings.base_url, settings.api_key, policy=context.policy)


def order_book(settings: Settings, context: BuildContext) -> GiftbitOrderBook:
    return GiftbitOrderBook(build(settings, context),
                            bucket=list_bucket(NAME, context.rate_limit_per_second))
