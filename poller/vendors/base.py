"""HTTP plumbing shared by the vendor adapters (not a vendor: the registry skips ``base``).

* ``WitnessClient``: an ``ApiClient`` (``poller.transport``) that remembers the transport
  error of every attempt (``bearer_client`` builds one with the usual headers).
* ``call``: one logical call through the shared retry loop with transport errors classified
  (``UnknownOutcome`` when a create may have reached the vendor, else
  ``TransientVendorError``).
* ``scrub``: vendor text made safe to quote (no secret, no URL, one line, bounded).
* ``json_or_none``, ``obj``, ``mask_email``: reading answers.
* ``http_base_url``: the ``base_url`` check of the adapters' Settings.
* ``unavailable_or_config``: a product the vendor would not sell, decided by its catalog.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
    VendorUnreachable,
)
from poller.domain.keys import is_our_key
from poller.domain.money import CurrencyProblem, minor_units, parse_currency
from poller.domain.orders import VendorOrder
from poller.transport import ApiClient, RetryPolicy, describe, nothing_was_sent, send

log = structlog.get_logger(__name__)

ATTEMPT_ERRORS = "reward_poller.attempt_errors"
"""The extension key under which each logical call collects the transport errors of its
attempts (see ``WitnessClient``)."""

USER_AGENT = "reward-poller"

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
MAX_QUOTED = 300


class WitnessClient(ApiClient):
    """An ``ApiClient`` that remembers the transport error of every attempt.

    ``transport.send`` retries inside one call and re-raises only the *last* error: a first
    attempt that timed out after sending (the order may exist) followed by a refused
    connection would otherwise look like "nothing was sent". The adapter reads the whole
    list before it calls an outcome transient.
    """

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return super().send(request, **kwargs)
        except httpx.TransportError as exc:
            errors = request.extensions.get(ATTEMPT_ERRORS)
            if isinstance(errors, list):
                errors.append(exc)
            raise


def bearer_client(base_url: str, token: str, *, timeout: Any,
                  transport: httpx.BaseTransport | None) -> WitnessClient:
    """A ``WitnessClient`` for ``base_url`` sending ``Authorization: Bearer <token>``."""
    return WitnessClient(
        base_url=base_url + "/",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
        timeout=timeout,
        transport=transport,
    )


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no userinfo, path, query or fragment (any of
    which may be a secret, e.g. ``https://user:pass@host`` or a catch-hook id)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def describe_origin_only(exc: httpx.TransportError) -> str:
    """Like ``transport.describe``, with the target reduced to its origin (no path)."""
    request = getattr(exc, "_request", None)
    where = f" ({request.method} {origin(str(request.url))})" if request else ""
    return f"{type(exc).__name__}{where}"


def call(
    client: httpx.Client, method: str, url: str, *, policy: RetryPolicy,
    sleep: Callable[[float], None], vendor: str, label: str, where: str, creates: bool,
    thing: str = "order", reach: str = "the server", hide_path: bool = False, **kwargs: Any,
) -> httpx.Response:
    """One logical call through the shared retry loop, transport errors classified.

    For a create, an error where any attempt may have reached the vendor is an
    UnknownOutcome; a read creates nothing, so its transport errors are transient. Messages
    read ``"{label} {where}: ..."``; ``thing`` is what a create may have made.
    ``hide_path``: transport errors name only the origin (the URL's path may be a secret).
    """
    explain = describe_origin_only if hide_path else describe
    attempt_errors: list[httpx.TransportError] = []
    kwargs["extensions"] = {ATTEMPT_ERRORS: attempt_errors}
    try:
        response = send(client, method, url, policy=policy, sleep=sleep, **kwargs)
    except httpx.TransportError as exc:
        errors = [*attempt_errors, exc]
        if creates and not all(nothing_was_sent(e) for e in errors):
            log.warning("vendor.call.outcome_unknown", vendor=vendor, call=where,
                        error=explain(exc))
            raise UnknownOutcome(
                f"{label} {where}: no answer ({explain(exc)}); the {thing} may exist",
                vendor=vendor,
            ) from None
        log.warning("vendor.call.unreachable", vendor=vendor, call=where, error=explain(exc))
        # Not one attempt got through (DNS, refused, connect timeout): a person should look.
        unreachable = all(nothing_was_sent(e) for e in errors)
        raise (VendorUnreachable if unreachable else TransientVendorError)(
            f"{label} {where}: could not reach {reach} ({explain(exc)})", vendor=vendor,
        ) from None
    if (
        creates
        and (response.status_code == 429 or response.status_code >= 500)
        and not all(nothing_was_sent(e) for e in attempt_errors)
    ):
        # An earlier attempt timed out after sending, then the retries were refused: the
        # first one may have created it. Reconcile before retrying.
        raise UnknownOutcome(
            f"{label} {where}: HTTP {response.status_code} after an attempt that got no "
            f"answer; the {thing} may exist", vendor=vendor, status=response.status_code,
        )
    return response


def scrub(text: str, secret: str = "") -> str:
    """Vendor text made safe to quote: no secret, no URL, one line, bounded."""
    if secret:
        text = text.replace(secret, "***")
    text = _URL.sub("<link>", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 1] + "…"


def json_or_none(response: httpx.Response) -> Any:
    """The JSON body, or None when it is not JSON (garbage)."""
    try:
        return response.json()
    except ValueError:
        return None


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: enough for the advocate to recognise."""
    local, at, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if at else "***"


def http_base_url(value: str) -> str:
    """A ``base_url`` setting, trimmed; it must be an http(s) address."""
    value = value.strip().rstrip("/")
    if not value.startswith(("https://", "http://")):
        raise ValueError("base_url must start with https:// (or http:// for a stand-in)")
    return value


def unavailable_or_config(
    *, vendor: str, label: str, product: str, amount: Decimal, currency: str, refusal: str,
    status: int | None, listing: Callable[[], list[str] | None],
) -> VendorError:
    """What an order the vendor refused as unavailable means, decided by the vendor's own
    catalog, never by the wording of its message.

    ``listing`` reads the catalog: None when it does not list ``product``, else what keeps
    ``amount`` ``currency`` from being ordered from it (empty: nothing). Listed and taking
    that currency and value: the product is unavailable (``ProductUnavailable``, refused by
    default). Unknown, or the value or currency outside what it takes: the configuration
    (``ConfigFixable``, held). A catalog that cannot be read decides nothing: the error
    keeps the redemption waiting (transient, or operator-facing for credentials), so it is
    asked again later and never refused on a guess. ``refusal`` is the vendor's answer, as
    the adapter quotes it.
    """
    try:
        problems = listing()
    except VendorError as exc:
        log.warning("vendor.catalog.undecided", vendor=vendor, product=product,
                    error_class=type(exc).__name__)
        text = (f"{label} refused the order ({refusal}) and its catalog could not be read to "
                f"tell an unavailable product from a configuration mistake ({exc}); nothing "
                "is decided, the order is tried again later")
        if isinstance(exc, OperatorFacingError):
            # Never ConfigFixable: that would hold at once on what is only a failed read.
            return OperatorFacingError(text, vendor=vendor, status=exc.status)
        retry_after = exc.retry_after if isinstance(exc, TransientVendorError) else None
        return TransientVendorError(text, vendor=vendor, status=exc.status,
                                    retry_after=retry_after)
    if problems is None:
        return ConfigFixable(
            f"{label} does not list product {product!r} in its catalog ({refusal}); fix "
            "product in the routing config (reward-poller check suggests the closest)",
            vendor=vendor, status=status,
        )
    if problems:
        return ConfigFixable(
            f"{label} lists product {product!r} but not at {amount} {currency}: "
            f"{'; '.join(problems)} ({refusal}); fix amount or currency in the routing config",
            vendor=vendor, status=status,
        )
    log.warning("vendor.product.unavailable", vendor=vendor, product=product)
    return ProductUnavailable(
        f"{label} would not sell product {product!r} although its catalog lists it at "
        f"{amount} {currency}: the reward is unavailable ({refusal})",
        vendor=vendor, status=status,
    )


# --- reading order lists (the books audit) ----------------------------------------------


def minor_amount(value: Any, currency: Any) -> int | None:
    """``value`` (a number in major units, as JSON gives it) in ``currency``'s minor units:
    ``25.0`` USD -> ``2500``. None when either is missing or not what it should be, or the
    value has more decimals than the currency (never rounded into a match)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if not isinstance(currency, str):
        return None
    try:
        code = parse_currency(currency)
        number = Decimal(str(value)).scaleb(minor_units(code))
    except (CurrencyProblem, ArithmeticError, ValueError):
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 / RFC 3339 date-time as an aware datetime (naive means UTC); None when
    it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as ``2026-05-01T14:11:09Z`` (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SameKeyBook:
    """For an ``OrderBook`` whose vendor records our idempotency key as it was sent."""

    def vendor_key(self, idempotency_key: str) -> str:
        return idempotency_key

    def is_ours(self, external_id: str | None) -> bool:
        return is_our_key(external_id)


def read_pages(
    page: Callable[[int, int], tuple[list[Any], int | None]],
    order_of: Callable[[Any], VendorOrder | None], *, since: datetime, until: datetime,
    page_size: int,
) -> Iterator[VendorOrder]:
    """An order list read page by page, each page asked once: ``page(number, offset)``
    answers the page's items and the list's total when the vendor gives one. Orders created
    outside [since, until) and an order seen twice while paging are left out. The total
    decides when given (a page the server caps lower is still read whole); without it, a
    short page is the last."""
    seen: set[str] = set()
    number = offset = 0
    while True:
        items, total = page(number, offset)
        for item in items:
            order = order_of(item)
            if order is None or order.order_id in seen:
                continue
            seen.add(order.order_id)
            if since <= order.created_at < until:
                yield order
        offset += len(items)
        number += 1
        if not items or (total is not None and offset >= total) or (
                total is None and len(items) < page_size):
            return

