"""Tango Card: the ``[vendors.tango]`` section and the limits Tango documents."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from poller.vendors.base import http_base_url

NAME = "tango"
SANDBOX_URL = "https://integration-api.tangocard.com/raas/v2"
PRODUCTION_URL = "https://api.tangocard.com/raas/v2"
CATALOG_TTL = timedelta(hours=12)
"""Tango asks for about two catalog calls a day."""
MIN_ORDER_INTERVAL = 1.0
"""Seconds between two requests of any kind (Tango: 1 request/s on every endpoint)."""
IN_PROCESS_WAIT = 2.0
"""Tango: after ``409.002`` wait at least 2 s before sending the same externalRefID."""
IN_PROCESS_RETRIES = 2


class Settings(BaseModel):
    """The ``[vendors.tango]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = SANDBOX_URL
    platform_name: str = Field(min_length=1)
    platform_key: SecretStr
    customer_identifier: str = Field(min_length=1)
    account_identifier: str = Field(min_length=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_base_url(value)

