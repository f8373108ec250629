"""Configuration: a TOML file, overridden key by key from the environment, checked once at
start-up (docs/configuration.md). Nothing here imports the daemon: the listener's address
and limits are plain data."""

import os
import pwd
import stat
import tomllib
from pathlib import Path
from typing import Any, Self

import structlog
from pydantic import BaseModel, PrivateAttr, SecretStr, ValidationError, model_validator

from poller.config import environment, sections
from poller.config.environment import INVALID
from poller.core.decide import RewardRule
from poller.core.redact import display_url, is_secret_url_key
from poller.domain.errors import ConfigError
from poller.logs import redactor
from poller.vendors import rate_limit, validate_settings, vendor_module

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV = "REWARD_POLLER_CONFIG"
OTHER_VARIABLES = {CONFIG_ENV, "REWARD_POLLER_FAILPOINT"}
"""``REWARD_POLLER_*`` variables that are not config keys but are read elsewhere (the config
path; the test-only failpoints). Anything else must map to a key."""

log = structlog.get_logger("poller.config")


class Config(BaseModel, extra="forbid", validate_default=True):
    """The whole configuration; ``[vendors.<name>]`` is validated by each vendor's Settings."""

    influitive: sections.InfluitiveSettings
    ledger: sections.LedgerSettings = sections.LedgerSettings()
    schedule: sections.ScheduleSettings = sections.ScheduleSettings()
    retry: sections.RetrySettings = sections.RetrySettings()
    fulfillment: sections.FulfillmentSettings = sections.FulfillmentSettings()
    server: sections.ServerSettings = sections.ServerSettings()
    metrics: sections.MetricsSettings = sections.MetricsSettings()
    alerts: sections.AlertsSettings = sections.AlertsSettings()
    webhooks: sections.WebhooksSettings = sections.WebhooksSettings()
    security: sections.SecuritySettings = sections.SecuritySettings()
    console: sections.ConsoleSettings = sections.ConsoleSettings()
    influenceio: sections.InfluenceioSettings = sections.InfluenceioSettings()
    audit: sections.AuditSettings = sections.AuditSettings()
    vendors: dict[str, dict[str, Any]] = {}
    rewards: list[sections.RewardSettings] = []

    _vendor_settings: dict[str, BaseModel] = PrivateAttr(default_factory=dict)
    _vendor_rates: dict[str, float | None] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _environment_and_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = environment.merged(data, environment.environment_data(cls))
        return environment.read_secret_files(merged, cls)

    @model_validator(mode="after")
    def _vendors_exist(self) -> Self:
        for name, raw in self.vendors.items():
            try:
                self._vendor_settings[name] = validate_settings(name, raw)
                self._vendor_rates[name] = rate_limit(name, raw)
            except ValidationError as exc:
                raise environment.describe(exc, prefix=f"vendors.{name}",
                                           model=vendor_module(name).Settings) from None
            except ConfigError as exc:
                raise ConfigError(f"vendors.{name}: {exc}") from None
        for i, reward in enumerate(self.rewards):
            if reward.vendor not in self.vendors:
                raise ConfigError(
                    f"rewards[{i}].vendor: vendor {reward.vendor!r} has no "
                    f"[vendors.{reward.vendor}] section"
                )
        # At load, before anything can log or store a URL: the secret parts of every config
        # URL (its password and secret query values; credential-looking path segments for
        # [security] secret_url_keys) are scrubbed wherever they would appear (logs, the
        # ledger's stored texts, CLI errors). Never its user name, host, port or plain path.
        for key, url in self.urls().items():
            redactor.add_url(url, secret_path=self._secret_path(key))
        return self

    def _secret_path(self, key: str) -> bool:
        return is_secret_url_key(key, self.security.secret_url_keys)

    def _sections(self) -> dict[str, BaseModel]:
        found = {name: getattr(self, name) for name in type(self).model_fields}
        found.update({f"vendors.{n}": s for n, s in self._vendor_settings.items()})
        return {key: s for key, s in found.items() if isinstance(s, BaseModel)}

    def vendor_settings(self, name: str) -> BaseModel | None:
        return self._vendor_settings.get(name)

    def vendor_rate_limit(self, name: str) -> float | None:
        """Calls per second allowed to the vendor (``rate_limit_per_second``); None: no limit."""
        return self._vendor_rates.get(name)

    def rules(self) -> list[RewardRule]:
        return [r.rule() for r in self.rewards]

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the log redactor."""
        return [value.get_secret_value() for settings in self._sections().values()
                for value in settings.__dict__.values()
                if isinstance(value, SecretStr) and value.get_secret_value()]

    def urls(self) -> dict[str, str]:
        """Every URL in the config by its key (``vendors.http.url``), secrets included."""
        found: dict[str, str] = {}
        for prefix, settings in self._sections().items():
            for key, value in settings.__dict__.items():
                text = value.get_secret_value() if isinstance(value, SecretStr) else value
                if (key == "url" or key.endswith("_url")) and isinstance(text, str) \
                        and "://" in text:
                    found[f"{prefix}.{key}"] = text
        return found

    def display_url(self, key: str) -> str:
        """The URL at ``key`` as it may be shown (see ``poller.core.redact.display_url``)."""
        return display_url(self.urls()[key], secret_path=self._secret_path(key))


def config_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def check_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Every ``REWARD_POLLER_*`` variable must map to a known key (else a ConfigError naming
    it, with the nearest known name) and hold valid JSON where JSON is expected. Returns the
    dotted key -> variable map, so validation errors can name the variable."""
    errors: list[str] = []
    origin: dict[str, str] = {}
    for parts, var, value in environment.variables(environ):
        if var.upper() in OTHER_VARIABLES:
            continue
        problem, annotation = environment.key_type(Config, parts)
        if problem:
            hint = "" if "did you mean" in problem else environment.nearest(
                var, sorted(OTHER_VARIABLES) + environment.env_names(Config))
            errors.append(f"{var}: {problem}{hint}")
            continue
        origin[".".join(parts)] = var
        if environment.is_complex(annotation):
            try:
                environment.json_value(var, value)
            except ConfigError as exc:
                errors.append(str(exc))
    if errors:
        raise environment.invalid(errors, "invalid configuration from the environment:")
    return origin


def _reachable_by_others(file: Path) -> bool:
    """Whether every folder above the file lets other users through (a file in a private
    folder, such as a 0700 temporary one, is not exposed)."""
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
    held = [f"{prefix}.{key}"
            for prefix, section, keys in environment.secret_sections(data, Config)
            for key in sorted(keys) if section.get(key)]
    if held:
        log.warning(
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
    """For a permission denied: who is reading, and how the systemd units hand a root-only
    file to their service."""
    text = f"{file}: cannot be read: {exc.strerror or exc}"
    if not isinstance(exc, PermissionError):
        return text
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
    the file or variable it came from; ``required=False`` allows no file at all."""
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
    except (ValidationError, ConfigError) as exc:  # ConfigError: vendors, rewards, *_file
        if isinstance(exc, ValidationError):
            exc = environment.describe(exc, model=Config, origin=origin)
        text = str(exc)
        rest = text.removeprefix(INVALID) if text.startswith(INVALID) else " " + text
        raise ConfigError(where + rest) from None
