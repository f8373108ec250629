"""Configuration: a TOML file, overridden key by key from the environment.

``REWARD_POLLER_<SECTION>__<KEY>`` overrides ``[section] key`` (e.g.
``REWARD_POLLER_INFLUITIVE__API_TOKEN``), so secrets can stay out of the file. Validation
happens once, at start-up, before anything is polled; every error names the key, and the
file or the environment variable it came from:

* a config file that does not exist is an error naming the path (whatever the environment
  holds; ``load_config(required=False)`` is the environment-only form for callers that
  want it);
* a ``REWARD_POLLER_*`` variable that maps to no known key is an error naming the variable,
  with the nearest known name (a misspelled section, or ``_`` where ``__`` was meant);
* a value that is not valid JSON where JSON is expected names the variable (exit 2);
* an unknown key in the file names the file and suggests the nearest key;
* a file readable by other users that holds a secret gets a warning naming it and its mode.

Every secret key (a ``SecretStr`` field, in any section or vendor) can also be given as
``<key>_file``: a path whose stripped contents are the value, relative paths resolved against
``$CREDENTIALS_DIRECTORY`` when systemd set it (``LoadCredential=``). See ``_read_secret_files``.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
import warnings
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

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
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from poller.config.audit import AuditSettings
from poller.config.console import ConsoleSettings
from poller.core.backoff import RetrySchedule
from poller.core.decide import SpendPolicy
from poller.core.redact import DEFAULT_SECRET_URL_KEYS, is_secret_url_key, url_secrets
from poller.core.routing import RewardRule
from poller.daemon.limits import ServerLimits
from poller.domain.errors import ConfigError
from poller.domain.messages import (
    DEFAULT_FULFILLED,
    DEFAULT_REFUSED,
    DEFAULT_UNAVAILABLE,
    DEFAULT_UNMAPPED,
    MessageTemplates,
    unknown_placeholders,
)
from poller.domain.model import INFLUITIVE
from poller.domain.money import parse_currency

if TYPE_CHECKING:
    from poller.ledger.sql import LedgerTimeouts

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV = "REWARD_POLLER_CONFIG"
ENV_PREFIX = "REWARD_POLLER_"
ENV_DELIMITER = "__"

OTHER_VARIABLES = {CONFIG_ENV, "REWARD_POLLER_FAILPOINT"}
"""``REWARD_POLLER_*`` variables that are not config keys but are read elsewhere (the config
path; the test-only failpoints). Anything else must map to a key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InfluitiveSettings(_Section):
    base_url: str = "https://api.influitive.com"
    api_token: SecretStr
    org_id: str = Field(min_length=1)
    refuse_verb: Literal["refuse", "reject"] = "refuse"
    """docs: ``refuse`` today, ``reject`` in older clients (assumed; configurable)."""
    list_path: str = "/reward_redemptions"
    max_pages: int = Field(default=4000, ge=1)
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_requests_per_window: int = Field(default=180, ge=1)
    """Requests to Influitive in any ``window_seconds``, shared by every worker on the ledger
    (Influitive's firewall blocks an IP past 200 in 5 minutes; see docs/influitive.md)."""
    window_seconds: float = Field(default=300.0, gt=0)
    max_page_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """One list page larger than this is not read (the poll fails or is incomplete)."""


class InfluenceioSettings(_Section):
    """The Influence.io Platform API, used only to refund the points of a refused
    redemption; without ``api_key`` a refusal is left for a person (docs/influenceio.md)."""

    api_key: SecretStr | None = None
    base_url: str = "https://platform.api.influence.io/v1"
    timeout_seconds: float = Field(default=30.0, gt=0)
    customer_id_field: Literal["id", "externalId"] = "id"
    """Which ``customer`` field of the ``points/redeemed`` body is the ``{customerId}`` of
    the points endpoint (unconfirmed)."""
    points_field: str = Field(default="points", min_length=1)
    """Body field of ``POST /customers/{customerId}/points`` for the points (unconfirmed)."""
    reason_field: str = Field(default="reason", min_length=1)
    """Body field for the reason shown in the points history (unconfirmed)."""
    refund_reason: str = Field(
        default="Refund: reward redemption {redemption_id} was refused", min_length=1)
    """Must contain ``{redemption_id}``: the look-up after an unknown outcome finds the
    refund by it."""
    history_path: str = "/customers/{customer_id}/points"
    """GET path listing a customer's points history (assumed); empty: no look-up, and an
    unknown outcome is held for a person instead of repeated."""

    @field_validator("refund_reason")
    @classmethod
    def _names_the_redemption(cls, value: str) -> str:
        if "{redemption_id}" not in value:
            raise ValueError("must contain {redemption_id}")
        return value


# ``[ledger] schema`` is the key's name. As a field it hides BaseModel's deprecated
# ``schema()`` method, which nothing calls; pydantic warns about that when the class is made.
warnings.filterwarnings("ignore", message='Field name "schema" in "LedgerSettings"',
                        category=UserWarning)


class LedgerSettings(_Section):
    url: str = "sqlite:///reward-poller.db"
    schema: str | None = Field(  # type: ignore[assignment]  # see the filter above
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """PostgreSQL: the schema the ledger's tables (and Alembic's version table) are in,
    created by ``db upgrade``. Unset: unqualified names, found through the connection's
    ``search_path`` (``public`` on a default server), as before the key existed."""
    lease_seconds: float = Field(default=300.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """PostgreSQL: how long opening a connection may take."""
    statement_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """PostgreSQL: longest single statement (the server cancels it)."""
    lock_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """PostgreSQL: longest wait for a row or table lock, and for the ledger's advisory
    locks (recording a poll, the spend check)."""
    keepalive_idle_seconds: int = Field(default=30, ge=1, le=7200)
    """PostgreSQL: TCP keepalives start after this much silence on a connection..."""
    keepalive_interval_seconds: int = Field(default=10, ge=1, le=600)
    """...are sent this often..."""
    keepalive_count: int = Field(default=3, ge=1, le=30)
    """...and this many unanswered ones mark the connection dead."""

    @field_validator("schema")
    @classmethod
    def _schema_name(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("pg_"):
            raise ValueError("names starting with pg_ are reserved by PostgreSQL")
        return value

    @model_validator(mode="after")
    def _schema_needs_postgresql(self) -> LedgerSettings:
        if self.schema is not None and self.url.startswith("sqlite"):
            raise ValueError("schema is for a PostgreSQL ledger; a SQLite ledger is a file "
                             "of its own: leave schema out")
        return self

    def timeouts(self) -> LedgerTimeouts:
        from poller.ledger.sql import LedgerTimeouts

        return LedgerTimeouts(
            connect_seconds=self.connect_timeout_seconds,
            statement_seconds=self.statement_timeout_seconds,
            lock_seconds=self.lock_timeout_seconds,
            keepalive_idle_seconds=self.keepalive_idle_seconds,
            keepalive_interval_seconds=self.keepalive_interval_seconds,
            keepalive_count=self.keepalive_count,
        )
    gone_after_polls: int = Field(default=2, ge=2, le=100)
    """Complete polls, in separate cycles, a redemption must be missing from before it is
    treated as decided elsewhere (closed, or an unconfirmed decision confirmed). One empty
    read is never enough."""


class ScheduleSettings(_Section):
    interval_seconds: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    """Most redemptions worked on in one cycle; the rest wait for the next."""
    concurrency: int = Field(default=4, ge=1, le=64)
    """Threads a cycle runs (redemptions worked on at once); 1: one after another."""


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
    unavailable_reward: Literal["refuse", "hold"] = "refuse"
    """A product the vendor will not sell although its catalog lists it with the route's
    currency and value: refused (the points are refunded), or held for a person."""
    unavailable_message: str = DEFAULT_UNAVAILABLE
    """The ``{reason}`` used in ``refused_message`` when such a reward is refused."""
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
            code = parse_currency(currency)
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"{currency}: {amount} is not a non-negative amount")
            out[code] = amount
        return out

    def spend_policy(self) -> SpendPolicy:
        return SpendPolicy(daily_limit=self.daily_spend_limit, max_order=self.max_order_amount)

    @field_validator("fulfilled_message", "refused_message", "unmapped_message",
                     "unavailable_message")
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
            unavailable_reason=self.unavailable_message,
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
        return parse_currency(value)

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
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest webhook body accepted; a larger one is refused (413) while it arrives."""

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
        from poller.daemon.runner import parse_listen

        parse_listen(value)
        return value.strip()


class MetricsSettings(_Section):
    textfile: str | None = None
    """Where ``run --run-once`` writes its metrics for node_exporter's textfile collector
    (a ``.prom`` file), atomically, at the end of each run; unset: not written."""

    @field_validator("textfile")
    @classmethod
    def _prom_file(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().endswith(".prom"):
            raise ValueError("must end in .prom (node_exporter reads only those)")
        return value.strip() if value is not None else None


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


class SecuritySettings(_Section):
    secret_url_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_URL_KEYS))
    """Config keys whose URL path may itself be a secret (a catch-hook id, a token in the
    path): shown as the host only, and the path segments that look like credentials (an id
    or token, not words such as ``api`` or ``v2``) scrubbed from logs and the ledger. ``*``
    matches one name (``vendors.*.url``). Userinfo (``user:pass@``) is never shown, and a
    password is scrubbed from every URL anyway."""


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
                from poller.vendors import vendor_module

                raise ConfigError(_describe(exc, prefix=f"vendors.{name}",
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
        from poller.logs import redactor

        keys = self.security.secret_url_keys
        for key, url in self.urls().items():
            redactor.add_url(url, secret_path=is_secret_url_key(key, keys))
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

    def url_secrets(self) -> list[str]:
        """The parts of config URLs that are secret (a password and secret query values
        everywhere; credential-looking path segments for the keys in ``[security]
        secret_url_keys``): see ``poller.core.redact.url_secrets``."""
        keys = self.security.secret_url_keys
        return [part for key, url in self.urls().items()
                for part in url_secrets(url, secret_path=is_secret_url_key(key, keys))]

    def display_url(self, key: str) -> str:
        """The URL at ``key`` as it may be shown (see ``poller.core.redact.display_url``)."""
        from poller.core.redact import display_url

        url = self.urls()[key]
        return display_url(url, secret_path=is_secret_url_key(key, self.security.secret_url_keys))


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


def _loc_text(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: tuple[Any, ...], root: type[BaseModel] | None) -> type[BaseModel] | None:
    """The model whose key ``loc`` ends with (for did-you-mean), or None."""
    model = root
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(str(part))
        if field_info is None:
            return None
        model = _inner_model(field_info.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _nearest(word: str, choices: Any) -> str:
    """`` (did you mean X?)`` for the closest of ``choices`` (case-insensitive), or ""."""
    import difflib  # only for a key or variable that is wrong

    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


def _describe(exc: ValidationError, prefix: str = "", *, model: type[BaseModel] | None = None,
              origin: dict[str, str] | None = None) -> str:
    """One line per error, naming the key; an unknown key gets the nearest known one;
    ``origin`` maps a key's dotted name to the environment variable it came from."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _loc_text(loc, prefix)
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            known = _model_at(loc, model)
            msg = "unknown key" + (_nearest(str(loc[-1]), known.model_fields) if known else "")
        source = _origin_of(where, origin or {})
        lines.append(f"{where or '(top level)'}: {msg}" + (f" (from {source})" if source else ""))
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _origin_of(where: str, origin: dict[str, str]) -> str | None:
    """The variable that set ``where`` or the section holding it."""
    key = where.lower()
    while key:
        if key in origin:
            return origin[key]
        key = key.rpartition(".")[0]
    return None


def config_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


# --- the environment ---------------------------------------------------------------------


def _is_complex(annotation: Any) -> bool:
    """Whether pydantic-settings reads this field's variable as JSON."""
    if annotation is None:
        return False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    origin = getattr(annotation, "__origin__", None)
    if origin in (dict, list, tuple, set, frozenset):
        return True
    return any(_is_complex(a) for a in get_args(annotation) if a is not type(None))


def _vendor_keys(name: str) -> frozenset[str] | None:
    try:
        from poller.vendors import COMMON_KEYS, vendor_module

        settings = vendor_module(name).Settings
    except ConfigError:
        return None
    keys = set(settings.model_fields) | set(COMMON_KEYS)
    keys |= {k + FILE_SUFFIX for k in secret_keys(settings)}
    return frozenset(keys)


def _env_names() -> list[str]:
    """The known variable names (upper-case, for did-you-mean)."""
    names = sorted(OTHER_VARIABLES)
    for section, field_info in Config.model_fields.items():
        names.append(ENV_PREFIX + section.upper())
        model = _inner_model(field_info.annotation)
        if model is not None and section != "rewards":
            keys = set(model.model_fields) | {k + FILE_SUFFIX for k in secret_keys(model)}
            names += [f"{ENV_PREFIX}{section.upper()}{ENV_DELIMITER}{k.upper()}"
                      for k in sorted(keys)]
    return names


def check_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Every ``REWARD_POLLER_*`` variable must map to a known key (else a ConfigError naming
    it, with the nearest known name) and hold valid JSON where JSON is expected. Returns the
    dotted key -> variable map, so validation errors can name the variable."""
    env = os.environ if environ is None else environ
    errors: list[str] = []
    origin: dict[str, str] = {}
    for var in sorted(env):
        if not var.upper().startswith(ENV_PREFIX) or var.upper() in OTHER_VARIABLES:
            continue
        parts = var[len(ENV_PREFIX):].lower().split(ENV_DELIMITER)
        problem, annotation = _env_target(parts)
        if problem:
            hint = "" if "did you mean" in problem else _nearest(var, _env_names())
            errors.append(f"{var}: {problem}{hint}")
            continue
        origin[".".join(parts)] = var
        if _is_complex(annotation):
            try:
                json.loads(env[var])
            except json.JSONDecodeError as exc:
                errors.append(f"{var}: not valid JSON ({exc.msg} at character {exc.pos})")
    if errors:
        raise ConfigError("invalid configuration from the environment:\n  "
                          + "\n  ".join(errors))
    return origin


def _env_target(parts: list[str]) -> tuple[str, Any]:
    """(problem, annotation of the key) for a variable's name split at ``__``."""
    section = parts[0]
    field_info = Config.model_fields.get(section)
    if field_info is None or any(not p for p in parts):
        return "no such configuration key", None
    if len(parts) == 1:
        return "", field_info.annotation
    if section == "vendors":
        vendor_keys = _vendor_keys(parts[1])
        if vendor_keys is None:
            return f"no vendor named {parts[1]!r}", None
        if len(parts) == 2:
            return "", dict
        if len(parts) == 3 and parts[2] in vendor_keys:
            return "", None
        stem = f"{ENV_PREFIX}VENDORS{ENV_DELIMITER}{parts[1].upper()}{ENV_DELIMITER}"
        hint = _nearest(stem + "__".join(parts[2:]).upper(),
                        [stem + k.upper() for k in vendor_keys])
        return f"vendor {parts[1]} has no key {ENV_DELIMITER.join(parts[2:])!r}{hint}", None
    model = _inner_model(field_info.annotation)
    if model is None or section == "rewards" or len(parts) != 2:
        return "no such configuration key", None
    keys = set(model.model_fields) | {k + FILE_SUFFIX for k in secret_keys(model)}
    if parts[1] not in keys:
        return f"[{section}] has no key {parts[1]!r}", None
    return "", model.model_fields[parts[1]].annotation if parts[1] in model.model_fields else None


# --- the file ------------------------------------------------------------------------------


def _reachable_by_others(file: Path) -> bool:
    """Whether other users can get to the file: every folder above it lets them through
    (a file in a private folder, such as a 0700 temporary one, is not exposed)."""
    try:
        return all(stat.S_IMODE(folder.stat().st_mode) & stat.S_IXOTH
                   for folder in file.resolve().parents)
    except OSError:
        return True


def _warn_if_readable(file: Path, data: dict[str, Any]) -> None:
    """A file other users can read that holds a secret: warn, naming the file and mode."""
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
    except OSError:
        return
    if not mode & stat.S_IROTH or not _reachable_by_others(file):
        return
    held = [f"{prefix}.{key}" for prefix, section, keys in _secret_sections(data)
            for key in sorted(keys) if section.get(key)]
    if held:
        import structlog

        structlog.get_logger("poller.config").warning(
            "config.file.readable_by_others", file=str(file), mode=f"{mode:04o}",
            secret_keys=held,
            fix=f"chmod 600 {file}, or move the secrets to *_file keys or the environment",
        )


def _present(file: Path) -> bool:
    """Whether the file exists; a folder on the way this user may not enter counts as
    present, so that reading it names the permission problem rather than "not found"."""
    try:
        file.stat()
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _unreadable(file: Path, exc: OSError) -> str:
    """The error for a config file that cannot be opened; for a permission denied, who is
    reading and how the systemd units hand a root-only file to their service."""
    text = f"{file}: cannot be read: {exc.strerror or exc}"
    if not isinstance(exc, PermissionError):
        return text
    import pwd

    uid = os.geteuid()
    try:
        user = f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        user = f"uid {uid}"
    return (f"{file}: cannot be read by user {user}: {exc.strerror or exc}. Under systemd, "
            f"let systemd hand it over: LoadCredential=config.toml:{file} and --config "
            "${CREDENTIALS_DIRECTORY}/config.toml, as the units of `reward-poller deploy "
            "systemd` do (docs/deployment.md); elsewhere run as a user who can read it")


def load_config(path: str | Path | None = None, *, required: bool = True) -> Config:
    """Read, merge with the environment, validate. Raises ConfigError naming the key, and
    the file or variable it came from."""
    file = config_path(str(path) if path is not None else None)
    data: dict[str, Any] = {}
    origin = check_environment()
    if _present(file):
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(_unreadable(file, exc)) from None
        _warn_if_readable(file, data)
    elif required:
        # `init` writes the commented example from inside the package: it works for a pipx
        # or pip install, which has no config.example.toml to copy.
        raise ConfigError(
            f"config file {file} not found (use --config PATH or set {CONFIG_ENV}; "
            f"`reward-poller init {file}` writes a commented one to fill in)"
        )
    where = f"invalid configuration ({file if file.exists() else 'the environment'}):"
    try:
        return Config(**data)
    except ValidationError as exc:
        text = _describe(exc, model=Config, origin=origin)
        raise ConfigError(text.replace("invalid configuration:", where, 1)) from None
    except ConfigError as exc:  # from a section's own check (vendors, rewards)
        text = str(exc)
        if text.startswith("invalid configuration:"):
            raise ConfigError(text.replace("invalid configuration:", where, 1)) from None
        raise ConfigError(f"{where} {text}") from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration from the environment: {exc}") from None
