"""Tango Card: the HTTP calls (spaced by the throttle) and the mapping of its errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

import httpx
import structlog
from pydantic import SecretStr

from poller.domain.errors import (
    RECIPIENT_INVALID,
    AdvocateFacingError,
    OperatorFacingError,
    TransientVendorError,
    VendorError,
)
from poller.domain.model import OrderRequest
from poller.ports import Cache
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors.base import WitnessClient, call, json_or_none, scrub
from poller.vendors.tango.settings import NAME
from poller.vendors.tango.wire import (
    CONFIG_KEYS,
    FUNDS_KEY,
    RECIPIENT_KEYS,
    _errors_of,
    _keys_of,
    classify_errors,
)

log = structlog.get_logger(__name__)


class _Throttle:
    """At most one call per ``interval`` seconds, across threads."""

    def __init__(self, interval: float, sleep: Callable[[float], None],
                 monotonic: Callable[[], float]) -> None:
        self._interval = interval
        self._sleep = sleep
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: float | None = None

    def wait(self) -> None:
        with self._lock:
            now = self._monotonic()
            if self._last is not None:
                gap = self._last + self._interval - now
                if gap > 0:
                    self._sleep(gap)
                    now += gap
            self._last = now


class _Client(WitnessClient):
    """Remembers the transport error of every attempt (see the Tremendous adapter: a first
    attempt that timed out after sending must not look like "nothing was sent" because the
    last one was refused), and spaces every request by the throttle (Tango's limit covers
    every endpoint)."""

    def __init__(self, *, throttle: _Throttle, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._throttle = throttle

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self._throttle.wait()
        return super().send(request, **kwargs)

class _TangoCalls:
    """The HTTP calls and the reading of a refusal; ``TangoVendor`` sets the state."""

    base_url: str
    platform_name: str
    customer_identifier: str
    account_identifier: str
    _key: SecretStr
    _policy: RetryPolicy
    _cache: Cache | None
    _sleep: Callable[[float], None]
    _clock: Callable[[], datetime]
    _catalog: tuple[datetime, dict[str, dict[str, Any]]] | None
    _client: _Client

    def _call(self, method: str, path: str, *, creates: bool = False, **kwargs: Any,
              ) -> httpx.Response:
        return call(self._client, method, path, policy=self._policy, sleep=self._sleep,
                    vendor=NAME, label="Tango Card", where=f"{method} /{path.split('/')[0]}",
                    creates=creates, **kwargs)

    def _raise_for(self, response: httpx.Response, what: str, *,
                   creating: OrderRequest | None = None) -> NoReturn:
        """``creating``: the order request this answers (a create's 4xx is classified)."""
        status = response.status_code
        errors = _errors_of(response)
        keys = _keys_of(response)
        said = self._vendor_message(response, errors)
        suffix = f": {said}" if said else ""
        error: VendorError
        if status == 401:
            error = OperatorFacingError(
                f"Tango Card rejected the platform name/key (HTTP 401 to {what}){suffix}",
                vendor=NAME, status=status,
            )
        elif status == 403:
            if "403.016" in keys:
                why = ("Tango flagged the account for order velocity (403.016): contact Tango "
                       "Card; the credentials themselves may be fine")
            elif "403.007" in keys:
                why = (f"customer {self.customer_identifier!r} is not authorised for this "
                       "(403.007): check customer_identifier/account_identifier and the "
                       "platform's permissions; not always a bad key")
            else:
                why = ("Tango Card refused the request: the platform key may lack access to "
                       "this account or call (not always a bad key)")
            error = OperatorFacingError(f"{why} (HTTP 403 to {what}){suffix}", vendor=NAME,
                                        status=status)
        elif status == 402 or FUNDS_KEY in keys:
            error = OperatorFacingError(
                f"not enough funds in Tango Card account {self.account_identifier!r} "
                f"(HTTP {status}{', 402.001' if FUNDS_KEY in keys else ''}){suffix}; top it "
                "up and the waiting redemptions go through", vendor=NAME, status=status,
            )
        elif status == 429:
            error = TransientVendorError(
                f"Tango Card rate limit (HTTP 429 to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status >= 500:
            replay = (" (Tango may have processed it: the retry reuses the externalRefID, so "
                      "it cannot be ordered twice)") if creating is not None else ""
            error = TransientVendorError(
                f"Tango Card server error (HTTP {status} to {what}){replay}{suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status == 404:
            error = OperatorFacingError(
                f"Tango Card answered HTTP 404 to {what} without a Tango error key: is "
                f"base_url right? ({self.base_url}){suffix}", vendor=NAME, status=status,
            )
        elif creating is not None and 400 <= status < 500:
            error = self._invalid_request(errors, keys, status, suffix, creating)
        else:
            error = OperatorFacingError(
                f"Tango Card answered HTTP {status} to {what}, which this adapter does not "
                f"expect{suffix}", vendor=NAME, status=status,
            )
        log.warning("vendor.call.failed", vendor=NAME, call=what, http_status=status,
                    error_class=type(error).__name__, keys=",".join(keys)[:80] or None)
        raise error

    def _invalid_request(self, errors: list[dict[str, Any]], keys: list[str], status: int,
                         suffix: str, request: OrderRequest) -> VendorError:
        named = f" ({', '.join(keys)})" if keys else ""
        known = set(keys) & (CONFIG_KEYS | RECIPIENT_KEYS)
        if known:
            # Tango's error ids decide; the field paths are only a fallback.
            if known & CONFIG_KEYS:
                return self._unavailable_or_config(request, f"HTTP {status}{named}{suffix}",
                                                   status)
            return AdvocateFacingError(
                f"Tango Card: the recipient is invalid (HTTP {status}{named}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        kind = classify_errors(errors)
        if kind == "funds":
            return OperatorFacingError(
                f"not enough funds in Tango Card account {self.account_identifier!r} "
                f"(HTTP {status}){suffix}; top it up and the waiting redemptions go through",
                vendor=NAME, status=status,
            )
        if kind in ("recipient", "both"):
            return AdvocateFacingError(
                f"Tango Card: the recipient is invalid (HTTP {status}{named}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        if kind == "product":
            return self._unavailable_or_config(request, f"HTTP {status}{named}{suffix}", status)
        return OperatorFacingError(
            f"Tango Card rejected our request (HTTP {status}{named}): check the configuration"
            f"{suffix}", vendor=NAME, status=status,
        )

    def _vendor_message(self, response: httpx.Response, errors: list[dict[str, Any]]) -> str:
        parts = [e["message"] for e in errors if isinstance(e.get("message"), str)]
        data = json_or_none(response)
        if not parts and isinstance(data, dict):
            for name in ("message", "httpPhrase"):
                if isinstance(data.get(name), str):
                    parts.append(data[name])
                    break
        text = "; ".join(parts)
        if isinstance(data, dict) and isinstance(data.get("requestId"), str):
            text += f" (requestId {data['requestId'][:64]})"
        return self._scrub(text.strip())

    def _scrub(self, text: str) -> str:
        """Vendor text made safe to quote: no key, no URL, one line, bounded."""
        return scrub(text, self._key.get_secret_value())

    def _unavailable_or_config(self, request: OrderRequest, refusal: str,
                               status: int) -> VendorError:
        """Decided by the catalog (``_TangoCatalog``)."""
        raise NotImplementedError
