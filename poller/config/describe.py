"""Validation errors as lines a person can act on: each names the key (``vendors.tango.url``,
``rewards[2].amount``), the environment variable it came from, and for an unknown key the
nearest known one."""

from __future__ import annotations

import difflib
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


def loc_text(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def model_at(loc: tuple[Any, ...], root: type[BaseModel] | None) -> type[BaseModel] | None:
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
        model = inner_model(field_info.annotation)
    return model


def inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = inner_model(arg)
        if found is not None:
            return found
    return None


def nearest(word: str, choices: Any) -> str:
    """`` (did you mean X?)`` for the closest of ``choices`` (case-insensitive), or ""."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


def describe(exc: ValidationError, prefix: str = "", *, model: type[BaseModel] | None = None,
              origin: dict[str, str] | None = None) -> str:
    """One line per error, naming the key; an unknown key gets the nearest known one;
    ``origin`` maps a key's dotted name to the environment variable it came from."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = loc_text(loc, prefix)
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            known = model_at(loc, model)
            msg = "unknown key" + (nearest(str(loc[-1]), known.model_fields) if known else "")
        source = origin_of(where, origin or {})
        lines.append(f"{where or '(top level)'}: {msg}" + (f" (from {source})" if source else ""))
    return "invalid configuration:\n  " + "\n  ".join(lines)


def origin_of(where: str, origin: dict[str, str]) -> str | None:
    """The variable that set ``where`` or the section holding it."""
    key = where.lower()
    while key:
        if key in origin:
            return origin[key]
        key = key.rpartition(".")[0]
    return None
