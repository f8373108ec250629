"""Giftbit: the HTTP calls and the mapping of its errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors.base import WitnessClient, call, scrub
from poller.vendors.giftbit.settings import NAME
from poller.vendors.giftbit.wire import _FUNDS, _RECIPIENT, INVALID_BRAND, NO_CONTACTS, _error_of

log = structlog.get_logger(__name__)


class _GiftbitCalls:
    """The HTTP calls and the reading of a refusal; ``GiftbitVendor`` sets the state."""

    base_url: str
    _key: SecretStr
    _policy: RetryPolicy
    _sleep: Callable[[float], None]
    _client: WitnessClient

    def _call(self, method: str, path: str, *, creates: bool = False, **kwargs: Any,
              ) -> httpx.Response:
        return call(self._client, method, path, policy=self._policy, sleep=self._sleep,
                    vendor=NAME, label="Giftbit", where=f"{method} /{path.split('/')[0]}",
                    creates=creates, thing="campaign", **kwargs)

    def _raise_for(self, response: httpx.Response, what: str, *,
                   creating: OrderRequest | None = None) -> NoReturn:
        """``creating``: the order request this answers (a create's 4xx is classified)."""
        status = response.status_code
        error_body = _error_of(response) or {}
        code = str(error_body.get("code", ""))
        said = self._vendor_message(error_body)
        suffix = f": {said}" if said else ""
        error: VendorError
        text = f"{code} {error_body.get('name', '')} {error_body.get('message', '')}"
        if status in (401, 403):
            error = OperatorFacingError(
                f"Giftbit rejected the API key (HTTP {status} to {what}){suffix}",
                vendor=NAME, status=status,
            )
        elif status == 429:
            error = TransientVendorError(
                f"Giftbit rate limit (HTTP 429 to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status >= 500:
            error = TransientVendorError(
                f"Giftbit server error (HTTP {status} to {what}){suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response),
            )
        elif status == 402:
            error = OperatorFacingError(
                f"Giftbit: payment required (HTTP 402 to {what}: a credit-card top-up failed)"
                f"{suffix}; fund the account", vendor=NAME, status=status,
            )
        elif creating is not None and code == INVALID_BRAND:
            error = self._unavailable_or_config(creating, f"HTTP {status}{suffix}", status)
        elif creating is not None and code == NO_CONTACTS:
            error = AdvocateFacingError(
                f"Giftbit could not add the recipient (HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        elif creating is not None and _FUNDS.search(text):
            error = OperatorFacingError(
                f"Giftbit: not enough funds (HTTP {status}){suffix}; top the account up",
                vendor=NAME, status=status,
            )
        elif creating is not None and status in (400, 422) and _RECIPIENT.search(text):
            error = AdvocateFacingError(
                f"Giftbit: the recipient is invalid (HTTP {status}){suffix}",
                vendor=NAME, status=status, advocate_message=RECIPIENT_INVALID,
            )
        elif status == 404:
            error = OperatorFacingError(
                f"Giftbit answered HTTP 404 to {what}: is base_url right? ({self.base_url})"
                f"{suffix}", vendor=NAME, status=status,
            )
        else:
            error = OperatorFacingError(
                f"Giftbit answered HTTP {status} to {what}, which this adapter cannot act on"
                f"{suffix}", vendor=NAME, status=status,
            )
        log.warning("vendor.call.failed", vendor=NAME, call=what, http_status=status,
                    error_class=type(error).__name__, code=code[:60] or None)
        raise error

    def _unavailable_or_config(self, request: OrderRequest, refusal: str,
                               status: int) -> VendorError:
        """Decided by the brand (``_GiftbitCatalog``)."""
        raise NotImplementedError

    def _vendor_message(self, error: Mapping[str, Any]) -> str:
        parts = [str(error[k]) for k in ("code", "message") if isinstance(error.get(k), str)]
        return self._scrub(" ".join(parts))

    def _scrub(self, text: str) -> str:
        """Vendor text made safe to quote: no key, no URL, one line, bounded."""
        return scrub(text, self._key.get_secret_value())

