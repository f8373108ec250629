"""The HTTP vendor: this install's own record of what it sent under each key, kept in
the cache for ``REMEMBER`` so that ``lookup`` can answer without ``lookup_url``."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from poller.ports import Cache

REMEMBER = timedelta(days=90)
"""How long a sent request is kept so that it can be repeated."""


@dataclass
class _Sent:
    """What this install sent under one key. ``taken``: None = unknown (sent, no readable
    answer, or not sent yet when the process died), True = a 2xx answer, False = only
    non-2xx answers so far (by the contract, nothing taken)."""

    body: str
    taken: bool | None = None


class _SentRecord:
    """What was sent under each key: in memory, and in the cache when there is one."""

    _cache: Cache | None
    _lock: threading.Lock
    _sent: dict[str, _Sent]

    def _cache_key(self, key: str) -> str:
        return f"http:order:{key}"

    def _recall(self, key: str) -> _Sent | None:
        with self._lock:
            sent = self._sent.get(key)
        if sent is not None or self._cache is None:
            return sent
        raw = self._cache.cache_get(self._cache_key(key), datetime.now(UTC))
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("body"), str):
            return None
        taken = data.get("taken")
        sent = _Sent(body=data["body"], taken=taken if isinstance(taken, bool) else None)
        with self._lock:
            return self._sent.setdefault(key, sent)

    def _remember(self, key: str, sent: _Sent) -> None:
        with self._lock:
            self._sent[key] = sent
        if self._cache is not None:
            now = datetime.now(UTC)
            self._cache.cache_put(self._cache_key(key),
                                  json.dumps({"body": sent.body, "taken": sent.taken}),
                                  now + REMEMBER)

