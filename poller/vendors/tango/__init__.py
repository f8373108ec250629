"""Tango Card RaaS v2: what Tango documents and what this package assumes on top of it are
in docs/vendors.md ("Tango Card", "Listing orders"), with sources."""

from __future__ import annotations

from pydantic import Field, SecretStr

from poller.vendors import BuildContext
from poller.vendors.base import ApiSettings
from poller.vendors.ratelimit import list_bucket
from poller.vendors.tango.client import CATALOG_TTL, IN_PROCESS_WAIT, NAME, classify_errors
from poller.vendors.tango.vendor import TangoOrderBook, TangoVendor

__all__ = ["CATALOG_TTL", "IN_PROCESS_WAIT", "Settings", "TangoOrderBook", "TangoVendor",
           "build", "classify_errors", "order_book"]

SANDBOX_URL = "https://integration-api.tangocard.com/raas/v2"


class Settings(ApiSettings):
    """The ``[vendors.tango]`` config section."""

    base_url: str = SANDBOX_URL
    platform_name: str = Field(min_length=1)
    platform_key: SecretStr
    customer_identifier: str = Field(min_length=1)
    account_identifier: str = Field(min_length=1)


def build(settings: Settings, context: BuildContext) -> TangoVendor:
    return TangoVendor(settings.base_url, settings.platform_name, settings.platform_key,
                       settings.customer_identifier, settings.account_identifier,
                       policy=context.policy, cache=context.cache)


def order_book(settings: Settings, context: BuildContext) -> TangoOrderBook:
    return TangoOrderBook(build(settings, context),
                          bucket=list_bucket(NAME, context.rate_limit_per_second))
