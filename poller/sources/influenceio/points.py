"""The Influence.io Platform API's points endpoints, used to refund a refused redemption:
what is documented, and the assumed points history with the settings that adapt it, are in
docs/influenceio.md."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from poller.domain.errors import ConfigError
from poller.sources import USER_AGENT, checked_base_url, error_text, failure
from poller.transport import ApiClient, RetryPolicy, nothing_was_sent, send

log = structlog.get_logger(__name__)

_ERROR_KEYS = ("message", "error", "errors", "detail")
_HISTORY_LISTS = ("data", "items", "history", "points", "results", "entries", "events")
_REASON_KEYS = ("reason", "description", "note", "notes", "summary", "message", "title")


class Outcome(enum.Enum):
    """What a points request did, as far as can be told."""

    APPLIED = "applied"
    NOT_APPLIED = "not_applied"
    """Influence.io said no (4xx, 429) or the request surely never left."""
    UNKNOWN = "unknown"
    """A timeout after sending, a reset, a 5xx: it may have been applied."""


@dataclass(frozen=True)
class PointsAnswer:
    """The outcome of one award, with a secret-free description for logs and the ledger."""

    outcome: Outcome
    detail: str
    status: int | None = None


class PointsClient:
    """Awards points and reads a customer's points history. The API key lives only in the
    HTTP client's headers."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        policy: RetryPolicy = RetryPolicy(),
        points_field: str = "points",
        reason_field: str = "reason",
        history_path: str = "/customers/{customer_id}/points",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = checked_base_url(base_url, "influenceio")
        key = api_key.strip() if isinstance(api_key, str) else ""
        if not key or not key.isprintable() or " " in key:
            raise ConfigError("influenceio api_key is empty or has characters not allowed")
        if history_path and "{customer_id}" not in history_path:
            raise ConfigError("influenceio history_path must contain {customer_id} or be empty")
        self._policy = policy
        self._points_field = points_field
        self._reason_field = reason_field
        self._history_path = history_path
        self._base = str(url).rstrip("/")
        self._http = ApiClient(
            target=self._base,
            headers={"x-api-key": key, "Accept": "application/json",
                     "Content-Type": "application/json", "User-Agent": USER_AGENT},
            timeout=policy.timeout, transport=transport, follow_redirects=False,
        )

    def __repr__(self) -> str:
        shown = httpx.URL(self._base)
        return f"PointsClient(base_url={shown.scheme}://{shown.host}{shown.path!s})"

    def close(self) -> None:
        self._http.close()

    def _url(self, path: str, customer_id: str) -> str:
        return self._base + path.replace("{customer_id}", quote(customer_id, safe=""))

    def award(self, customer_id: str, points: int, reason: str) -> PointsAnswer:
        """``POST /customers/{customerId}/points``. Never raises for an HTTP answer: the
        outcome says whether the points may have been added."""
        body = {self._points_field: points, self._reason_field: reason}
        # One try only: after a timeout the refund may exist, and a blind retry could pay
        # the points twice. The caller looks it up before any repeat.
        once = replace(self._policy, attempts=1)
        try:
            response = send(self._http, "POST", self._url("/customers/{customer_id}/points",
                                                          customer_id),
                            policy=once, json=body)
        except httpx.HTTPError as exc:  # not a TransportError: an unusable URL, never sent
            sent = isinstance(exc, httpx.TransportError) and not nothing_was_sent(exc)
            return PointsAnswer(Outcome.UNKNOWN if sent else Outcome.NOT_APPLIED,
                                f"Influence.io points request failed: {failure(exc)}")
        status = response.status_code
        said = error_text(response, _ERROR_KEYS, str(self._http.headers["x-api-key"]))
        suffix = f" ({said})" if said else ""
        if 200 <= status < 300:
            return PointsAnswer(Outcome.APPLIED, f"Influence.io added the points (HTTP {status})",
                                status)
        if status == 404:
            detail = ("Influence.io does not know the customer (HTTP 404): check "
                      "[influenceio] customer_id_field and base_url")
        elif status in (401, 403):
            detail = f"Influence.io rejected [influenceio] api_key (HTTP {status})"
        elif status in (400, 422):
            detail = (f"Influence.io refused the points request (HTTP {status}); the body "
                      "field names are settings: [influenceio] points_field, reason_field")
        else:
            detail = f"Influence.io answered HTTP {status}"
        outcome = Outcome.UNKNOWN if status >= 500 else Outcome.NOT_APPLIED
        return PointsAnswer(outcome, detail + suffix, status)

    def find(self, customer_id: str, marker: str) -> bool | None:
        """Whether the customer's points history has an entry whose reason contains
        ``marker``: True, False (the history was read and has none), or None (it could not
        be read or understood: no conclusion)."""
        if not self._history_path:
            return None
        try:
            response = send(self._http, "GET", self._url(self._history_path, customer_id),
                            policy=self._policy)
        except httpx.HTTPError as exc:
            log.warning("influenceio.points.history_unavailable", error=failure(exc))
            return None
        if response.status_code != 200:
            log.warning("influenceio.points.history_unavailable",
                        status=response.status_code)
            return None
        try:
            body = response.json()
        except (ValueError, RecursionError):
            return None
        entries = body if isinstance(body, list) else _first(body, _HISTORY_LISTS, list)
        if entries is None:
            log.warning("influenceio.points.history_unreadable")
            return None
        reasons = (_first(entry, _REASON_KEYS, str) for entry in entries)
        if any(marker in reason for reason in reasons if reason):
            return True
        # Only a whole history proves absence: with more pages, the refund may be on one.
        return None if _has_more(body) else False


def _has_more(body: Any) -> bool:
    if not isinstance(body, Mapping):
        return False
    links = body.get("links")
    nexts = [body.get(k) for k in ("cursor", "next", "nextCursor", "next_cursor")]
    if isinstance(links, Mapping):
        nexts.append(links.get("next"))
    meta = body.get("meta")
    if isinstance(meta, Mapping):
        nexts.extend(meta.get(k) for k in ("cursor", "next", "has_next", "hasMore"))
    return any(bool(n) for n in nexts)


def _first(found: Any, keys: tuple[str, ...], kind: type) -> Any:
    """The first of ``keys`` in ``found`` whose value is a ``kind``, or None."""
    if not isinstance(found, Mapping):
        return None
    return next((found[key] for key in keys if isinstance(found.get(key), kind)), None)
