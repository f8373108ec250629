"""Tremendous: the HTTP calls and the mapping of its errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import httpx
import structlog
from pydantic import SecretStr

from poller.domain.errors import OperatorFacingError, TransientVendorError
from poller.domain.model import OrderRequest
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors.base import WitnessClient, call, json_or_none, scrub
from poller.vendors.tremendous.settings import NAME, DeliveryMethod
from poller.vendors.tremendous.wire import _errors_of

log = structlog.get_logger(__name__)


class _TremendousCalls:
    """The HTTP calls and the reading of a refusal; ``TremendousVendor`` sets the state."""

    base_url: str
    funding_source_id: str
    delivery_method: DeliveryMethod
    _key: SecretStr
    _policy: RetryPolicy
    _sleep: Callable[[float], None]
    _client: WitnessClient

    def _call(
        self, method: str, path: str, *, creates: bool = False, json: Any = None,
    ) -> httpx.Response:
        """One logical call through the shared retry loop, transport errors classified.

        For a create, an error where any attempt may have reached Tremendous is an
        UnknownOutcome; a read creates nothing, so its transport errors are transient.
        """
        kwargs: dict[str, Any] = {} if json is None else {"json": json}
        return call(self._client, method, path, policy=self._policy, sleep=self._sleep,
                    vendor=NAME, label="Tremendous", where=f"{method} /{path.split('/')[0]}",
                    creates=creates, **kwargs)

    def _raise_for(
        self, response: httpx.Response, what: str, *, creating: OrderRequest | None = None,
    ) -> NoReturn:
        """``creating``: the order request this answers (a create's 400/422 is classified)."""
        status = response.status_code
        said = self._vendor_message(response)
        suffix = f": {said}" if said else ""
        error: Exception
        if status in (401, 403):
            error = OperatorFacingError(
                f"Tremendous rejected the API key (HTTP {status} to {what}){suffix}",
                vendor=NAME, status=status,
            )
        elif status == 402:
            error = OperatorFacingError(
                f"not enough funds on funding source {self.funding_source_id!r} at Tremendous "
                f"(HTTP 402){suffix}; top it up and the held redemptions go through",
                vendor=NAME, status=status,
            )
        elif status == 429:
            error = TransientVendorError(
                f"Tremendous rate limit (HTTP 429 to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status >= 500:
            error = TransientVendorError(
                f"Tremendous server error (HTTP {status} to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status in (400, 422) and creating is not None:
            error = self._invalid_request(response, status, suffix, creating)
        elif status == 404:
            error = OperatorFacingError(
                f"Tremendous answered HTTP 404 to {what}: is base_url right? "
                f"({self.base_url}){suffix}",
                vendor=NAME, status=status,
            )
        else:
            error = OperatorFacingError(
                f"Tremendous answered HTTP {status} to {what}, which this adapter does not "
                f"expect{suffix}",
                vendor=NAME, status=status,
            )
        log.warning(
            "vendor.call.failed", vendor=NAME, call=what, http_status=status,
            error_class=type(error).__name__,
        )
        raise error

    def _invalid_request(self, response: httpx.Response, status: int, suffix: str,
                         request: OrderRequest) -> Exception:
        """Decided with the product list (``_TremendousCatalog``)."""
        raise NotImplementedError

    def _vendor_message(self, response: httpx.Response) -> str:
        errors = _errors_of(response)
        message = errors.get("message") if errors else None
        if not isinstance(message, str):
            data = json_or_none(response)
            single = data.get("error") if isinstance(data, dict) else None  # the 429 shape
            single = single.get("message") if isinstance(single, dict) else single
            if not isinstance(single, str):
                return ""
            message = single
        return self._scrub(message)

    def _scrub(self, text: str) -> str:
        """Vendor text made safe to quote: no key, no URL, one line, bounded."""
        return scrub(text, self._key.get_secret_value())

