"""Error classes the adapters raise and the core acts on.

Messages never carry secrets: adapters build them from status codes and the vendor's own
error text, never from request headers or claim links.
"""

from __future__ import annotations


class PollerError(Exception):
    """Base of every error reward-poller raises on purpose."""


class ConfigError(PollerError):
    """The configuration is unusable; the message names the key."""


# --- the redemption source (Influitive) -------------------------------------------------


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
    """Influitive's firewall (an AWS WAF rule: a fixed number of requests per IP in any
    rolling window) blocked or challenged the request: a 403 without
    ``WWW-Authenticate: Token realm=Api`` or with an HTML body, a 405 CAPTCHA, or a 2xx
    carrying ``x-amzn-waf-action``. Nothing was applied; retry after a backoff. Never a
    credentials problem."""


class AlreadyDecided(SourceError):
    """Influitive answered a decision with 404, 409 or 422: *perhaps* already decided (by
    us earlier, or by an admin in the UI), perhaps a wrong route. Not proof: only the next
    complete poll, where the redemption no longer appears, confirms it."""


# --- vendors -------------------------------------------------------------------------


class VendorError(PollerError):
    """Base of the vendor error classes (vendors.md, "What every adapter must get right")."""

    def __init__(self, message: str, *, vendor: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.vendor = vendor
        self.status = status


class TransientVendorError(VendorError):
    """Retry later with the same idempotency key (5xx, 429, timeouts that surely sent nothing)."""

    def __init__(
        self,
        message: str,
        *,
        vendor: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, vendor=vendor, status=status)
        self.retry_after = retry_after


class VendorUnreachable(TransientVendorError):
    """The vendor's host could not be reached at all (a DNS failure, a connection refused
    or timed out before anything was sent), after the transport's retries. Nothing was
    sent, so the redemption waits and is retried like after any transient error; but an
    address that does not resolve or answer is for a person to look at (a wrong URL, a
    firewall, an outage): ``run --run-once`` exits 1 naming the vendor."""


RECIPIENT_INVALID = "the gift card provider did not accept the email address on your profile"
PRODUCT_UNAVAILABLE = "this reward is not available at the moment"


class AdvocateFacingError(VendorError):
    """Permanent and about the reward or the recipient: refuse, which refunds the points.

    ``advocate_message`` is what the advocate reads in the refusal (plain words, no HTTP
    status or vendor jargon); ``str(exc)`` is the operator's detail for logs and the ledger.
    """

    def __init__(
        self, message: str, *, vendor: str = "", status: int | None = None,
        advocate_message: str = PRODUCT_UNAVAILABLE,
    ) -> None:
        super().__init__(message, vendor=vendor, status=status)
        self.advocate_message = advocate_message


class ProductUnavailable(AdvocateFacingError):
    """The vendor would not sell a product its own catalog lists with the route's currency
    and value (out of stock, discontinued, not available): the reward cannot be had, the
    configuration is right. Decided from the catalog, never from the wording of the
    vendor's message. Refused by default (the points are refunded); ``[fulfillment]
    unavailable_reward = "hold"`` holds it for a person instead. ``advocate_message`` is
    replaced by ``[fulfillment] unavailable_message``."""


class OperatorFacingError(VendorError):
    """Auth, funds, configuration: a person must act. Never refuse; wait and retry."""


class ConfigFixable(OperatorFacingError):
    """The operator's configuration asks for something the vendor does not offer: an
    unknown product, UTID or brand, an amount the catalog does not allow, a currency the
    product does not take. Held for a person at once (retrying cannot help until the config
    changes), never refused: the advocate did nothing wrong."""


class UnknownOutcome(VendorError):
    """The request may or may not have created an order (timeout after sending, reset):
    reconcile with the same key before anything else."""


class LookupUnavailable(VendorError):
    """A look-up's "unknown" answer from a vendor that has no way to look an order up (the
    HTTP receiver without a look-up route) while an earlier send's outcome is unknown.

    Never "no order" and never a reason to send anything from the look-up itself. The
    worker may repeat the identical request only while Influitive still lists the
    redemption as outstanding, and only when ``idempotent_resend`` says the vendor promises
    that a repeat under the same key creates nothing new; otherwise (the redemption left
    the list, an operator command) the redemption is held for a person."""

    def __init__(
        self, message: str, *, vendor: str = "", idempotent_resend: bool = False,
    ) -> None:
        super().__init__(message, vendor=vendor)
        self.idempotent_resend = idempotent_resend


class NotAuditable(PollerError):
    """A vendor whose own order list cannot be read (none documented, or none configured):
    the audit says so plainly for that vendor instead of reporting an empty list."""

