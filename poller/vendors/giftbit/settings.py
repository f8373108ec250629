"""Giftbit: the ``[vendors.giftbit]`` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from poller.vendors.base import http_base_url

NAME = "giftbit"
SANDBOX_URL = "https://api-testbed.giftbit.com/papi/v1"
PRODUCTION_URL = "https://api.giftbit.com/papi/v1"


class Settings(BaseModel):
    """The ``[vendors.giftbit]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = SANDBOX_URL
    api_key: SecretStr

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_base_url(value)

