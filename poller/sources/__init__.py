"""Where redemptions come from: Influitive (polled) and Influence.io (webhooks). Each source
owns its wire format and turns payloads into ``poller.domain.model.Redemption``; what their
HTTP clients share is here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from poller import __version__
from poller.domain.errors import ConfigError
from poller.transport import describe

USER_AGENT = f"reward-poller/{__version__}"
MAX_ERROR_TEXT = 200


def checked_base_url(url: str, section: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"{section} base_url is not a URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{section} base_url must be an http(s) URL with a host")
    return parsed


def scrub(text: str, secret: str) -> str:
    """Server-provided text, shortened, printable, and never carrying ``secret``."""
    if secret:
        text = text.replace(secret, "[redacted]")
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text[:MAX_ERROR_TEXT] + ("..." if len(text) > MAX_ERROR_TEXT else "")


def error_text(response: httpx.Response, keys: Iterable[str], secret: str) -> str:
    """What the server said about an error (the first of ``keys`` its JSON body has), if it
    said anything readable."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return ""
    found: Any = body if isinstance(body, str) else None
    if isinstance(body, Mapping):
        found = next((body[key] for key in keys if body.get(key)), None)
    if found is None:
        return ""
    if isinstance(found, list):
        found = "; ".join(str(f) for f in found)
    return scrub(found if isinstance(found, str) else json.dumps(found, default=str), secret)


def failure(exc: httpx.HTTPError) -> str:
    """A request that got no answer, in words (an unusable URL only by its type)."""
    return describe(exc) if isinstance(exc, httpx.TransportError) else type(exc).__name__
