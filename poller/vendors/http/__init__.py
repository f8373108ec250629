"""The HTTP vendor (``vendor = "http"``): orders sent, signed, to your own endpoint (a Zapier
catch hook, an internal service), so any vendor can be plugged in without writing Python.
The protocol, the look-up contract and the order list are in docs/vendors.md ("The generic
HTTP vendor"); ``verify_signature`` is the receiver's side of the signature."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationInfo, field_validator

from poller.domain.errors import NotAuditable
from poller.vendors import BuildContext
from poller.vendors.http.vendor import NAME, HttpOrderBook, HttpVendor
from poller.vendors.http.wire import (
    IDEMPOTENCY_HEADER,
    KEY_PLACEHOLDER,
    SIGNATURE_HEADER,
    order_body,
    signature,
    verify_signature,
)
from poller.vendors.ratelimit import list_bucket

__all__ = ["IDEMPOTENCY_HEADER", "SIGNATURE_HEADER", "HttpOrderBook", "HttpVendor", "Settings",
           "build", "order_body", "order_book", "signature", "verify_signature"]


class Settings(BaseModel):
    """The ``[vendors.http]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: SecretStr
    lookup_url: str | None = None
    """The receiver's optional look-up route, ``{idempotency_key}`` where the key goes."""
    orders_url: str | None = None
    """The receiver's optional order list (``reward-poller audit``)."""

    @field_validator("url", "lookup_url", "orders_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")) or not urlsplit(value).netloc:
            raise ValueError(f"{info.field_name} must be an https:// (or http://) address")
        if info.field_name == "lookup_url" and KEY_PLACEHOLDER not in value:
            raise ValueError(f"lookup_url must contain {KEY_PLACEHOLDER} (where the key goes)")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("secret must be at least 16 characters (use a random string)")
        return value


def build(settings: Settings, context: BuildContext) -> HttpVendor:
    return HttpVendor(settings.url, settings.secret, policy=context.policy, cache=context.cache,
                      lookup_url=settings.lookup_url)


def order_book(settings: Settings, context: BuildContext) -> HttpOrderBook:
    if settings.orders_url is None:
        raise NotAuditable(
            "http vendor: no orders_url configured ([vendors.http] orders_url), so the "
            "receiver's own order list cannot be read")
    return HttpOrderBook(settings.orders_url, settings.secret, policy=context.policy,
                         bucket=list_bucket(NAME, context.rate_limit_per_second))
