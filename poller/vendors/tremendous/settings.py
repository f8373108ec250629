"""Tremendous: the ``[vendors.tremendous]`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from poller.vendors.base import http_base_url

NAME = "tremendous"
SANDBOX_URL = "https://testflight.tremendous.com/api/v2"
PRODUCTION_URL = "https://api.tremendous.com/api/v2"

DeliveryMethod = Literal["EMAIL", "LINK"]


class Settings(BaseModel):
    """The ``[vendors.tremendous]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = SANDBOX_URL
    api_key: SecretStr
    funding_source_id: str = "balance"
    delivery_method: DeliveryMethod = "EMAIL"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_base_url(value)

