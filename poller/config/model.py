"""``Config``: the whole file as one validated object, its sections (``poller.config.sections``,
``poller.config.server``) plus ``[vendors.<name>]`` validated by each vendor's own Settings and
``[[rewards]]``. Loading it registers the secret parts of its URLs with the log redactor."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

from poller.config.audit import AuditSettings
from poller.config.console import ConsoleSettings
from poller.config.describe import describe
from poller.config.environment import environment_data, merged
from poller.config.secrets import read_secret_files, register_url_secrets
from poller.config.sections import (
    AlertsSettings,
    FulfillmentSettings,
    InfluenceioSettings,
    InfluitiveSettings,
    LedgerSettings,
    MetricsSettings,
    RetrySettings,
    RewardSettings,
    ScheduleSettings,
    SecuritySettings,
)
from poller.config.server import ServerSettings, WebhooksSettings
from poller.core.decide import RewardRule
from poller.core.redact import display_url, is_secret_url_key
from poller.domain.errors import ConfigError
from poller.vendors import rate_limit, validate_settings, vendor_module


class Config(BaseModel):
    """The whole configuration. Made from data (the file's), it reads the environment over
    it key by key (``poller.config.environment``), then the ``*_file`` secrets."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    influitive: InfluitiveSettings
    ledger: LedgerSettings = LedgerSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    retry: RetrySettings = RetrySettings()
    fulfillment: FulfillmentSettings = FulfillmentSettings()
    server: ServerSettings = ServerSettings()
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertsSettings = AlertsSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    security: SecuritySettings = SecuritySettings()
    console: ConsoleSettings = ConsoleSettings()
    influenceio: InfluenceioSettings = InfluenceioSettings()
    audit: AuditSettings = AuditSettings()
    vendors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rewards: list[RewardSettings] = []
    """(pydantic copies a mutable default for each instance; ``default_factory=list`` would
    have it read ``list``'s signature, whose parser costs every start a couple of ms)"""

    _vendor_settings: dict[str, BaseModel] = PrivateAttr(default_factory=dict)
    _vendor_rates: dict[str, float | None] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _environment_and_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # The environment wins over the file (passed as data), key by key; then each
        # ``<secret>_file`` of either is read.
        return read_secret_files(merged(data, environment_data(cls)), cls)

    @model_validator(mode="after")
    def _vendors_exist(self) -> Config:
        for name, raw in self.vendors.items():
            try:
                self._vendor_settings[name] = validate_settings(name, raw)
                self._vendor_rates[name] = rate_limit(name, raw)
            except ValidationError as exc:
                raise ConfigError(describe(exc, prefix=f"vendors.{name}",
                                           model=vendor_module(name).Settings)) from None
            except ConfigError as exc:
                raise ConfigError(f"vendors.{name}: {exc}") from None
        for i, reward in enumerate(self.rewards):
            if reward.vendor not in self.vendors:
                raise ConfigError(
                    f"rewards[{i}].vendor: vendor {reward.vendor!r} has no "
                    f"[vendors.{reward.vendor}] section"
                )
        return self

    @model_validator(mode="after")
    def _register_url_secrets(self) -> Config:
        # At load, before anything can log or store a URL: the secret parts of every config
        # URL (its password and secret query values; credential-looking path segments for
        # [security] secret_url_keys) are scrubbed wherever they would appear (logs, the
        # ledger's stored texts, CLI errors). Never its user name, host, port or plain path.
        register_url_secrets(self.urls(), self.security.secret_url_keys)
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

    def urls(self) -> dict[str, str]:
        """Every URL in the config by its key (``vendors.http.url``), secrets included."""
        found: dict[str, str] = {}
        sections = {name: getattr(self, name) for name in type(self).model_fields}
        sections.update({f"vendors.{n}": s for n, s in self._vendor_settings.items()})
        for prefix, settings in sections.items():
            if not isinstance(settings, BaseModel):
                continue
            for key, value in settings.__dict__.items():
                text = value.get_secret_value() if isinstance(value, SecretStr) else value
                if (key == "url" or key.endswith("_url")) and isinstance(text, str) \
                        and "://" in text:
                    found[f"{prefix}.{key}"] = text
        return found

    def display_url(self, key: str) -> str:
        """The URL at ``key`` as it may be shown (see ``poller.core.redact.display_url``)."""
        url = self.urls()[key]
        return display_url(url, secret_path=is_secret_url_key(key, self.security.secret_url_keys))
