"""The new limit keys: defaults, the objects they build, and errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from poller.compose import ledger_timeouts
from poller.config import Config, load_config
from poller.config.sections import ServerLimits
from poller.domain.errors import ConfigError


def config(**sections: Any) -> Config:
    return Config(influitive={"api_token": "tok-123456789", "org_id": "org"}, **sections)


def test_defaults() -> None:
    c = config()
    assert c.server.limits() == ServerLimits()
    assert c.webhooks.max_body_bytes == 64 * 1024
    assert c.server.body_timeout_seconds == 10
    t = ledger_timeouts(c)
    assert (t.connect_seconds, t.statement_seconds, t.lock_seconds) == (10, 30, 10)
    assert t.client_seconds == 35


def test_keys_reach_the_objects_they_configure() -> None:
    c = config(server={"max_connections": 32, "backlog": 8, "header_timeout_seconds": 2,
                       "keep_alive_seconds": 3, "max_header_bytes": 4096,
                       "accept_error_log_interval_seconds": 5},
               ledger={"statement_timeout_seconds": 2, "lock_timeout_seconds": 1,
                       "connect_timeout_seconds": 3})
    assert c.server.limits() == ServerLimits(
        max_connections=32, backlog=8, header_timeout_seconds=2, keep_alive_seconds=3,
        max_header_bytes=4096, accept_error_interval_seconds=5)
    t = ledger_timeouts(c)
    assert (t.statement_seconds, t.lock_seconds, t.connect_seconds, t.client_seconds) == \
        (2, 1, 3, 4)


@pytest.mark.parametrize(("toml", "key"), [
    ("[webhooks]\nmax_body_bytes = 10\n", "webhooks.max_body_bytes"),
    ("[server]\nmax_connections = 0\n", "server.max_connections"),
    ("[server]\nheader_timeout_seconds = 0\n", "server.header_timeout_seconds"),
    ("[ledger]\nlock_timeout_seconds = -1\n", "ledger.lock_timeout_seconds"),
    ("[security]\nsecret_url_keys = \"vendors.*.url\"\n", "security.secret_url_keys"),
])
def test_a_bad_value_names_its_key(tmp_path: Any, toml: str, key: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[influitive]\napi_token = "tok-123456789"\norg_id = "org"\n' + toml)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)
