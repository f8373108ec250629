"""Shared HTTP plumbing for the adapters: one bounded retry loop, Retry-After honoured.

Retrying lives here once so that the Influitive client and every vendor behave alike:
429 and 5xx and transport errors are retried a few times inside one call, with exponential
backoff and full jitter (tenacity); a Retry-After longer than ``max_retry_after`` is not
slept through here: the response is handed back so the caller can schedule the next attempt
for a later cycle instead of blocking the worker.
"""

from __future__ import annotations

import email.utils
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    attempts: int = 3
    """Tries per call, the first included."""
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_retry_after: float = 30.0
    """A Retry-After longer than this ends the call; the caller reschedules."""
    timeout: float = 30.0


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def retry_after_of(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


class _Wait:
    """Backoff with jitter, unless the last answer said how long to wait."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response = outcome.result()
            if isinstance(response, httpx.Response):
                after = retry_after_of(response)
                if after is not None:
                    return after
        return float(self._jitter(state))


def _should_retry_response(policy: RetryPolicy) -> Callable[[Any], bool]:
    def check(response: Any) -> bool:
        if not isinstance(response, httpx.Response) or response.status_code not in RETRY_STATUSES:
            return False
        after = retry_after_of(response)
        return after is None or after <= policy.max_retry_after

    return check


RequestObserver = Callable[[float, "httpx.Response | None", "BaseException | None"], None]
"""Told of every attempt ``send`` makes: seconds taken, and the response or the error."""

_observers: list[RequestObserver] = []


def observe_requests(observer: RequestObserver) -> None:
    """Add ``observer`` (metrics) for every HTTP attempt of this process. It runs in the
    calling thread and must not raise."""
    _observers.append(observer)


def _observed(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    start = time.perf_counter()
    try:
        response = client.request(method, url, **kwargs)
    except BaseException as exc:
        for observer in _observers:
            observer(time.perf_counter() - start, None, exc)
        raise
    for observer in _observers:
        observer(time.perf_counter() - start, response, None)
    return response


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request with bounded retries. Returns the last response (which may still be
    a 429 or 5xx) or raises the last ``httpx.TransportError``."""
    response: httpx.Response = _retrying(policy, sleep)(_observed, client, method, url, **kwargs)
    return response


def _retrying(policy: RetryPolicy, sleep: Callable[[float], None]) -> Retrying:
    """The retry loop for one policy, built once: a ``Retrying`` keeps the state of a call
    in thread-local storage, so every thread may run calls through the same one, and
    building it costs more than a request that needs no retry."""
    try:
        return _kept_retrying(policy, sleep)
    except TypeError:  # a sleep that cannot be a cache key (a recorder in tests)
        return _build_retrying(policy, sleep)


@functools.lru_cache(maxsize=64)
def _kept_retrying(policy: RetryPolicy, sleep: Callable[[float], None]) -> Retrying:
    return _build_retrying(policy, sleep)


def _build_retrying(policy: RetryPolicy, sleep: Callable[[float], None]) -> Retrying:
    return Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_Wait(policy),
        retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(
            _should_retry_response(policy)
        ),
        sleep=sleep,
        reraise=True,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )


def nothing_was_sent(exc: httpx.TransportError) -> bool:
    """True when the request surely never reached the server (so no order can exist)."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def describe(exc: httpx.TransportError) -> str:
    """A secret-free description: the class and the target host, never headers."""
    request = getattr(exc, "_request", None)
    where = f" ({request.method} {request.url.host}{request.url.path})" if request else ""
    return f"{type(exc).__name__}{where}"


def utcnow() -> datetime:
    return datetime.now(UTC)
