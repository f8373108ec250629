"""The ``[section]`` models of the configuration file (keys and defaults:
docs/configuration.md). List and dict defaults are values, not ``default_factory``: pydantic
copies them per instance, while reading a factory's signature costs every start a few ms."""

import ipaddress
import re
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule, SpendPolicy
from poller.core.redact import DEFAULT_SECRET_URL_KEYS
from poller.domain import messages
from poller.domain.model import INFLUITIVE
from poller.domain.money import parse_currency

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` or ``"[::1]:9464"`` -> (host, port). ValueError otherwise."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    if not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: port must be 1-65535")
    return host, int(port)


def _listen(value: str) -> str:
    parse_listen(value)
    return value.strip()


HostPort = Annotated[str, AfterValidator(_listen)]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only ever reaches this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def duration_seconds(value: Any) -> float:
    """Seconds from a number of seconds or a duration written ``90s``, ``30m``, ``24h`` or
    ``1d``: an audit interval is read by people as hours and days."""
    if isinstance(value, bool):
        raise ValueError("write a duration such as \"24h\" or \"1d\", or a number of seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(
        f"{value!r} is not a duration: write \"24h\", \"1d\", \"30m\" or \"90s\", "
        "or a number of seconds (0: never)"
    )


class InfluitiveSettings(BaseModel, extra="forbid"):
    base_url: str = "https://api.influitive.com"
    api_token: SecretStr
    org_id: str = Field(min_length=1)
    refuse_verb: Literal["refuse", "reject"] = "refuse"
    list_path: str = Field(default="/reward_redemptions", pattern=r"^/")
    max_pages: int = Field(default=4000, ge=1)
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_requests_per_window: int = Field(default=180, ge=1)
    window_seconds: float = Field(default=300.0, gt=0)
    max_page_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)


class InfluenceioSettings(BaseModel, extra="forbid"):
    api_key: SecretStr | None = None
    base_url: str = "https://platform.api.influence.io/v1"
    timeout_seconds: float = Field(default=30.0, gt=0)
    customer_id_field: Literal["id", "externalId"] = "id"
    points_field: str = Field(default="points", min_length=1)
    reason_field: str = Field(default="reason", min_length=1)
    refund_reason: str = Field(default="Refund: reward redemption {redemption_id} was refused",
                               pattern=r"\{redemption_id\}")
    history_path: str = "/customers/{customer_id}/points"


# ``[ledger] schema`` is the key's name. As a field it hides BaseModel's deprecated
# ``schema()`` method, which nothing calls; pydantic warns about that when the class is made.
warnings.filterwarnings("ignore", message='Field name "schema" in "LedgerSettings"',
                        category=UserWarning)


class LedgerSettings(BaseModel, extra="forbid"):
    url: str = "sqlite:///reward-poller.db"
    schema: str | None = Field(  # type: ignore[assignment]  # see the filter above
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    lease_seconds: float = Field(default=300.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    statement_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    lock_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    keepalive_idle_seconds: int = Field(default=30, ge=1, le=7200)
    keepalive_interval_seconds: int = Field(default=10, ge=1, le=600)
    keepalive_count: int = Field(default=3, ge=1, le=30)
    gone_after_polls: int = Field(default=2, ge=2, le=100)
    """One empty read is never enough to close a redemption as decided elsewhere."""

    @field_validator("schema")
    @classmethod
    def _schema_name(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("pg_"):
            raise ValueError("names starting with pg_ are reserved by PostgreSQL")
        return value

    @model_validator(mode="after")
    def _schema_needs_postgresql(self) -> Self:
        if self.schema is not None and self.url.startswith("sqlite"):
            raise ValueError("schema is for a PostgreSQL ledger; a SQLite ledger is a file "
                             "of its own: leave schema out")
        return self


class ScheduleSettings(BaseModel, extra="forbid"):
    interval_seconds: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    concurrency: int = Field(default=4, ge=1, le=64)


class RetrySettings(BaseModel, extra="forbid"):
    max_attempts: int = Field(default=8, ge=1)
    initial_backoff_seconds: float = Field(default=30.0, ge=0)
    max_backoff_seconds: float = Field(default=3600.0, ge=0)
    http_attempts: int = Field(default=3, ge=1, le=10)
    max_retry_after_seconds: float = Field(default=30.0, ge=0)

    def schedule(self) -> RetrySchedule:
        return RetrySchedule(
            max_attempts=self.max_attempts,
            initial_seconds=self.initial_backoff_seconds,
            max_seconds=self.max_backoff_seconds,
        )


def _per_currency(value: dict[str, Decimal]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for currency, amount in value.items():
        code = parse_currency(currency)
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"{currency}: {amount} is not a non-negative amount")
        out[code] = amount
    return out


def _template(value: str) -> str:
    unknown = messages.unknown_placeholders(value)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {', '.join('{'+u+'}' for u in unknown)}")
    return value


PerCurrency = Annotated[dict[str, Decimal], AfterValidator(_per_currency)]
Template = Annotated[str, AfterValidator(_template)]


class FulfillmentSettings(BaseModel, extra="forbid"):
    unmapped_reward: Literal["hold", "refuse"] = "hold"
    fulfilled_message: Template = messages.DEFAULT_FULFILLED
    refused_message: Template = messages.DEFAULT_REFUSED
    unmapped_message: Template = messages.DEFAULT_UNMAPPED
    unavailable_reward: Literal["refuse", "hold"] = "refuse"
    unavailable_message: Template = messages.DEFAULT_UNAVAILABLE
    daily_spend_limit: PerCurrency | None = None
    """Once set, a currency it does not name is held: money is never spent without a limit
    once the user asked for one."""
    max_order_amount: PerCurrency | None = None

    def spend_policy(self) -> SpendPolicy:
        return SpendPolicy(daily_limit=self.daily_spend_limit, max_order=self.max_order_amount)

    def templates(self) -> messages.MessageTemplates:
        return messages.MessageTemplates(
            fulfilled=self.fulfilled_message,
            refused=self.refused_message,
            unmapped_reason=self.unmapped_message,
            unavailable_reason=self.unavailable_message,
        )


def _id_as_text(value: Any) -> Any:
    # TOML users write reward_id = 37 as often as "37"; both mean the same reward.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


IdText = Annotated[str, BeforeValidator(_id_as_text)]


class RewardSettings(BaseModel, extra="forbid"):
    reward_id: IdText | None = None
    reward_name: str | None = None
    reward_type: str | None = None
    rule_id: IdText | None = None
    source: Literal["influitive", "influenceio"] = "influitive"
    vendor: str
    product: IdText | None = None
    amount: Decimal = Field(gt=0)
    currency: Annotated[str, AfterValidator(parse_currency)] = "USD"

    @model_validator(mode="after")
    def _one_match(self) -> Self:
        influitive = ("reward_id", "reward_name")
        influenceio = ("reward_type", "rule_id")
        keys, other = ((influitive, influenceio) if self.source == INFLUITIVE
                       else (influenceio, influitive))
        if sum(getattr(self, k) is not None for k in keys) != 1:
            raise ValueError(f"set exactly one of {keys[0]} or {keys[1]} "
                             f"(for source = {self.source!r})")
        stray = [k for k in other if getattr(self, k) is not None]
        if stray:
            raise ValueError(f"{stray[0]} does not apply to source = {self.source!r}")
        return self

    def rule(self) -> RewardRule:
        return RewardRule(**self.model_dump())  # the same names


def _prom_file(value: str) -> str:
    if not value.endswith(".prom"):
        raise ValueError("must end in .prom (node_exporter reads only those)")
    return value


PromFile = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_prom_file)]


def _at_least(length: int, why: str = "") -> AfterValidator:
    """A secret of at least ``length`` characters, refused with a message that says so."""

    def check(value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < length:
            raise ValueError(f"must be at least {length} characters{why}")
        return value

    return AfterValidator(check)


# A receiver's secret is the only thing between the internet and an immediate cycle.
HookSecret = Annotated[
    SecretStr, _at_least(16, " (it is the only thing between the internet and an immediate cycle)")]


class MetricsSettings(BaseModel, extra="forbid"):
    textfile: PromFile | None = None


class AlertsSettings(BaseModel, extra="forbid"):
    webhook_url: SecretStr | None = None
    """Secret: such URLs carry their own token."""
    failures_before_alert: int = Field(default=3, ge=1)
    min_interval_seconds: float = Field(default=300.0, ge=0)
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("https://", "http://")
        ):
            raise ValueError("must start with https:// (or http:// for a local receiver)")
        return value


class SecuritySettings(BaseModel, extra="forbid"):
    secret_url_keys: list[str] = list(DEFAULT_SECRET_URL_KEYS)


class AuditSettings(BaseModel, extra="forbid"):
    interval: Annotated[float, BeforeValidator(duration_seconds)] = Field(default=86400.0, ge=0)
    window_days: int = Field(default=7, ge=1, le=366)


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """The listener's limits as plain data for ``poller.daemon`` (no HTTP library is loaded
    here); the defaults are ``[server]``'s."""

    max_connections: int = 256
    backlog: int = 64
    header_timeout_seconds: float = 10.0
    keep_alive_seconds: float = 5.0
    max_header_bytes: int = 16 * 1024
    """Request line plus headers (h11's incomplete-event limit)."""
    accept_error_interval_seconds: float = 60.0


class ServerSettings(BaseModel, extra="forbid"):
    listen: HostPort | None = None
    max_connections: int = Field(default=ServerLimits.max_connections, ge=2, le=65536)
    backlog: int = Field(default=ServerLimits.backlog, ge=1, le=65536)
    header_timeout_seconds: float = Field(default=ServerLimits.header_timeout_seconds, gt=0,
                                          le=300)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
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


class WebhooksSettings(BaseModel, extra="forbid"):
    influitive_secret: HookSecret | None = None
    influenceio_secret: HookSecret | None = None
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)


class ConsoleUserSettings(BaseModel, extra="forbid"):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "operator"] = "viewer"
    password_hash: str = Field(min_length=1)

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


class ConsoleSettings(BaseModel, extra="forbid"):
    enabled: bool = False
    listen: HostPort = "127.0.0.1:9480"
    allow_remote: bool = False
    trusted_proxies: list[str] = []
    session_secret: Annotated[SecretStr, _at_least(32)] | None = None
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    login_failures: int = Field(default=5, ge=1, le=100)
    login_window_seconds: float = Field(default=900.0, gt=0)
    show_funds: bool = True
    users: list[ConsoleUserSettings] = []

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for user in self.users:
            folded = user.name.casefold()
            if folded in seen:
                raise ValueError(f"users: {user.name!r} is listed twice")
            seen.add(folded)
        return self
