"""Shared HTTP plumbing for the adapters: one bounded retry loop, Retry-After honoured,
and the one kind of client they all use.

Retrying lives here once so that the Influitive client and every vendor behave alike:
429 and 5xx and transport errors are retried a few times inside one call, with exponential
backoff and full jitter (tenacity); a Retry-After longer than ``max_retry_after`` is not
slept through here: the response is handed back so the caller can schedule the next attempt
for a later cycle instead of blocking the worker.

``ApiClient`` is the ``httpx.Client`` of every adapter: TLS verified with one context shared
by the whole process (``tls_context``), and no cookie jar.
"""

from __future__ import annotations

import email.utils
import functools
import ssl
import time
import urllib.request
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


# --- the clients ----------------------------------------------------------------------------


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    # Loading the trusted certificates is most of what building an httpx client costs
    # (tens of milliseconds), and every client would load the same ones: once per process.
    # The same certificates as httpx's default (SSL_CERT_FILE or SSL_CERT_DIR when set,
    # else certifi's bundle); an SSLContext is safe to share between clients and threads.
    return httpx.create_ssl_context()


@functools.cache
def _trusting_nothing() -> ssl.SSLContext:
    # Hostname checked and a certificate required, but no certificate trusted: a TLS
    # connection made with it fails closed instead of going unverified.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def tls_context(url: str) -> ssl.SSLContext:
    """The ``verify=`` for a client whose requests go to ``url``: the process's one verifying
    context (built on first use) wherever TLS can happen, that is for https, any other
    scheme, or a proxy from the environment (which may be https itself). A plain-http URL
    with no proxy makes no TLS connection: it gets a context that trusts no certificate, so
    the certificates are never loaded and nothing is ever accepted unverified."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "http" and not urllib.request.getproxies():
        return _trusting_nothing()
    return _verifying_context()


class _UnkeptCookies(httpx.Cookies):
    """A cookie jar that keeps nothing from a response."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class ApiClient(httpx.Client):
    """The ``httpx.Client`` of the adapters (token- or key-authenticated APIs).

    * TLS is verified with ``tls_context(target)`` (``target``: where the requests go,
      ``base_url`` by default), shared by every client instead of built for each.
    * No cookie jar: these APIs authenticate every request by its headers, so a cookie a
      server sets is neither needed nor sent back (nor parsed from every response). The
      jar is the client's public ``cookies``; an httpx that reached its cookies some other
      way would simply keep them, as before.
    """

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


def target(url: httpx.URL) -> str:
    """``host[:port]/path`` of a request, as errors and logs name it: the port kept (a
    stand-in or a proxy is often on one), never the scheme's userinfo or the query (either
    may hold a secret)."""
    host = url.host
    if ":" in host:
        host = f"[{host}]"
    port = f":{url.port}" if url.port is not None else ""
    return f"{host}{port}{url.path}"


def describe(exc: httpx.TransportError) -> str:
    """A secret-free description: the class and the target (``host:port/path``), never
    headers, userinfo or query."""
    request = getattr(exc, "_request", None)
    where = f" ({request.method} {target(request.url)})" if request else ""
    return f"{type(exc).__name__}{where}"


def utcnow() -> datetime:
    return datetime.now(UTC)
