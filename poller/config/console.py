"""``[console]``: the web console for the people who decide on held redemptions
(docs/console.md). Off unless ``enabled = true``; each person is one ``[[console.users]]``
entry with a scrypt password hash (``reward-poller console add-user``)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only ever reaches this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConsoleUserSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    """Recorded in the ledger as who acted."""
    role: Literal["viewer", "operator"] = "viewer"
    """``viewer`` reads every page; ``operator`` may also act on redemptions."""
    password_hash: str = Field(min_length=1)
    """``scrypt$N$r$p$salt$hash`` as ``reward-poller console add-user`` writes it."""

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        name = " ".join(value.split())
        if not name:
            raise ValueError("must not be blank")
        return name

    @field_validator("password_hash")
    @classmethod
    def _scrypt(cls, value: str) -> str:
        if not value.startswith("scrypt$") or value.count("$") != 5:
            raise ValueError("must be a scrypt hash from `reward-poller console add-user`")
        return value


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    """Serve the console under /console/ on the daemon's listener (``[server] listen``)."""
    listen: str = "127.0.0.1:9480"
    """``HOST:PORT`` of ``reward-poller console`` (deployments that run no daemon)."""
    allow_remote: bool = False
    """Serve the console on an address other than loopback. Off: the console is meant to
    sit behind a reverse proxy on the same machine, which does TLS (docs/console.md)."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses of reverse proxies whose ``X-Forwarded-Proto`` and ``X-Forwarded-For``
    are believed (the cookie is then marked Secure and the login limit counts the real
    client). Anyone else's are ignored."""
    session_secret: SecretStr | None = None
    """Signs the session cookies (at least 32 characters). Unset: a random one per process,
    so every restart signs everyone out."""
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    login_failures: int = Field(default=5, ge=1, le=100)
    """Wrong passwords from one client in ``login_window_seconds`` before it is refused
    (HTTP 429) until the window passes. Each wrong one is answered more slowly."""
    login_window_seconds: float = Field(default=900.0, gt=0)
    show_funds: bool = True
    """Ask each vendor for its balance for the overview (at most every five minutes)."""
    users: list[ConsoleUserSettings] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host_port(value)
        return value.strip()

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> ConsoleSettings:
        seen: set[str] = set()
        for user in self.users:
            folded = user.name.casefold()
            if folded in seen:
                raise ValueError(f"users: {user.name!r} is listed twice")
            seen.add(folded)
        return self


def host_port(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9480"`` or ``"[::1]:9480"`` -> (host, port); ValueError otherwise."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9480)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9480")
    return host, int(port)
