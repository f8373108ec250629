"""Configuration: a TOML file, overridden key by key from the environment.

``REWARD_POLLER_<SECTION>__<KEY>`` overrides ``[section] key`` (e.g.
``REWARD_POLLER_INFLUITIVE__API_TOKEN``), so secrets can stay out of the file. Validation
happens once, at start-up, before anything is polled; every error names the key.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

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


class ScheduleSettings(_Section):
    interval_seconds: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    """Most redemptions worked on in one cycle; the rest wait for the next."""


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
    source: str = INFLUITIVE
    vendor: str
    product: str | None = None
    amount: Decimal = Field(gt=0)
    currency: str = "USD"

    @field_validator("reward_id", "product", mode="before")
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
        if (self.reward_id is None) == (self.reward_name is None):
            raise ValueError("set exactly one of reward_id or reward_name")
        return self

    def rule(self) -> RewardRule:
        return RewardRule(
            vendor=self.vendor, product=self.product, amount=self.amount,
            currency=self.currency, reward_id=self.reward_id, reward_name=self.reward_name,
            source=self.source,
        )


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
    vendors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rewards: list[RewardSettings] = Field(default_factory=list)

    _vendor_settings: dict[str, BaseModel] = PrivateAttr(default_factory=dict)

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

    @model_validator(mode="after")
    def _vendors_exist(self) -> Config:
        from poller.vendors import validate_settings

        for name, raw in self.vendors.items():
            try:
                self._vendor_settings[name] = validate_settings(name, raw)
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

    def rules(self) -> list[RewardRule]:
        return [r.rule() for r in self.rewards]

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the log redactor."""
        found = [self.influitive.api_token.get_secret_value()]
        for settings in self._vendor_settings.values():
            for value in settings.__dict__.values():
                if isinstance(value, SecretStr):
                    found.append(value.get_secret_value())
        return [s for s in found if s]


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
