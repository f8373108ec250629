"""Showing URLs from the config without their secrets.

A URL can carry a secret in two places: its userinfo (``https://user:pass@host/``) and, for
many webhook-style endpoints, its path (a Zapier catch-hook id, a Slack webhook token). What
is shown (logs, ``check``, the ledger, health, messages) is ``display_url``: the userinfo
always removed, and the path reduced to the host for the keys the user lists in
``[security] secret_url_keys`` (every vendor and alert URL by default). ``url_secrets`` gives
the same parts to the log redactor, so a stray occurrence anywhere (an exception text, a
vendor's answer quoting the URL) is scrubbed too.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

DEFAULT_SECRET_URL_KEYS = ("vendors.*.url", "vendors.*.base_url", "alerts.webhook_url")
"""Every vendor URL and the alert webhook: their paths may be credentials."""

HIDDEN_PATH = "/…"
"""What replaces a secret path (and query) in a shown URL: there was something, not what."""


def is_secret_url_key(key: str, patterns: Iterable[str]) -> bool:
    """Whether config key ``key`` (``vendors.http.url``) matches one of ``patterns``."""
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _netloc(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of ``url`` without userinfo; ("", "") when unparseable."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "", ""
    if ":" in host:
        host = f"[{host}]"
    return parts.scheme, f"{host}:{port}" if port is not None else host


def display_url(url: str, secret_path: bool = True) -> str:
    """``url`` as it may be shown: no userinfo ever; with ``secret_path``, no path, query or
    fragment either (``https://hooks.example/…``). Never raises: an unparseable URL is shown
    as ``<unparseable URL>``."""
    scheme, netloc = _netloc(url)
    if not scheme or not netloc:
        return "<unparseable URL>"
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<unparseable URL>"
    if secret_path:
        rest = HIDDEN_PATH if (parts.path not in ("", "/") or parts.query or parts.fragment) \
            else ""
        return f"{scheme}://{netloc}{rest}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path}{query}"


def url_secrets(url: str, secret_path: bool = True) -> list[str]:
    """The secret parts of ``url`` as text that could appear elsewhere: the userinfo (and
    its password alone, raw and percent-decoded), and with ``secret_path`` the path and
    query. Parts too short to be secrets (``/``) are left out by the redactor itself."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return [url]  # cannot tell which part is secret: the whole of it is
    found: list[str] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and userinfo:
        found.append(userinfo)
        found.append(unquote(userinfo))
        _, colon, password = userinfo.partition(":")
        if colon and password:
            found += [password, unquote(password)]
    if secret_path:
        path = parts.path.rstrip("/")
        if path:
            found += [path, unquote(path), path.lstrip("/")]
            if parts.query:
                found.append(f"{path}?{parts.query}")
        if parts.query:
            found.append(parts.query)
    seen: list[str] = []
    for part in found:
        if part and part not in seen:
            seen.append(part)
    return seen
