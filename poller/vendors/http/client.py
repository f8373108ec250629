"""The HTTP vendor: the calls to the receiver and the mapping of its errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NoReturn

import httpx
import structlog

from poller.domain.errors import OperatorFacingError, TransientVendorError, VendorError
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors.base import WitnessClient, call, scrub
from poller.vendors.http.settings import NAME
from poller.vendors.http.wire import _message_of

log = structlog.get_logger(__name__)


class _HttpCalls:
    """The order call and the reading of a refusal; ``HttpVendor`` sets the state."""

    host: str
    _url: str
    _policy: RetryPolicy
    _sleep: Callable[[float], None]
    _client: WitnessClient

    def _call(self, body: bytes, headers: Mapping[str, str], what: str) -> httpx.Response:
        """Every send may create the order (a repeat of an unanswered one too), so a
        transport error after a byte may have left is an unknown outcome."""
        return call(self._client, "POST", self._url, policy=self._policy, sleep=self._sleep,
                    vendor=NAME, label=self.host, where=what, creates=True,
                    reach="the receiver", hide_path=True, content=body, headers=dict(headers))

    def _raise_for(self, response: httpx.Response, what: str, *,
                   url_key: str = "url") -> NoReturn:
        status = response.status_code
        said = scrub(_message_of(response))
        suffix = f": {said}" if said else ""
        error: VendorError
        if status == 429 or status >= 500:
            error = TransientVendorError(
                f"{self.host} answered HTTP {status} to {what}{suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status in (401, 403):
            error = OperatorFacingError(
                f"{self.host} rejected the request (HTTP {status} to {what}): does it have "
                f"the same secret?{suffix}", vendor=NAME, status=status,
            )
        elif status == 404:
            error = OperatorFacingError(
                f"{self.host} answered HTTP 404 to {what}: is {url_key} right?{suffix}",
                vendor=NAME, status=status,
            )
        else:
            error = OperatorFacingError(
                f"{self.host} answered HTTP {status} to {what}{suffix}", vendor=NAME,
                status=status,
            )
        log.warning("vendor.call.failed", vendor=NAME, call=what, http_status=status,
                    error_class=type(error).__name__)
        raise error

