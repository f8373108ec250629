"""Secrets in the configuration: which keys hold one, ``<key>_file`` read in their place
(``read_secret_files``), and the secret parts of config URLs registered with the log redactor
at load (``register_url_secrets``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr

from poller.core.redact import is_secret_url_key
from poller.domain.errors import ConfigError
from poller.logs import redactor
from poller.vendors import vendor_module

FILE_SUFFIX = "_file"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(is_secret(a) for a in get_args(annotation))


def secret_keys(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that hold secrets (``SecretStr``, optional or not)."""
    return frozenset(n for n, f in model.model_fields.items() if is_secret(f.annotation))


def secret_sections(
    data: dict[str, Any], root: type[BaseModel],
) -> list[tuple[str, dict[str, Any], frozenset[str]]]:
    """(key prefix, raw section, its secret keys) for every section that has secrets: the
    fixed sections of ``root`` (the ``Config``) and each ``[vendors.<name>]`` by its
    vendor's Settings."""
    found = []
    for name, field in root.model_fields.items():
        model = field.annotation
        section = data.get(name)
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(section, dict):
            keys = secret_keys(model)
            if keys:
                found.append((name, section, keys))
    vendors = data.get("vendors")
    if isinstance(vendors, dict):
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


def read_secret_files(data: dict[str, Any], root: type[BaseModel]) -> dict[str, Any]:
    """Replace each ``<secret>_file = PATH`` by ``<secret> = <stripped file contents>``.

    Runs before validation, on the file and the environment merged, so it applies to both
    (``REWARD_POLLER_INFLUITIVE__API_TOKEN_FILE`` too). Errors name the key and the path,
    never the contents. A key given both ways is an error rather than a silent choice.
    """
    base = os.environ.get(CREDENTIALS_ENV)
    errors: list[str] = []
    out = dict(data)
    for prefix, section, keys in secret_sections(data, root):
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




def register_url_secrets(urls: Mapping[str, str], secret_url_keys: Iterable[str]) -> None:
    """At load, before anything can log or store a URL: the secret parts of every config URL
    (its password and secret query values; credential-looking path segments for the keys
    ``secret_url_keys`` matches) are scrubbed wherever they would appear (logs, the ledger's
    stored texts, CLI errors). Never its user name, host, port or plain path."""
    keys = list(secret_url_keys)
    for key, url in urls.items():
        redactor.add_url(url, secret_path=is_secret_url_key(key, keys))
