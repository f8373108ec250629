"""Showing URLs from the config without their secrets, and telling the log redactor which
parts of a URL are secret.

A URL can carry a secret in three places: the password of its userinfo
(``https://user:pass@host/``), a query parameter (``?token=...``) and, for many webhook-style
endpoints, its path (a Zapier catch-hook id, a Slack webhook token). Its scheme, host, port,
user name and ordinary path words (``/api/v2``) are not secrets, and are never treated as
such: a user name such as ``postgres`` or ``advocate`` is an ordinary word, and scrubbing it
as a secret would rewrite every text that happens to hold the word.

What is shown (``check``, health, the config in messages) is ``display_url``: the userinfo
always removed, and the path reduced to the host for the keys the user lists in
``[security] secret_url_keys`` (every vendor and alert URL by default). ``url_redaction``
gives the log redactor the secret parts of a URL, each to be scrubbed in context: the
password where it stands in a URL's userinfo (``user:[redacted]@``), and a secret path
segment, query value or strong password as a whole token, never inside a longer word.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_SECRET_URL_KEYS = ("vendors.*.url", "vendors.*.base_url", "vendors.*.lookup_url",
                           "vendors.*.orders_url", "alerts.webhook_url")
"""Every vendor URL and the alert webhook: their paths may be credentials."""

HIDDEN_PATH = "/…"
"""What replaces a secret path (and query) in a shown URL: there was something, not what."""

MIN_SECRET = 6
"""Shorter values are never scrubbed on their own: they would match ordinary words."""

LONG_SECRET = 20
"""A value this long is a credential whatever characters it holds."""

_SECRET_QUERY_KEY = re.compile(
    r"(^|[_-])(token|key|apikey|secret|password|passwd|pwd|sig|signature|auth|code|"
    r"credential|credentials|access_token|session)$", re.IGNORECASE)


def looks_like_credential(text: str) -> bool:
    """Whether ``text`` (a path segment, a query value, a password) looks like a credential
    rather than a word: long, or at least ``MIN_SECRET`` characters with two digits or more
    (a hook id such as ``4815162``, a token such as ``zq9x8y7w``). ``api``, ``v2``,
    ``postgres``, ``advocate``, ``8080`` or ``funding_sources`` do not."""
    if len(text) >= LONG_SECRET:
        return True
    return len(text) >= MIN_SECRET and sum(c.isdigit() for c in text) >= 2


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


def _both(text: str) -> list[str]:
    """``text`` as written and percent-decoded (either may appear in another text)."""
    return [text] if unquote(text) == text else [text, unquote(text)]


def _unique(values: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


@dataclass(frozen=True)
class UrlRedaction:
    """The secret parts of one URL, as the log redactor scrubs them."""

    url: str
    """The URL as written in the config."""
    shown: str | None
    """What a whole occurrence of ``url`` becomes (``display_url``), for a URL whose path
    is secret and holds a credential; None: whole occurrences are scrubbed part by part."""
    passwords: tuple[str, ...]
    """The userinfo password (raw and decoded): scrubbed where it follows ``user:`` and
    precedes ``@``, and anywhere as a whole token when it looks like a credential."""
    tokens: tuple[str, ...]
    """Credential-looking path segments and secret query values: scrubbed as whole tokens."""

    def __bool__(self) -> bool:
        return bool(self.passwords or self.tokens)


def _query_secrets(query: str, every_value: bool) -> list[str]:
    """Values of the query's secret parameters (``token=``, ``api_key=``, ``sig=``...) or
    credential-looking values, or of every parameter with ``every_value``; as written and
    percent-decoded."""
    found: list[str] = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if value and (every_value or _SECRET_QUERY_KEY.search(unquote(name))
                      or looks_like_credential(unquote(value))):
            found += _both(value)
    return found


def url_redaction(url: str, secret_path: bool = True) -> UrlRedaction:
    """The secret parts of ``url``: its password, secret query values and, with
    ``secret_path``, the path segments that look like credentials (``looks_like_credential``).
    Never the user name, host, port or an ordinary path."""
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
    secret_segments: list[str] = []
    if secret_path:
        for segment in parts.path.split("/"):
            if looks_like_credential(unquote(segment)):
                secret_segments += _both(segment)
    tokens += secret_segments
    tokens = [t for t in _unique(tokens) if len(t) >= MIN_SECRET]
    shown = (display_url(url, secret_path=True)
             if secret_path and (passwords or tokens) else None)
    return UrlRedaction(url=url.strip(), shown=shown, passwords=tuple(_unique(passwords)),
                        tokens=tuple(tokens))


def url_secrets(url: str, secret_path: bool = True) -> list[str]:
    """The secret parts of ``url`` as text that could appear elsewhere: the userinfo with
    its password (``user:pass``), the password alone (raw and percent-decoded), secret query
    values and, with ``secret_path``, a path that holds credential-looking segments (whole,
    and those segments). A URL without a password, secret query or credential in a secret
    path has none: ``https://postgres@db/ledger`` or ``https://api.example.com/api/v2``."""
    found = url_redaction(url, secret_path)
    if not found:
        return []
    out: list[str] = []
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return list(found.tokens)
    userinfo = parts.netloc.rpartition("@")[0]
    if found.passwords:
        out += _both(userinfo)
        out += found.passwords
    path = parts.path.rstrip("/")
    if secret_path and path and any(t in path for t in found.tokens):
        out += _both(path)
    out += found.tokens
    return _unique(out)
