"""HTTP plumbing shared by the vendor adapters (not a vendor: the registry skips ``base``):
the retry loop's calls with transport errors classified, vendor text made safe to quote,
and ``ApiVendor``, what the Tremendous, Tango and Giftbit adapters share."""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    ProductUnavailable,
    TransientVendorError,
    UnknownOutcome,
    VendorError,
    VendorUnreachable,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.ports import ProductCheck, VendorCheck
from poller.transport import (
    ApiClient,
    RetryPolicy,
    describe,
    nothing_was_sent,
    retry_after_of,
    send,
)

log = structlog.get_logger(__name__)

ATTEMPT_ERRORS = "reward_poller.attempt_errors"
"""The extension key under which each logical call collects its attempts' transport errors."""

USER_AGENT = "reward-poller"
ProblemsOf = Callable[[Mapping[str, Any], Decimal, str], list[str]]
"""What keeps an amount in a currency from being ordered from a catalog entry."""

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
MAX_QUOTED = 300


class WitnessClient(ApiClient):
    """An ``ApiClient`` that remembers the transport error of every attempt.

    ``transport.send`` retries inside one call and re-raises only the *last* error: a first
    attempt that timed out after sending (the order may exist) followed by a refused
    connection would otherwise look like "nothing was sent".
    """

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return super().send(request, **kwargs)
        except httpx.TransportError as exc:
            errors = request.extensions.get(ATTEMPT_ERRORS)
            if isinstance(errors, list):
                errors.append(exc)
            raise


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
        # Not one attempt got through (DNS, refused, connect timeout): a person should look.
        unreachable = all(nothing_was_sent(e) for e in [*attempt_errors, exc])
        if creates and not unreachable:
            log.warning("vendor.call.outcome_unknown", vendor=vendor, call=where,
                        error=explain(exc))
            raise UnknownOutcome(
                f"{label} {where}: no answer ({explain(exc)}); the {thing} may exist",
                vendor=vendor,
            ) from None
        log.warning("vendor.call.unreachable", vendor=vendor, call=where, error=explain(exc))
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
            f"answer; the {thing} may exist", vendor=vendor, status=response.status_code)
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


class ApiSettings(BaseModel):
    """The config section of a vendor reached at ``base_url``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ValueError("base_url must start with https:// (or http:// for a stand-in)")
        return value


def decimal_of(value: Any) -> Decimal | None:
    """A finite number from a JSON value (a number or a numeric string), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def price_problems(whose: str, amount: Decimal, currency: str, priced_in: Any,
                   low: Decimal | None, high: Decimal | None) -> list[str]:
    """What keeps ``amount`` ``currency`` from being ordered from ``whose`` (a catalog entry
    of Tango's or Giftbit's): another currency, or a price outside its minimum/maximum."""
    problems: list[str] = []
    if isinstance(priced_in, str) and priced_in.upper() != currency.upper():
        problems.append(f"the {whose} is priced in {priced_in}, the route says {currency}")
    if low is not None and amount < low:
        problems.append(f"{amount:.2f} is below the {whose}'s minimum of {low:.2f}")
    if high is not None and amount > high:
        problems.append(f"{amount:.2f} is above the {whose}'s maximum of {high:.2f}")
    return problems


def _check_listed(
    catalog: Mapping[str, Mapping[str, Any]] | None, product: str | None, amount: Decimal,
    currency: str, problems_of: ProblemsOf, *, needs: str, unread: str, unknown: str,
) -> ProductCheck:
    """One product of ``ApiVendor._check``, with a suggestion for a mistyped id."""

    def result(ok: bool, detail: str) -> ProductCheck:
        return ProductCheck(product=product, amount=amount, currency=currency, ok=ok,
                            detail=detail)

    if not product:
        return result(False, needs)
    if catalog is None:
        return result(False, f"not checked: {unread}")
    found = catalog.get(product)
    if found is None:
        hint = difflib.get_close_matches(product, list(catalog), n=1)
        return result(False, unknown.format(product)
                      + (f" (did you mean {hint[0]}?)" if hint else ""))
    problems = problems_of(found, amount, currency)
    return result(not problems, "; ".join(problems) if problems else str(found.get("name")
                                                                           or product))


def _proves_nothing(exc: VendorError) -> bool:
    return exc.status in (401, 403) or isinstance(exc, TransientVendorError)


class ApiVendor:
    """What the Tremendous, Tango and Giftbit adapters share: one client pool, the calls
    through the shared retry loop, and the answers they all read alike. Secrets: the key
    lives in the client only, and vendor texts are scrubbed of it before they are quoted."""

    name: ClassVar[str]
    label: ClassVar[str]
    thing: ClassVar[str] = "order"
    key_name: ClassVar[str]
    credential: ClassVar[str] = "API key"
    product_kind: ClassVar[str]
    """What the routing config's ``product`` names at this vendor: ``"a UTID"``."""
    ok_statuses: ClassVar[range] = range(200, 300)

    def __init__(self, base_url: str, api_key: str | SecretStr, *,
                 policy: RetryPolicy = RetryPolicy(),
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self.base_url = base_url.rstrip("/")
        self._policy = policy
        self._sleep = sleep
        self._client = self._make_client(transport)

    def _make_client(self, transport: httpx.BaseTransport | None) -> WitnessClient:
        return WitnessClient(
            base_url=self.base_url + "/",
            headers={"Authorization": f"Bearer {self._key.get_secret_value()}",
                     "Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=self._policy.timeout, transport=transport)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, *, creates: bool = False, **kwargs: Any,
              ) -> httpx.Response:
        return call(self._client, method, path, policy=self._policy, sleep=self._sleep,
                    vendor=self.name, label=self.label, where=f"{method} /{path.split('/')[0]}",
                    creates=creates, thing=self.thing, **kwargs)

    def _get(self, path: str, what: str, **kwargs: Any) -> tuple[Any, int]:
        """A read that must succeed: its JSON (None when not JSON) and status; any other
        answer raises the mapped error."""
        response = self._call("GET", path, **kwargs)
        if response.status_code not in self.ok_statuses:
            self._raise_for(response, what)
        return json_or_none(response), response.status_code

    def _missing(self, status: int, what: str, thing: str) -> TransientVendorError:
        """A read answered without what it is for: asking again later is safe."""
        return TransientVendorError(f"{self.label} answered HTTP {status} to {what} without "
                                    f"{thing}", vendor=self.name, status=status)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._key.get_secret_value())

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        raise NotImplementedError

    def _created(self, status: int, order: dict[str, Any] | None, another: bool,
                 what: str) -> dict[str, Any]:
        """The order a create's success answer carries. Without one, or with one under
        another key, the order may or may not exist: UnknownOutcome (looked up by key)."""
        if order is None:
            log.warning("vendor.call.outcome_unknown", vendor=self.name, call=what,
                        http_status=status, error=f"{status} without the {self.thing}")
        if order is None or another:
            said = (f"with a body that is not the {self.thing}: it may or may not exist"
                    if order is None else f"with the {self.thing} of another {self.key_name}")
            raise UnknownOutcome(f"{self.label} answered HTTP {status} to {what} {said}",
                                 vendor=self.name, status=status)
        return order

    def _found(self, status: int, order: dict[str, Any] | None, another: bool,
               what: str) -> dict[str, Any]:
        """The order a look-up's success answer carries; without one, asking again later is
        safe; one under another key needs a person."""
        if order is None:
            raise TransientVendorError(f"{self.label} answered HTTP {status} to {what} with a "
                                       f"body that is not the {self.thing}",
                                       vendor=self.name, status=status)
        if another:
            raise OperatorFacingError(
                f"{self.label} answered the look-up by {self.key_name} with the {self.thing} "
                f"of another {self.key_name}", vendor=self.name, status=status)
        return order

    def _state(self, order: Mapping[str, Any], states: Mapping[str, OrderStatus],
               order_id: Any) -> tuple[OrderStatus, str]:
        """The order's state and its upper-cased text. An unknown state is read as PENDING:
        asking again later is safe, a wrong final answer is not."""
        raw = order.get("status")
        text = raw.upper() if isinstance(raw, str) else ""
        if text not in states:
            log.warning("vendor.order.unknown_status", vendor=self.name,
                        order_id=str(order_id)[:40], status=str(raw)[:40])
        return states.get(text, OrderStatus.PENDING), text

    def _repeat(self, key: str, status: int) -> OrderResult | None:
        """A create refused as a repeat of our key: the order already placed under it."""
        found = self.lookup(key)
        if found is not None:
            log.info("vendor.order.repeat", vendor=self.name, key=key,
                     order_id=found.vendor_order_id, http_status=status)
        return found

    def _product_of(self, request: OrderRequest) -> str:
        if not request.product:
            raise ConfigFixable(f"{self.label} needs {self.product_kind} and the route gives "
                                "none: set product in the routing config", vendor=self.name)
        return request.product

    def _unavailable_or_config(
        self, request: OrderRequest, refusal: str, status: int | None,
        find: Callable[[str], Mapping[str, Any] | None], problems_of: ProblemsOf,
    ) -> VendorError:
        """What an order the vendor refused as unavailable means, decided by the vendor's own
        catalog (``find``: the product's entry, None when not listed), never by the wording
        of its message (docs/vendors.md, "An unavailable product"). A catalog that cannot be
        read decides nothing: the redemption waits and is never refused on a guess."""
        product, amount, currency = request.product or "", request.amount, request.currency
        label, vendor = self.label, self.name
        try:
            found = find(product)
        except VendorError as exc:
            log.warning("vendor.catalog.undecided", vendor=vendor, product=product,
                        error_class=type(exc).__name__)
            text = (f"{label} refused the order ({refusal}) and its catalog could not be read "
                    f"to tell an unavailable product from a configuration mistake ({exc}); "
                    "nothing is decided, the order is tried again later")
            if isinstance(exc, OperatorFacingError):
                # Never ConfigFixable: that would hold at once on what is only a failed read.
                return OperatorFacingError(text, vendor=vendor, status=exc.status)
            retry_after = exc.retry_after if isinstance(exc, TransientVendorError) else None
            return TransientVendorError(text, vendor=vendor, status=exc.status,
                                        retry_after=retry_after)
        if found is None:
            return ConfigFixable(
                f"{label} does not list product {product!r} in its catalog ({refusal}); fix "
                "product in the routing config (reward-poller check suggests the closest)",
                vendor=vendor, status=status)
        problems = problems_of(found, amount, currency)
        if problems:
            return ConfigFixable(
                f"{label} lists product {product!r} but not at {amount} {currency}: "
                f"{'; '.join(problems)} ({refusal}); fix amount or currency in the routing "
                "config", vendor=vendor, status=status)
        log.warning("vendor.product.unavailable", vendor=vendor, product=product)
        return ProductUnavailable(
            f"{label} would not sell product {product!r} although its catalog lists it at "
            f"{amount} {currency}: the reward is unavailable ({refusal})",
            vendor=vendor, status=status)

    def _check(
        self, products: Sequence[tuple[str | None, Decimal, str]],
        read_balance: Callable[[], str | None],
        read_catalog: Callable[[], Mapping[str, Mapping[str, Any]]], problems_of: ProblemsOf,
        *, balance_note: str = "", catalog: str, catalog_proves: bool, unknown: str,
    ) -> VendorCheck:
        """``check`` for a vendor whose balance and catalog are read whole. A read rejected
        (401/403) or not reaching the vendor proves nothing about the credentials, and after
        such a balance read the catalog is not read; ``catalog_proves``: the same holds for
        the catalog's read. ``unknown`` is formatted with the product's repr."""
        problems: list[str] = []
        credentials_ok = True
        balance: str | None = None
        listed: Mapping[str, Mapping[str, Any]] | None = None
        try:
            balance = read_balance()
        except VendorError as exc:
            credentials_ok = not _proves_nothing(exc)
            problems.append(f"{balance_note}{exc}" if credentials_ok else str(exc))
        if credentials_ok:
            try:
                listed = read_catalog()
            except VendorError as exc:
                credentials_ok = not (catalog_proves and _proves_nothing(exc))
                problems.append(f"{catalog} unavailable: {exc}")
        needs = f"{self.label} needs {self.product_kind} as product"
        checks = tuple(_check_listed(listed, p, a, c, problems_of, needs=needs,
                                     unread=f"the {catalog} could not be read",
                                     unknown=unknown)
                       for p, a, c in products)
        return VendorCheck(vendor=self.name, credentials_ok=credentials_ok,
                           products=checks, balance=balance,
                           problems=tuple(dict.fromkeys(problems)))

    def _raise_for(self, response: httpx.Response, what: str, *,
                   creating: Any = None) -> NoReturn:
        raise NotImplementedError

    def _failed(self, error: VendorError, what: str, **fields: Any) -> NoReturn:
        log.warning("vendor.call.failed", vendor=self.name, call=what,
                    http_status=error.status, error_class=type(error).__name__, **fields)
        raise error

    def _usual_error(self, response: httpx.Response, what: str, suffix: str) -> VendorError:
        """The answer to what every vendor says alike: the key refused, its rate limit, a
        server error, a 404 no vendor wrote (a wrong base_url) and anything unexpected."""
        status = response.status_code
        label, name = self.label, self.name
        if status in (401, 403):
            return OperatorFacingError(
                f"{label} rejected the {self.credential} (HTTP {status} to {what}){suffix}",
                vendor=name, status=status)
        if status == 429:
            return TransientVendorError(f"{label} rate limit (HTTP 429 to {what}){suffix}",
                                        vendor=name, status=status,
                                        retry_after=retry_after_of(response))
        if status >= 500:
            return TransientVendorError(
                f"{label} server error (HTTP {status} to {what}){suffix}",
                vendor=name, status=status, retry_after=retry_after_of(response))
        if status == 404:
            return OperatorFacingError(
                f"{label} answered HTTP 404 to {what}: is base_url right? ({self.base_url})"
                f"{suffix}", vendor=name, status=status)
        return OperatorFacingError(
            f"{label} answered HTTP {status} to {what}, which this adapter does not expect"
            f"{suffix}", vendor=name, status=status)
