"""The HTTP plumbing every adapter shares, so the Influitive client and every vendor behave
alike: one bounded retry loop (tenacity: 429, 5xx and transport errors, exponential backoff
with full jitter, Retry-After honoured) and one kind of client (``ApiClient``). A Retry-After
longer than ``max_retry_after`` is not slept through: the response goes back to the caller,
which schedules the next attempt for a later cycle instead of blocking the worker.
"""

from __future__ import annotations

import email.utils
import functools
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
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


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    # Loading the trusted certificates (httpx's default ones) is most of what building a
    # client costs: once per process. An SSLContext is safe to share between threads.
    return httpx.create_ssl_context()


@functools.cache
def _trusting_nothing() -> ssl.SSLContext:
    # A certificate required and none trusted: a TLS connection fails closed.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def tls_context(url: str) -> ssl.SSLContext:
    """The ``verify=`` for requests to ``url``: the process's verifying context wherever TLS
    can happen (any scheme but plain http, or a proxy from the environment); otherwise one
    that trusts nothing, so the certificates are never loaded for nothing."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "http" and not urllib.request.getproxies():
        return _trusting_nothing()
    return _verifying_context()


class _UnkeptCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None  # keeps nothing from a response


class ApiClient(httpx.Client):
    """The adapters' client: TLS verified with ``tls_context(target)`` (``base_url`` by
    default), and no cookie jar: these APIs authenticate every request by its headers."""

    def __init__(self, *, target: str | None = None, **kwargs: Any) -> None:
        self._unkept = _UnkeptCookies(kwargs.pop("cookies", None))
        if "verify" not in kwargs:
            where = target if target is not None else str(kwargs.get("base_url", ""))
            kwargs["verify"] = tls_context(where)
        super().__init__(**kwargs)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._unkept

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._unkept = _UnkeptCookies(cookies)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    attempts: int = 3  # tries per call, the first included
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After ends the call; the caller reschedules
    timeout: float = 30.0


def retry_after_of(response: httpx.Response) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    value = (response.headers.get("Retry-After") or "").strip()
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
    return max(0.0, when.timestamp() - time.time())


RequestObserver = Callable[[float, "httpx.Response | None", "BaseException | None"], None]
_observers: list[RequestObserver] = []


def observe_requests(observer: RequestObserver) -> None:
    """Tell ``observer`` (metrics) of every HTTP attempt of this process: seconds taken, and
    the response or the error. It runs in the calling thread and must not raise."""
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
    client: httpx.Client, method: str, url: str, *, policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep, **kwargs: Any,
) -> httpx.Response:
    """One request with bounded retries: the last response (perhaps still a 429 or 5xx), or
    the last ``httpx.TransportError`` raised."""
    response: httpx.Response = _retrying(policy, sleep)(_observed, client, method, url, **kwargs)
    return response


def _retrying(policy: RetryPolicy, sleep: Callable[[float], None]) -> Retrying:
    """Built once per policy and sleep: a ``Retrying`` keeps each call's state in
    thread-local storage, and building one costs more than a request that needs no retry."""
    try:
        return _kept_retrying(policy, sleep)
    except TypeError:  # a sleep that cannot be a cache key (a recorder in tests)
        return _kept_retrying.__wrapped__(policy, sleep)


@functools.lru_cache(maxsize=64)
def _kept_retrying(policy: RetryPolicy, sleep: Callable[[float], None]) -> Retrying:
    jitter = wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            after = retry_after_of(outcome.result())
            if after is not None:
                return after
        return float(jitter(state))

    def retry_response(response: httpx.Response) -> bool:
        if response.status_code not in RETRY_STATUSES:
            return False
        after = retry_after_of(response)
        return after is None or after <= policy.max_retry_after

    return Retrying(
        stop=stop_after_attempt(policy.attempts), wait=wait, sleep=sleep, reraise=True,
        retry=retry_if_exception_type(httpx.TransportError) | retry_if_result(retry_response),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )


def nothing_was_sent(exc: httpx.TransportError) -> bool:
    """True when the request surely never reached the server (so no order can exist)."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def describe(exc: httpx.TransportError) -> str:
    """The class and ``host[:port]/path`` of the request: never headers, userinfo or query
    (any may hold a secret)."""
    request = getattr(exc, "_request", None)
    if request is None:
        return type(exc).__name__
    url = request.url
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port is not None else ""
    return f"{type(exc).__name__} ({request.method} {host}{port}{url.path})"
