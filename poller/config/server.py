"""The listener's sections, ``[server]`` and ``[webhooks]``, and what the daemon takes from
them as plain data: the listen address (``parse_listen``) and the listener's limits
(``ServerLimits``, enforced by ``poller.daemon.connlimits``). Importing this loads no HTTP
library."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, SecretStr, field_validator

from poller.config.sections import Section


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """The listener's limits; the defaults are what ``[server]`` uses when a key is unset."""

    max_connections: int = 256
    """Open connections at most (``[server] max_connections``)."""
    backlog: int = 64
    """Connections the kernel queues before they are accepted (``[server] backlog``)."""
    header_timeout_seconds: float = 10.0
    """Time a connection has to send its request line and headers."""
    keep_alive_seconds: float = 5.0
    """Idle time allowed between two requests on one connection."""
    max_header_bytes: int = 16 * 1024
    """Largest request line plus headers (h11's incomplete-event limit)."""
    accept_error_interval_seconds: float = 60.0
    """At most one log line per this many seconds about failing ``accept()`` calls."""


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` or ``"[::1]:9464"`` -> (host, port). ValueError otherwise."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"{value!r}: port must be 1-65535")
    return host, number


class WebhooksSettings(Section):
    """Each receiver is on only when its secret is set (and ``[server] listen`` is)."""

    influitive_secret: SecretStr | None = None
    influenceio_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest webhook body accepted; a larger one is refused (413) while it arrives."""

    @field_validator("influitive_secret", "influenceio_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (it is the only thing between "
                             "the internet and an immediate cycle)")
        return value


class ServerSettings(Section):
    listen: str | None = None
    """``HOST:PORT`` of the daemon's /healthz and /metrics listener; unset: no listener."""
    max_connections: int = Field(default=ServerLimits.max_connections, ge=2, le=65536)
    """Open connections at most; beyond it the slowest waiting one is dropped."""
    backlog: int = Field(default=ServerLimits.backlog, ge=1, le=65536)
    header_timeout_seconds: float = Field(default=ServerLimits.header_timeout_seconds, gt=0,
                                          le=300)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Longest a request body may take to arrive (webhook receivers)."""
    keep_alive_seconds: float = Field(default=ServerLimits.keep_alive_seconds, ge=1, le=300)
    max_header_bytes: int = Field(default=ServerLimits.max_header_bytes, ge=1024,
                                  le=1024 * 1024)
    accept_error_log_interval_seconds: float = Field(
        default=ServerLimits.accept_error_interval_seconds, gt=0)

    def limits(self) -> ServerLimits:
        return ServerLimits(
            max_connections=self.max_connections, backlog=self.backlog,
            header_timeout_seconds=self.header_timeout_seconds,
            keep_alive_seconds=self.keep_alive_seconds, max_header_bytes=self.max_header_bytes,
            accept_error_interval_seconds=self.accept_error_log_interval_seconds,
        )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_listen(value)
        return value.strip()
