"""Showing URLs from the config without their secrets (``display_url``), and telling the log
redactor which parts of a URL are secret (``url_redaction``): docs/security.md says which
parts are, and why a user name or an ordinary path word never is.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_SECRET_URL_KEYS = ("vendors.*.url", "vendors.*.base_url", "vendors.*.lookup_url",
                           "vendors.*.orders_url", "alerts.webhook_url")
HIDDEN_PATH = "/…"  # a secret path was there, not what
MIN_SECRET = 6  # shorter values would match ordinary words
LONG_SECRET = 20  # a credential whatever characters it holds

_SECRET_QUERY_KEY = re.compile(
    r"(^|[_-])(token|key|apikey|secret|password|passwd|pwd|sig|signature|auth|code|"
    r"credential|credentials|access_token|session)$", re.IGNORECASE)


def looks_like_credential(text: str) -> bool:
    """Long, or at least ``MIN_SECRET`` characters with two digits or more (a hook id
    ``4815162``, a token ``zq9x8y7w``); ``postgres``, ``8080`` or ``funding_sources`` not."""
    if len(text) >= LONG_SECRET:
        return True
    return len(text) >= MIN_SECRET and sum(c.isdigit() for c in text) >= 2


def is_secret_url_key(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def display_url(url: str, secret_path: bool = True) -> str:
    """``url`` without userinfo; with ``secret_path``, without path, query or fragment
    either (``https://hooks.example/…``). Never raises."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    scheme = parts.scheme
    if not scheme or not netloc:
        return "<unparseable URL>"
    if secret_path:
        rest = HIDDEN_PATH if (parts.path not in ("", "/") or parts.query or parts.fragment) \
            else ""
        return f"{scheme}://{netloc}{rest}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path}{query}"


def _both(text: str) -> list[str]:
    """``text`` as written and percent-decoded (either may appear in another text)."""
    return [text] if unquote(text) == text else [text, unquote(text)]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


@dataclass(frozen=True)
class UrlRedaction:
    """The secret parts of one URL. ``shown``: what a whole occurrence becomes, for a URL
    whose secret path holds a credential (None: scrubbed part by part); ``passwords``: the
    userinfo password, raw and decoded; ``tokens``: credential-looking path segments and
    secret query values, scrubbed as whole tokens."""

    url: str
    shown: str | None
    passwords: tuple[str, ...]
    tokens: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.passwords or self.tokens)


def _query_secrets(query: str, every_value: bool) -> list[str]:
    """Values of secret parameters (``token=``, ``sig=``...), credential-looking values, or
    with ``every_value`` all, as written and percent-decoded."""
    found: list[str] = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if value and (every_value or _SECRET_QUERY_KEY.search(unquote(name))
                      or looks_like_credential(unquote(value))):
            found += _both(value)
    return found


def url_redaction(url: str, secret_path: bool = True) -> UrlRedaction:
    try:
        parts = urlsplit(url.strip())
        _ = parts.port
    except ValueError:  # cannot tell which part is secret: the whole of it is
        return UrlRedaction(url=url, shown=None, passwords=(), tokens=(url.strip(),))
    passwords: list[str] = []
    userinfo, at, _host = parts.netloc.rpartition("@")
    if at:
        _user, colon, password = userinfo.partition(":")
        if colon and password:
            passwords = _both(password)
    tokens = _query_secrets(parts.query, every_value=secret_path)
    if secret_path:
        for segment in parts.path.split("/"):
            if looks_like_credential(unquote(segment)):
                tokens += _both(segment)
    tokens = [t for t in _unique(tokens) if len(t) >= MIN_SECRET]
    shown = (display_url(url, secret_path=True)
             if secret_path and (passwords or tokens) else None)
    return UrlRedaction(url=url.strip(), shown=shown, passwords=tuple(_unique(passwords)),
                        tokens=tuple(tokens))

