"""``[influenceio]`` and the new ``[influitive]`` keys: defaults, checks, and secrets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from poller.config import Config
from poller.domain.errors import ConfigError

BASE: dict[str, Any] = {"influitive": {"api_token": "t" * 20, "org_id": "org"}}


def test_defaults() -> None:
    config = Config(**BASE)
    assert config.influenceio.api_key is None
    assert config.influenceio.base_url == "https://platform.api.influence.io/v1"
    assert (config.influitive.max_requests_per_window, config.influitive.window_seconds) == (
        180, 300.0)
    assert config.influitive.max_page_bytes == 4 * 1024 * 1024


def test_the_api_key_is_a_secret_for_the_redactor() -> None:
    config = Config(**BASE, influenceio={"api_key": "io-key-abcdef123456"})
    assert "io-key-abcdef123456" in config.secrets()
    assert "io-key-abcdef123456" not in repr(config.influenceio)


@pytest.mark.parametrize("section", [
    {"influenceio": {"refund_reason": "Refund"}},
    {"influenceio": {"customer_id_field": "email"}},
    {"influitive": {**BASE["influitive"], "max_requests_per_window": 0}},
    {"influitive": {**BASE["influitive"], "max_page_bytes": 10}},
])
def test_bad_values_are_refused(section: dict[str, Any]) -> None:
    with pytest.raises((ValidationError, ConfigError)):
        Config(**{**BASE, **section})
