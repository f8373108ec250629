"""Reading the configuration: the TOML file, the ``REWARD_POLLER_*`` environment over it key
by key, then validation into a ``Config``; every error names the key and the file or the
variable it came from (see ``poller.config``)."""

from __future__ import annotations

import json
import os
import pwd
import stat
import tomllib
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from poller.config.describe import describe, inner_model, nearest
from poller.config.environment import ENV_DELIMITER, ENV_PREFIX, is_complex
from poller.config.model import Config
from poller.config.secrets import FILE_SUFFIX, secret_keys, secret_sections
from poller.domain.errors import ConfigError
from poller.vendors import COMMON_KEYS, vendor_module

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV = "REWARD_POLLER_CONFIG"

OTHER_VARIABLES = {CONFIG_ENV, "REWARD_POLLER_FAILPOINT"}
"""``REWARD_POLLER_*`` variables that are not config keys but are read elsewhere (the config
path; the test-only failpoints). Anything else must map to a key."""

log = structlog.get_logger("poller.config")


def config_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)



# --- the environment ---------------------------------------------------------------------


def _vendor_keys(name: str) -> frozenset[str] | None:
    try:
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
        model = inner_model(field_info.annotation)
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
            hint = "" if "did you mean" in problem else nearest(var, _env_names())
            errors.append(f"{var}: {problem}{hint}")
            continue
        origin[".".join(parts)] = var
        if is_complex(annotation):
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
        hint = nearest(stem + "__".join(parts[2:]).upper(),
                        [stem + k.upper() for k in vendor_keys])
        return f"vendor {parts[1]} has no key {ENV_DELIMITER.join(parts[2:])!r}{hint}", None
    model = inner_model(field_info.annotation)
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
    held = [f"{prefix}.{key}" for prefix, section, keys in secret_sections(data, Config)
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
    """The error for a config file that cannot be opened; for a permission denied, who is
    reading and how the systemd units hand a root-only file to their service."""
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
        text = describe(exc, model=Config, origin=origin)
        raise ConfigError(text.replace("invalid configuration:", where, 1)) from None
    except ConfigError as exc:  # from a section's own check (vendors, rewards)
        text = str(exc)
        if text.startswith("invalid configuration:"):
            raise ConfigError(text.replace("invalid configuration:", where, 1)) from None
        raise ConfigError(f"{where} {text}") from None
