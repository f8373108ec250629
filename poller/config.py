"""Configuration: a TOML file, overridden key by key from the environment.

``REWARD_POLLER_<SECTION>__<KEY>`` overrides ``[section] key`` (e.g.
``REWARD_POLLER_INFLUITIVE__API_TOKEN``), so secrets can stay out of the file. Validation
happens once, at start-up, before anything is polled; every error names the key.

Every secret key (a ``SecretStr`` field, in any section or vendor) can also be given as
``<key>_file``: a path whose stripped contents are the value, relative paths resolved against
``$CREDENTIALS_DIRECTORY`` when systemd set it (``LoadCredential=``). See ``_read_secret_files``.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from poller.core.backoff import RetrySchedule
from poller.core.decide import SpendPolicy
from poller.core.errors import ConfigError
from poller.core.messages import (
    DEFAULT_FULFILLED,
    DEFAULT_REFUSED,
    DEFAULT_UNMAPPED,
    MessageTemplates,
    unknown_placeholders,
)
from poller.core.model import INFLUITIVE
from poller.core.routing import RewardRule

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV = "REWARD_POLLER_CONFIG"
ENV_PREFIX = "REWARD_POLLER_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InfluitiveSettings(_Section):
    base_url: str = "https://api.influitive.com"
    api_token: SecretStr
    org_id: str = Field(min_length=1)
    refuse_verb: Literal["refuse", "reject"] = "refuse"
    """docs: ``refuse`` today, ``reject`` in older clients (assumed; configurable)."""
    list_path: str = "/reward_redemptions"
    max_pages: int = Field(default=100, ge=1)
    timeout_seconds: float = Field(default=30.0, gt=0)


class LedgerSettings(_Section):
    url: str = "sqlite:///reward-poller.db"
    lease_seconds: float = Field(default=300.0, gt=0)
    gone_after_polls: int = Field(default=2, ge=2, le=100)
    """Complete polls, in separate cycles, a redemption must be missing from before it is
    treated as decided elsewhere (closed, or an unconfirmed decision confirmed). One empty
    read is never enough."""


class ScheduleSettings(_Section):
    interval_seconds: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    """Most redemptions worked on in one cycle; the rest wait for the next."""
    concurrency: int = Field(default=4, ge=1, le=64)
    """Redemptions worked on at once within a cycle (threads); 1: one after another."""


class RetrySettings(_Section):
    max_attempts: int = Field(default=8, ge=1)
    initial_backoff_seconds: float = Field(default=30.0, ge=0)
    max_backoff_seconds: float = Field(default=3600.0, ge=0)
    http_attempts: int = Field(default=3, ge=1, le=10)
    """Tries of one HTTP request inside a cycle (transient failures only)."""
    max_retry_after_seconds: float = Field(default=30.0, ge=0)
    """A Retry-After up to this is slept through; a longer one moves the work to a later cycle."""

    def schedule(self) -> RetrySchedule:
        return RetrySchedule(
            max_attempts=self.max_attempts,
            initial_seconds=self.initial_backoff_seconds,
            max_seconds=self.max_backoff_seconds,
        )


class FulfillmentSettings(_Section):
    unmapped_reward: Literal["hold", "refuse"] = "hold"
    fulfilled_message: str = DEFAULT_FULFILLED
    refused_message: str = DEFAULT_REFUSED
    unmapped_message: str = DEFAULT_UNMAPPED
    """The ``{reason}`` used in ``refused_message`` when an unmapped reward is refused."""
    daily_spend_limit: dict[str, Decimal] | None = None
    """Per currency, the most that may be committed to vendor orders per UTC day. When set,
    a currency it does not name is held (money is never spent without a limit once the
    user asked for one)."""
    max_order_amount: dict[str, Decimal] | None = None
    """Per currency, the largest single order; a larger one is held for a person."""

    @field_validator("daily_spend_limit", "max_order_amount")
    @classmethod
    def _per_currency(cls, value: dict[str, Decimal] | None) -> dict[str, Decimal] | None:
        if value is None:
            return None
        out: dict[str, Decimal] = {}
        for currency, amount in value.items():
            if len(currency) != 3 or not currency.isalpha():
                raise ValueError(f"{currency!r} is not a 3-letter currency code")
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"{currency}: {amount} is not a non-negative amount")
            out[currency.upper()] = amount
        return out

    def spend_policy(self) -> SpendPolicy:
        return SpendPolicy(daily_limit=self.daily_spend_limit, max_order=self.max_order_amount)

    @field_validator("fulfilled_message", "refused_message", "unmapped_message")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = unknown_placeholders(value)
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join('{'+u+'}' for u in unknown)}")
        return value

    def templates(self) -> MessageTemplates:
        return MessageTemplates(
            fulfilled=self.fulfilled_message,
            refused=self.refused_message,
            unmapped_reason=self.unmapped_message,
        )


class RewardSettings(_Section):
    reward_id: str | None = None
    reward_name: str | None = None
    reward_type: str | None = None
    """Influence.io: matched against ``rewardType``."""
    rule_id: str | None = None
    """Influence.io: matched against ``ruleId``."""
    source: Literal["influitive", "influenceio"] = "influitive"
    vendor: str
    product: str | None = None
    amount: Decimal = Field(gt=0)
    currency: str = "USD"

    @field_validator("reward_id", "product", "rule_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # TOML users write reward_id = 37 as often as "37"; both mean the same reward.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha():
            raise ValueError("must be a 3-letter ISO currency code such as USD")
        return value.upper()

    @model_validator(mode="after")
    def _one_match(self) -> RewardSettings:
        keys = ("reward_id", "reward_name") if self.source == INFLUITIVE else (
            "reward_type", "rule_id")
        other = ("reward_type", "rule_id") if self.source == INFLUITIVE else (
            "reward_id", "reward_name")
        if sum(getattr(self, k) is not None for k in keys) != 1:
            raise ValueError(f"set exactly one of {keys[0]} or {keys[1]} "
                             f"(for source = {self.source!r})")
        stray = [k for k in other if getattr(self, k) is not None]
        if stray:
            raise ValueError(f"{stray[0]} does not apply to source = {self.source!r}")
        return self

    def rule(self) -> RewardRule:
        return RewardRule(
            vendor=self.vendor, product=self.product, amount=self.amount,
            currency=self.currency, reward_id=self.reward_id, reward_name=self.reward_name,
            reward_type=self.reward_type, rule_id=self.rule_id, source=self.source,
        )


class WebhooksSettings(_Section):
    """Each receiver is on only when its secret is set (and ``[server] listen`` is)."""

    influitive_secret: SecretStr | None = None
    influenceio_secret: SecretStr | None = None

    @field_validator("influitive_secret", "influenceio_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (it is the only thing between "
                             "the internet and an immediate cycle)")
        return value


class ServerSettings(_Section):
    listen: str | None = None
    """``HOST:PORT`` of the daemon's /healthz and /metrics listener; unset: no listener."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from poller.server.runner import parse_listen

        parse_listen(value)
        return value.strip()


class AlertsSettings(_Section):
    webhook_url: SecretStr | None = None
    """Slack-compatible incoming webhook (POST {"text": ...}); unset: no alerts. Secret: such
    URLs carry their own token."""
    failures_before_alert: int = Field(default=3, ge=1)
    """Cycles that failed in a row before an alert is posted."""
    min_interval_seconds: float = Field(default=300.0, ge=0)
    """At most one post per this many seconds; held redemptions not yet announced wait for
    the next post."""
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("https://", "http://")
        ):
            raise ValueError("must start with https:// (or http:// for a local receiver)")
        return value


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
        case_sensitive=False,
    )

    influitive: InfluitiveSettings
    ledger: LedgerSettings = LedgerSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    retry: RetrySettings = RetrySettings()
    fulfillment: FulfillmentSettings = FulfillmentSettings()
    server: ServerSettings = ServerSettings()
    alerts: AlertsSettings = AlertsSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    vendors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rewards: list[RewardSettings] = Field(default_factory=list)

    _vendor_settings: dict[str, BaseModel] = PrivateAttr(default_factory=dict)
    _vendor_rates: dict[str, float | None] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file (passed as init data), key by key.
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return _read_secret_files(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _vendors_exist(self) -> Config:
        from poller.vendors import rate_limit, validate_settings

        for name, raw in self.vendors.items():
            try:
                self._vendor_settings[name] = validate_settings(name, raw)
                self._vendor_rates[name] = rate_limit(name, raw)
            except ValidationError as exc:
                raise ConfigError(_describe(exc, prefix=f"vendors.{name}")) from None
            except ConfigError as exc:
                raise ConfigError(f"vendors.{name}: {exc}") from None
        for i, reward in enumerate(self.rewards):
            if reward.vendor not in self.vendors:
                raise ConfigError(
                    f"rewards[{i}].vendor: vendor {reward.vendor!r} has no "
                    f"[vendors.{reward.vendor}] section"
                )
        return self

    def vendor_settings(self, name: str) -> BaseModel | None:
        return self._vendor_settings.get(name)

    def vendor_rate_limit(self, name: str) -> float | None:
        """Calls per second allowed to the vendor (``rate_limit_per_second``); None: no limit."""
        return self._vendor_rates.get(name)

    def rules(self) -> list[RewardRule]:
        return [r.rule() for r in self.rewards]

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the log redactor."""
        found: list[str] = []
        sections: list[BaseModel] = [getattr(self, name) for name in type(self).model_fields]
        for settings in [*sections, *self._vendor_settings.values()]:
            if not isinstance(settings, BaseModel):
                continue
            for value in settings.__dict__.values():
                if isinstance(value, SecretStr):
                    found.append(value.get_secret_value())
        return [s for s in found if s]


FILE_SUFFIX = "_file"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(a) for a in get_args(annotation))


def secret_keys(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that hold secrets (``SecretStr``, optional or not)."""
    return frozenset(n for n, f in model.model_fields.items() if _is_secret(f.annotation))


def _secret_sections(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], frozenset[str]]]:
    """(key prefix, raw section, its secret keys) for every section that has secrets: the
    fixed sections of ``Config`` and each ``[vendors.<name>]`` by its vendor's Settings."""
    found = []
    for name, field in Config.model_fields.items():
        model = field.annotation
        section = data.get(name)
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(section, dict):
            keys = secret_keys(model)
            if keys:
                found.append((name, section, keys))
    vendors = data.get("vendors")
    if isinstance(vendors, dict):
        from poller.vendors import vendor_module

        for vendor, section in vendors.items():
            if not isinstance(section, dict):
                continue
            try:
                settings = vendor_module(str(vendor)).Settings
            except ConfigError:
                continue  # an unknown vendor: validation names it later
            keys = secret_keys(settings)
            if keys:
                found.append((f"vendors.{vendor}", section, keys))
    return found


def _read_secret_files(data: dict[str, Any]) -> dict[str, Any]:
    """Replace each ``<secret>_file = PATH`` by ``<secret> = <stripped file contents>``.

    Runs before validation, on the file and the environment merged, so it applies to both
    (``REWARD_POLLER_INFLUITIVE__API_TOKEN_FILE`` too). Errors name the key and the path,
    never the contents. A key given both ways is an error rather than a silent choice.
    """
    base = os.environ.get(CREDENTIALS_ENV)
    errors: list[str] = []
    out = dict(data)
    for prefix, section, keys in _secret_sections(data):
        new = dict(section)
        for key in keys:
            file_key = key + FILE_SUFFIX
            if file_key not in section:
                continue
            name = f"{prefix}.{file_key}"
            raw_path = new.pop(file_key)
            if key in section:
                errors.append(f"{name}: set either {key} or {file_key}, not both")
                continue
            if not isinstance(raw_path, str) or not raw_path.strip():
                errors.append(f"{name}: must be a file path")
                continue
            path = Path(raw_path.strip()).expanduser()
            if not path.is_absolute() and base:
                path = Path(base) / path
            try:
                value = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                errors.append(f"{name}: cannot read {path}: {reason or exc}")
                continue
            if not value:
                errors.append(f"{name}: {path} is empty")
                continue
            new[key] = value
        parent = out
        *outer, last = prefix.split(".")
        for part in outer:
            parent[part] = dict(parent[part])
            parent = parent[part]
        parent[last] = new
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    return out


def _describe(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = prefix
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc or '(top level)'}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def config_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | Path | None = None, *, required: bool = True) -> Config:
    """Read, merge with the environment, validate. Raises ConfigError naming the key."""
    file = config_path(str(path) if path is not None else None)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot be read: {exc.strerror}") from None
    elif required and not any(k.startswith(ENV_PREFIX) for k in os.environ):
        raise ConfigError(
            f"config file {file} not found (use --config PATH or set {CONFIG_ENV}; "
            "config.example.toml documents every key)"
        )
    try:
        return Config(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
