"""Error classes the adapters raise and the core acts on (docs/delivery.md: what the worker
does with each). Messages never carry secrets: adapters build them from status codes and
the vendor's own error text, never from request headers or claim links.
"""

from __future__ import annotations


class PollerError(Exception):
    """Base of every error reward-poller raises on purpose."""


class ConfigError(PollerError):
    """The configuration is unusable; the message names the key."""


class SourceError(PollerError):
    """Influitive answered something we cannot act on."""


class SourceAuthError(SourceError):
    """401/403: the token or org id is wrong. The run cannot do its job."""


class SourceUnavailable(SourceError):
    """Timeouts, 5xx, 429 or garbage after the client's own bounded retries."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceBlocked(SourceUnavailable):
    """Influitive's firewall (AWS WAF) blocked or challenged the request: nothing was
    applied; retry after a backoff, never a credentials problem (docs/influitive.md)."""


class AlreadyDecided(SourceError):
    """404, 409 or 422 to a decision: *perhaps* already decided, not proof; only the next
    complete polls confirm it."""


class VendorError(PollerError):
    """Base of the vendor error classes (vendors.md, "What every adapter must get right")."""

    def __init__(self, message: str, *, vendor: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.vendor = vendor
        self.status = status


class TransientVendorError(VendorError):
    """Retry later with the same idempotency key (5xx, 429, timeouts that surely sent nothing)."""

    def __init__(self, message: str, *, vendor: str = "", status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, vendor=vendor, status=status)
        self.retry_after = retry_after


class VendorUnreachable(TransientVendorError):
    """The vendor's host could not be reached at all (nothing was sent): retried like any
    transient error, but a wrong URL, firewall or outage is for a person to look at:
    ``run --run-once`` exits 1 naming the vendor."""


RECIPIENT_INVALID = "the gift card provider did not accept the email address on your profile"
PRODUCT_UNAVAILABLE = "this reward is not available at the moment"


class AdvocateFacingError(VendorError):
    """Permanent and about the reward or the recipient: refuse, which refunds the points.
    ``advocate_message`` is what the advocate reads (plain words); ``str(exc)`` is the
    operator's detail."""

    def __init__(self, message: str, *, vendor: str = "", status: int | None = None,
                 advocate_message: str = PRODUCT_UNAVAILABLE) -> None:
        super().__init__(message, vendor=vendor, status=status)
        self.advocate_message = advocate_message


class ProductUnavailable(AdvocateFacingError):
    """The vendor would not sell a product its own catalog lists at the route's currency
    and value, decided from the catalog, never from the vendor's wording."""


class OperatorFacingError(VendorError):
    """Auth, funds, configuration: a person must act. Never refuse; wait and retry."""


class ConfigFixable(OperatorFacingError):
    """The configuration asks for something the vendor does not offer: held at once."""


class UnknownOutcome(VendorError):
    """The request may or may not have created an order: reconcile with the same key."""


class LookupUnavailable(VendorError):
    """A look-up's "cannot tell" from a vendor with no way to look an order up.
    ``idempotent_resend``: the vendor promises a repeat under the same key creates nothing
    new (docs/delivery.md, "The vendor look-up contract")."""

    def __init__(self, message: str, *, vendor: str = "", idempotent_resend: bool = False) -> None:
        super().__init__(message, vendor=vendor)
        self.idempotent_resend = idempotent_resend


class NotAuditable(PollerError):
    """A vendor whose own order list cannot be read: the audit says so for that vendor."""
