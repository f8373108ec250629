"""Where values come from besides the file (docs/configuration.md): the ``REWARD_POLLER_*``
environment merged over the file's key by key (``REWARD_POLLER_<SECTION>`` also sets a whole
section as JSON), each ``<secret>_file`` read in place of its secret, and validation errors
as lines naming the key and where it came from."""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError

from poller.domain.errors import ConfigError
from poller.vendors import COMMON_KEYS, vendor_module

ENV_PREFIX = "REWARD_POLLER_"
ENV_DELIMITER = "__"
FILE_SUFFIX = "_file"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
INVALID = "invalid configuration:"


def invalid(lines: list[str], head: str = INVALID) -> ConfigError:
    return ConfigError(head + "\n  " + "\n  ".join(lines))


def inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(inner_model, get_args(annotation))), None)


def is_complex(annotation: Any) -> bool:
    """Whether a key of this type is read from its variable as JSON (else as text)."""
    if getattr(annotation, "__origin__", None) in (dict, list) or inner_model(annotation):
        return True
    return any(is_complex(a) for a in get_args(annotation))


def nearest(word: str, choices: Any) -> str:
    """`` (did you mean X?)`` for the closest of ``choices`` (case-insensitive), or ""."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


def json_value(var: str, value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{var}: not valid JSON ({exc.msg} at character {exc.pos})") from None


# --- secrets ---------------------------------------------------------------------------


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(is_secret(a) for a in get_args(annotation))


def secret_keys(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that hold secrets (``SecretStr``, optional or not)."""
    return frozenset(n for n, f in model.model_fields.items() if is_secret(f.annotation))


def with_file_keys(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields) | {k + FILE_SUFFIX for k in secret_keys(model)}


def secret_sections(
    data: dict[str, Any], root: type[BaseModel],
) -> list[tuple[str, dict[str, Any], frozenset[str]]]:
    """(key prefix, raw section, its secret keys) for every section of ``root`` (the
    ``Config``) and every ``[vendors.<name>]`` that has secrets."""
    found = []
    for name, field in root.model_fields.items():
        model, section = field.annotation, data.get(name)
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(section, dict):
            found.append((name, section, secret_keys(model)))
    vendors = data.get("vendors")
    for vendor, section in (vendors.items() if isinstance(vendors, dict) else ()):
        if not isinstance(section, dict):
            continue
        try:
            settings = vendor_module(str(vendor)).Settings
        except ConfigError:
            continue  # an unknown vendor: validation names it later
        found.append((f"vendors.{vendor}", section, secret_keys(settings)))
    return [entry for entry in found if entry[2]]


def read_secret_files(data: dict[str, Any], root: type[BaseModel]) -> dict[str, Any]:
    """Each ``<secret>_file = PATH`` replaced by ``<secret> = <stripped file contents>``, in
    the file and the environment merged. Errors name the key and the path, never the
    contents; a key given both ways is an error rather than a silent choice."""
    base = os.environ.get(CREDENTIALS_ENV)
    errors: list[str] = []
    out = copy.deepcopy(data)
    for prefix, section, keys in secret_sections(out, root):
        for key in keys:
            file_key = key + FILE_SUFFIX
            if file_key not in section:
                continue
            name = f"{prefix}.{file_key}"
            raw_path = section.pop(file_key)
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
            section[key] = value
    if errors:
        raise invalid(errors)
    return out


# --- the environment -------------------------------------------------------------------


def _vendor_keys(name: str) -> set[str] | None:
    try:
        return with_file_keys(vendor_module(name).Settings) | set(COMMON_KEYS)
    except ConfigError:
        return None


def key_type(root: type[BaseModel], parts: list[str]) -> tuple[str, Any]:
    """(problem, the key's type) for a variable's name split at ``__``."""
    section = parts[0]
    field_info = root.model_fields.get(section)
    if field_info is None or any(not p for p in parts):
        return "no such configuration key", None
    if len(parts) == 1:
        return "", field_info.annotation
    if section == "vendors":
        vendor_keys = _vendor_keys(parts[1])
        if vendor_keys is None:
            return f"no vendor named {parts[1]!r}", None
        if len(parts) == 2:
            return "", dict[str, Any]
        if len(parts) == 3 and parts[2] in vendor_keys:
            return "", None
        stem = f"{ENV_PREFIX}VENDORS{ENV_DELIMITER}{parts[1].upper()}{ENV_DELIMITER}"
        hint = nearest(stem + "__".join(parts[2:]).upper(),
                       [stem + k.upper() for k in vendor_keys])
        return f"vendor {parts[1]} has no key {ENV_DELIMITER.join(parts[2:])!r}{hint}", None
    model = inner_model(field_info.annotation)
    if model is None or section == "rewards" or len(parts) != 2:
        return "no such configuration key", None
    if parts[1] not in with_file_keys(model):
        return f"[{section}] has no key {parts[1]!r}", None
    field = model.model_fields.get(parts[1])
    return "", field.annotation if field is not None else None


def env_names(root: type[BaseModel]) -> list[str]:
    """The variable names of every key (upper-case, for did-you-mean)."""
    names = []
    for section, field_info in root.model_fields.items():
        names.append(ENV_PREFIX + section.upper())
        model = inner_model(field_info.annotation)
        if model is not None and section != "rewards":
            names += [f"{ENV_PREFIX}{section.upper()}{ENV_DELIMITER}{k.upper()}"
                      for k in sorted(with_file_keys(model))]
    return names


def variables(environ: Mapping[str, str] | None = None) -> list[tuple[list[str], str, str]]:
    """(its name after the prefix, lower-case, split at ``__``; its name; its value) of each
    ``REWARD_POLLER_*`` variable, sorted by name."""
    env = os.environ if environ is None else environ
    return [(var[len(ENV_PREFIX):].lower().split(ENV_DELIMITER), var, env[var])
            for var in sorted(env) if var.upper().startswith(ENV_PREFIX)]


def environment_data(
    root: type[BaseModel], environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The configuration the environment sets, as nested data for ``root`` (the ``Config``):
    whole sections first, then single keys over them."""
    found = [(parts, var, value) for parts, var, value in variables(environ)
             if parts[0] in root.model_fields and all(parts)]
    data: dict[str, Any] = {}
    for parts, var, value in sorted(found, key=lambda item: (len(item[0]), item[1])):
        parsed = json_value(var, value) if is_complex(key_type(root, parts)[1]) else value
        place = data
        for part in parts[:-1]:
            if not isinstance(place.get(part), dict):
                place[part] = {}
            place = place[part]
        last = parts[-1]
        if isinstance(parsed, dict) and isinstance(place.get(last), dict):
            place[last] = merged(place[last], parsed)
        else:
            place[last] = parsed
    return data


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on it: tables merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# --- errors ----------------------------------------------------------------------------


def _model_at(loc: tuple[Any, ...], root: type[BaseModel] | None) -> type[BaseModel] | None:
    """The model whose key ``loc`` ends with (for did-you-mean), or None."""
    model = root
    for part in loc[:-1]:
        if model is None:
            return None
        if not isinstance(part, int):
            field_info = model.model_fields.get(str(part))
            model = inner_model(field_info.annotation) if field_info is not None else None
    return model


def describe(exc: ValidationError, prefix: str = "", *, model: type[BaseModel] | None = None,
             origin: dict[str, str] | None = None) -> ConfigError:
    """One line per error, naming the key; an unknown key gets the nearest known one;
    ``origin`` maps a key's dotted name to the environment variable it came from."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = prefix
        for part in loc:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            known = _model_at(loc, model)
            msg = "unknown key" + (nearest(str(loc[-1]), known.model_fields) if known else "")
        key = where.lower()
        while key and key not in (origin or {}):
            key = key.rpartition(".")[0]
        source = f" (from {origin[key]})" if key and origin else ""
        lines.append(f"{where or '(top level)'}: {msg}{source}")
    return invalid(lines)
