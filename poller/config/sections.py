"""The sections of the configuration file that describe the work: Influitive, Influence.io,
the ledger, the schedule, retries, fulfilment and its spending limits, rewards, metrics,
alerts and security. Plain settings: each validates its own keys and turns them into the
domain's or the core's values; nothing here opens anything. (``[server]`` and
``[webhooks]``, the listener's, are in ``poller.config.server``.)"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule, SpendPolicy
from poller.core.redact import DEFAULT_SECRET_URL_KEYS
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


class Section(BaseModel):
    """A ``[section]`` of the file: an unknown key in it is an error."""

    model_config = ConfigDict(extra="forbid")


class InfluitiveSettings(Section):
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


class InfluenceioSettings(Section):
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


class LedgerSettings(Section):
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

    gone_after_polls: int = Field(default=2, ge=2, le=100)
    """Complete polls, in separate cycles, a redemption must be missing from before it is
    treated as decided elsewhere (closed, or an unconfirmed decision confirmed). One empty
    read is never enough."""


class ScheduleSettings(Section):
    interval_seconds: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    """Most redemptions worked on in one cycle; the rest wait for the next."""
    concurrency: int = Field(default=4, ge=1, le=64)
    """Threads a cycle runs (redemptions worked on at once); 1: one after another."""


class RetrySettings(Section):
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


class FulfillmentSettings(Section):
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


class RewardSettings(Section):
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


class MetricsSettings(Section):
    textfile: str | None = None
    """Where ``run --run-once`` writes its metrics for node_exporter's textfile collector
    (a ``.prom`` file), atomically, at the end of each run; unset: not written."""

    @field_validator("textfile")
    @classmethod
    def _prom_file(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().endswith(".prom"):
            raise ValueError("must end in .prom (node_exporter reads only those)")
        return value.strip() if value is not None else None


class AlertsSettings(Section):
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


class SecuritySettings(Section):
    secret_url_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_URL_KEYS))
    """Config keys whose URL path may itself be a secret (a catch-hook id, a token in the
    path): shown as the host only, and the path segments that look like credentials (an id
    or token, not words such as ``api`` or ``v2``) scrubbed from logs and the ledger. ``*``
    matches one name (``vendors.*.url``). Userinfo (``user:pass@``) is never shown, and a
    password is scrubbed from every URL anyway."""
