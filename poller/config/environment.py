"""The ``REWARD_POLLER_*`` environment as configuration data, merged over the file's key by
key: ``REWARD_POLLER_<SECTION>__<KEY>`` sets ``[section] key`` (``REWARD_POLLER_VENDORS__<NAME>__
<KEY>`` a vendor's key), ``REWARD_POLLER_<SECTION>`` a whole section as JSON. Names are read
without regard to case; a value is JSON where the key holds a table, a list or a dict, text
otherwise (validation converts it). ``poller.config.load.check_environment`` names a
variable that maps to no key, or holds bad JSON, before this runs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel

from poller.domain.errors import ConfigError

ENV_PREFIX = "REWARD_POLLER_"
ENV_DELIMITER = "__"


def is_complex(annotation: Any) -> bool:
    """Whether a key of this type is read from its variable as JSON."""
    if annotation is None:
        return False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    origin = getattr(annotation, "__origin__", None)
    if origin in (dict, list, tuple, set, frozenset):
        return True
    return any(is_complex(a) for a in get_args(annotation) if a is not type(None))


def _annotation(root: type[BaseModel], parts: list[str]) -> Any:
    """The type of the key ``parts`` names (None when unknown or free-form)."""
    field = root.model_fields.get(parts[0])
    if field is None:
        return None
    annotation = field.annotation
    if len(parts) == 1:
        return annotation
    if len(parts) == 2:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            inner = annotation.model_fields.get(parts[1])
            return inner.annotation if inner is not None else None
        if getattr(annotation, "__origin__", None) is dict:
            return get_args(annotation)[1] if get_args(annotation) else None
    return None


def environment_data(
    root: type[BaseModel], environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The configuration the environment sets, as nested data for ``root`` (the ``Config``):
    whole sections first, then single keys over them."""
    env = os.environ if environ is None else environ
    found: list[tuple[list[str], str, str]] = []
    for var, value in env.items():
        if not var.upper().startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX):].lower().split(ENV_DELIMITER)
        if parts[0] in root.model_fields and all(parts):
            found.append((parts, var, value))
    data: dict[str, Any] = {}
    for parts, var, value in sorted(found, key=lambda item: (len(item[0]), item[1])):
        parsed: Any = value
        if is_complex(_annotation(root, parts)):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{var}: not valid JSON ({exc.msg} at character "
                                  f"{exc.pos})") from None
        place = data
        for part in parts[:-1]:
            inner = place.get(part)
            if not isinstance(inner, dict):
                inner = {}
                place[part] = inner
            place = inner
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
