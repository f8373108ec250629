"""Tremendous (API v2): what it promises and what this package assumes on top of it are in
docs/vendors.md ("Tremendous", "Listing orders"), with sources."""

from __future__ import annotations

from pydantic import SecretStr

from poller.vendors import BuildContext
from poller.vendors.base import ApiSettings
from poller.vendors.ratelimit import list_bucket
from poller.vendors.tremendous.client import NAME, DeliveryMethod
from poller.vendors.tremendous.vendor import TremendousOrderBook, TremendousVendor

__all__ = ["Settings", "TremendousOrderBook", "TremendousVendor", "build", "order_book"]

SANDBOX_URL = "https://testflight.tremendous.com/api/v2"


class Settings(ApiSettings):
    """The ``[vendors.tremendous]`` config section."""

    base_url: str = SANDBOX_URL
    api_key: SecretStr
    funding_source_id: str = "balance"
    delivery_method: DeliveryMethod = "EMAIL"


def build(settings: Settings, context: BuildContext) -> TremendousVendor:
    return TremendousVendor(settings.base_url, settings.api_key, settings.funding_source_id,
                            settings.delivery_method, policy=context.policy)


def order_book(settings: Settings, context: BuildContext) -> TremendousOrderBook:
    return TremendousOrderBook(build(settings, context),
                               bucket=list_bucket(NAME, context.rate_limit_per_second))
