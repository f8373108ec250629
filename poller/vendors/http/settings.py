"""The HTTP vendor: the ``[vendors.http]`` section."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

NAME = "http"
KEY_PLACEHOLDER = "{idempotency_key}"
"""Where the key goes in ``lookup_url``."""


class Settings(BaseModel):
    """The ``[vendors.http]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: SecretStr
    lookup_url: str | None = None
    """The receiver's optional look-up route, with ``{idempotency_key}`` where the key goes;
    unset: the receiver cannot be asked (see the package doc)."""

    orders_url: str | None = None
    """The receiver's optional order list (``reward-poller audit``), see ``wire``; unset:
    the audit says the http vendor cannot be checked."""

    @field_validator("orders_url")
    @classmethod
    def _orders_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")) or not urlsplit(value).netloc:
            raise ValueError("orders_url must be an https:// (or http://) address")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("https://", "http://")) or not urlsplit(value).netloc:
            raise ValueError("url must be an https:// (or http://) address")
        return value

    @field_validator("lookup_url")
    @classmethod
    def _lookup_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")) or not urlsplit(value).netloc:
            raise ValueError("lookup_url must be an https:// (or http://) address")
        if KEY_PLACEHOLDER not in value:
            raise ValueError(f"lookup_url must contain {KEY_PLACEHOLDER} (where the key goes)")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("secret must be at least 16 characters (use a random string)")
        return value

