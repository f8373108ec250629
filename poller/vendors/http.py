"""The generic HTTP vendor (``vendor = "http"``): your own endpoint places the order.

Point ``[vendors.http] url`` at anything that speaks this small protocol (a Zapier catch
hook, an internal service) and any vendor can be plugged in without writing Python.

The request
    ``POST {url}`` with ``Content-Type: application/json`` and this body (keys sorted, no
    spaces, non-ASCII characters escaped as ``\\uXXXX``; ``amount`` is a decimal string so no
    float rounding ever touches money)::

        {"advocate": {"email": "ada@example.com", "name": "Ada Lovelace",
                      "shipping": null | {"address", "address_2", "city", "state", "zip",
                                          "country", "phone_number"}},
         "idempotency_key": "rp3f9c...",
         "redemption": {"id": "1021", "reward_name": "$25 gift card", "source": "influitive"},
         "routing": {"amount": "25.00", "currency": "USD", "product": "AMZN" | null,
                     "vendor": "http"}}

    Headers: ``Idempotency-Key: <idempotency_key>`` and
    ``X-Reward-Poller-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is the
    HMAC-SHA256, keyed with the configured ``secret``, of ``"<t>.<raw body>"`` (the bytes
    exactly as received). ``verify_signature`` below is the receiver's side: it recomputes
    the HMAC in constant time and rejects a timestamp older (or further in the future) than
    ``max_age`` seconds, so a captured request cannot be replayed later. Several ``v1=``
    entries may appear (a receiver rotating secrets accepts any that matches).

The answer
    A 2xx with ``{"status": "accepted" | "pending" | "refused", "order_id": "...",
    "message": "..."}``:

    * ``accepted``: done. ``message`` (optional, shown to the advocate as the delivery, with
      any URL removed) and ``order_id`` (optional; the idempotency key stands in for it).
    * ``pending``: taken, not final. The worker asks again on later cycles by repeating the
      *identical* request (same body, same ``Idempotency-Key``, a fresh signature) until the
      answer is ``accepted`` or ``refused``.
    * ``refused``: the redemption is refused (the advocate's points are refunded) and
      ``message`` is the reason the advocate reads.

    Anything else: 5xx and 429 are transient (retried with backoff, Retry-After honoured),
    other 4xx are for the operator (held, never refused), a 2xx that is not the JSON above
    is for the operator too.

The receiver's side of the contract
    Be idempotent on ``Idempotency-Key``: answer a repeat with the current state of the first
    order, never a second order. A non-2xx answer means "not taken": the same request comes
    again later.

The look-up (optional: ``lookup_url``)
    ``GET {lookup_url}`` with ``{idempotency_key}`` in it replaced by the key, the header
    ``Idempotency-Key: <key>`` and ``X-Reward-Poller-Signature: t=<unix seconds>,v1=<hex>``
    where ``<hex>`` signs the key's bytes in place of a body (``verify_signature(SECRET,
    header, key.encode())``). It must create nothing. Answers: a 2xx with the order's answer
    as above (found); a 404 with ``{"status": "not_found"}`` (no order under the key);
    anything else (another 404, 5xx, 429, 401, an unreadable body, no answer) is "could not
    ask", never "no order".

Look-up contract
    ``lookup`` never sends an order: it reads. With ``lookup_url`` it asks the receiver.
    Without one it answers from this install's own record of what it sent, saved in
    ``context.cache`` (the ledger) *before* the first byte of each order leaves, for
    ``REMEMBER`` (90 days): None ("no order") when it never sent that key, or when every
    answer so far was a non-2xx or no attempt ever reached the receiver (by the contract,
    nothing was taken); otherwise ``LookupUnavailable`` (an "unknown" answer with
    ``idempotent_resend``: the contract promises a repeat creates nothing new). The worker
    then repeats the identical request (``place_order``: same bytes, same key, a fresh
    signature) only while Influitive still lists the redemption, and holds it for a person
    once it left the list, so an order is never created for a redemption an admin decided.
    Without a cache (tests), only this process's own requests are remembered.

Secrets: the HMAC secret is used to sign and nowhere else (never a header, a log line or a
repr). ``url`` and ``lookup_url`` may carry credentials (``https://user:pass@host/...``) or
be a secret themselves (a catch hook's path): messages, exceptions, log lines, ledger text
and ``check`` name only their origin (``scheme://host[:port]``), and the advocate's
delivery text never names it. The receiver's ``message`` is quoted with URLs removed and
bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NoReturn
from urllib.parse import quote, urlsplit

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from poller.domain.errors import (
    PRODUCT_UNAVAILABLE,
    AdvocateFacingError,
    LookupUnavailable,
    OperatorFacingError,
    TransientVendorError,
    VendorError,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.ports import Cache, ProductCheck, VendorCheck
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors import BuildContext
from poller.vendors.base import (
    USER_AGENT,
    WitnessClient,
    call,
    origin,
    scrub,
)

log = structlog.get_logger(__name__)

NAME = "http"
SIGNATURE_HEADER = "X-Reward-Poller-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_PLACEHOLDER = "{idempotency_key}"
"""Where the key goes in ``lookup_url``."""
NOT_FOUND = "not_found"
"""The ``status`` of the look-up's 404 answer that means "no order under this key"."""
DEFAULT_MAX_AGE = 300.0
"""What ``verify_signature`` tolerates by default between signing and checking, seconds."""
REMEMBER = timedelta(days=90)
"""How long a sent request is kept so that it can be repeated."""


class Settings(BaseModel):
    """The ``[vendors.http]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: SecretStr
    lookup_url: str | None = None
    """The receiver's optional look-up route, with ``{idempotency_key}`` where the key goes;
    unset: the receiver cannot be asked (see the module doc)."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("https://", "http://")) or not urlsplit(value).netloc:
            raise ValueError("url must be an https:// (or http://) address")
        return value

    @field_validator("lookup_url")
    @classmethod
    def _lookup_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")) or not urlsplit(value).netloc:
            raise ValueError("lookup_url must be an https:// (or http://) address")
        if KEY_PLACEHOLDER not in value:
            raise ValueError(f"lookup_url must contain {KEY_PLACEHOLDER} (where the key goes)")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("secret must be at least 16 characters (use a random string)")
        return value


def build(settings: Settings, context: BuildContext) -> HttpVendor:
    return HttpVendor(settings.url, settings.secret, policy=context.policy, cache=context.cache,
                      lookup_url=settings.lookup_url)


# --- the signature ----------------------------------------------------------------------


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes | SecretStr, body: bytes, timestamp: int) -> str:
    """The ``X-Reward-Poller-Signature`` value for ``body`` signed at ``timestamp``."""
    digest = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str | bytes, header: str | None, body: bytes,
    max_age: float | None = DEFAULT_MAX_AGE, *, now: float | None = None,
) -> bool:
    """For receivers: True when ``header`` (the ``X-Reward-Poller-Signature`` value) signs
    ``body`` (the raw bytes received) with ``secret`` and, unless ``max_age`` is None, was
    made at most ``max_age`` seconds from ``now`` (either way). Never raises on bad input.

    ::

        from poller.vendors.http import verify_signature
        if not verify_signature(SECRET, request.headers.get("X-Reward-Poller-Signature"),
                                await request.body()):
            return Response(status_code=401)
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        return False
    if max_age is not None:
        current = time.time() if now is None else now
        if abs(current - timestamp) > max_age:
            return False
    expected = signature(secret, body, timestamp).partition(",v1=")[2]
    # Compare against every candidate (no early exit on the first match).
    matches = [hmac.compare_digest(expected, c) for c in candidates]
    return any(matches)


# --- the order body ---------------------------------------------------------------------


def order_body(request: OrderRequest) -> bytes:
    """The JSON order for ``request``: the same bytes for the same request, every time."""
    shipping = asdict(request.shipping) if request.shipping is not None else None
    document = {
        "idempotency_key": request.idempotency_key,
        "redemption": {
            "id": request.redemption_id,
            "source": request.source,
            "reward_name": request.reward_name,
        },
        "advocate": {
            "name": request.recipient_name,
            "email": request.recipient_email,
            "shipping": shipping,
        },
        "routing": {
            "vendor": request.vendor,
            "product": request.product,
            "amount": str(request.amount),
            "currency": request.currency,
        },
    }
    # ASCII only: any character (a lone surrogate from a malformed payload too) becomes a
    # \uXXXX escape, so the bytes encode, store and repeat exactly.
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("ascii")


@dataclass
class _Sent:
    """What this install sent under one key. ``taken``: None = unknown (sent, no readable
    answer, or not sent yet when the process died), True = a 2xx answer, False = only
    non-2xx answers so far (by the contract, nothing taken)."""

    body: str
    taken: bool | None = None


class HttpVendor:
    """The ``Vendor`` (and ``CheckableVendor``) posting signed orders to ``url``."""

    name = NAME

    def __init__(
        self,
        url: str,
        secret: str | SecretStr,
        *,
        policy: RetryPolicy = RetryPolicy(),
        cache: Cache | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        lookup_url: str | None = None,
    ) -> None:
        self._secret = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        self._url = url  # may hold credentials or a secret path: never quoted
        self._lookup_url = lookup_url  # the same
        self.host = origin(url)
        """What messages name: ``scheme://host[:port]`` only."""
        self._policy = policy
        self._cache = cache
        self._sleep = sleep
        self._clock = clock
        self._sent: dict[str, _Sent] = {}
        self._lock = threading.Lock()
        self._client = WitnessClient(
            target=url,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=policy.timeout,
            transport=transport,
        )
        self._lookup_client = None if lookup_url is None else WitnessClient(
            target=lookup_url,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=policy.timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpVendor(origin={self.host!r})"

    # --- the Vendor protocol ---------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderResult:
        key = request.idempotency_key
        sent = self._recall(key)
        fresh = sent is None
        if sent is None:
            sent = _Sent(body=order_body(request).decode())
            self._remember(key, sent)  # before the first byte leaves: see the module doc
        return self._ask(key, sent, fresh=fresh,
                         what="POST (order)" if fresh else "POST (repeat)")

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        """Reads only: the receiver's look-up route, or this install's own record of what
        it sent (see the module doc). Never sends an order."""
        if self._lookup_url is not None:
            return self._look_up(idempotency_key)
        sent = self._recall(idempotency_key)
        if sent is None or sent.taken is False:
            return None
        if sent.taken is None:
            why = ("an earlier order request under this key got no answer, so the receiver "
                   "may or may not have taken it")
        else:
            why = "the receiver took an order under this key; its current state is not known"
        log.info("vendor.lookup.unavailable", vendor=NAME, key=idempotency_key)
        raise LookupUnavailable(
            f"{self.host} has no look-up route ([vendors.http] lookup_url is not set) and "
            f"{why}", vendor=NAME, idempotent_resend=True,
        )

    def close(self) -> None:
        self._client.close()
        if self._lookup_client is not None:
            self._lookup_client.close()

    # --- the configuration check -------------------------------------------------------

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        """No HTTP request is sent: the protocol has no call that orders nothing, and a
        catch hook would take any request (a GET too) as an order. Only a TCP connection is
        opened (and closed) to prove the receiver can be reached; an unreachable receiver
        fails the check. Products go to the receiver as they are."""
        problem = self._reachable()
        checks = tuple(
            ProductCheck(product=p, amount=a, currency=c, ok=problem is None,
                         detail=f"passed as is to {self.host} (not checked: the receiver "
                                "decides)" if problem is None
                         else f"not checked: {self.host} could not be reached")
            for p, a, c in products
        )
        return VendorCheck(vendor=NAME, credentials_ok=problem is None, products=checks,
                           problems=() if problem is None else (problem,))

    def _reachable(self) -> str | None:
        """None when a TCP connection to the receiver's host and port opens, else why not."""
        parts = urlsplit(self._url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            with socket.create_connection((parts.hostname or "", port),
                                          timeout=self._policy.timeout):
                return None
        except (OSError, ValueError) as exc:
            why = type(exc).__name__
            if isinstance(exc, OSError) and exc.strerror:
                why += f": {exc.strerror}"
            log.warning("vendor.call.unreachable", vendor=NAME, call="check", origin=self.host,
                        error=why)
            return f"http vendor: could not reach {self.host} ({why})"

    # --- internals ---------------------------------------------------------------------

    def _ask(self, key: str, sent: _Sent, *, fresh: bool, what: str) -> OrderResult:
        # Nothing taken so far (a first send, or only non-2xx answers): a non-2xx answer now
        # keeps it that way. Until this send is answered, though, it may be taken.
        untaken = fresh or sent.taken is False
        if sent.taken is False:
            sent.taken = None
            self._remember(key, sent)
        body = sent.body.encode()
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: key,
            SIGNATURE_HEADER: signature(self._secret, body, int(self._clock())),
        }
        try:
            response = self._call(body, headers, what)
        except TransientVendorError:
            # ``call`` says transient only when no attempt reached the receiver (refused
            # connection, connect timeout): nothing can have been taken.
            if untaken:
                sent.taken = False
                self._remember(key, sent)
            raise
        status = response.status_code
        if not 200 <= status < 300:
            if untaken:
                sent.taken = False
                self._remember(key, sent)
            self._raise_for(response, what)
        answer = _answer_of(response)
        if answer is None:
            log.warning("vendor.call.unreadable", vendor=NAME, call=what, http_status=status)
            raise OperatorFacingError(
                f"{self.host} answered HTTP {status} with a body that is not the documented "
                'answer ({"status": "accepted"|"pending"|"refused", ...}); it may have taken '
                "the order: fix the receiver, the same request is repeated later",
                vendor=NAME, status=status,
            )
        if sent.taken is not True:
            sent.taken = True
            self._remember(key, sent)
        return self._result_of(key, answer, status)

    def _result_of(self, key: str, answer: tuple[str, str | None, str],
                   status: int) -> OrderResult:
        """The receiver's answer about the order under ``key`` (to an order or a look-up)."""
        state, order_id, message = answer
        order_id = order_id or key
        if state != "pending" and self._cache is not None:
            with self._lock:  # final: the ledger keeps it; a daemon's memory need not
                self._sent.pop(key, None)
        if state == "refused":
            log.warning("vendor.order.refused", vendor=NAME, key=key, order_id=order_id)
            raise AdvocateFacingError(
                f"{self.host} refused the order{': ' + message if message else ''}",
                vendor=NAME, status=status, advocate_message=message or PRODUCT_UNAVAILABLE,
            )
        # The advocate's delivery text is the receiver's message or a plain word: never
        # our URL (it may be a secret) nor its host.
        if state == "pending":
            log.info("vendor.order.pending", vendor=NAME, key=key, order_id=order_id)
            return OrderResult(vendor_order_id=order_id, status=OrderStatus.PENDING,
                               delivery=message or "being prepared",
                               detail=f"pending at {self.host}"
                                      + (f": {message}" if message else ""))
        log.info("vendor.order.placed", vendor=NAME, key=key, order_id=order_id,
                 status="complete", http_status=status)
        return OrderResult(vendor_order_id=order_id, status=OrderStatus.COMPLETE,
                           delivery=message or "sent",
                           detail=f"accepted by {self.host}")

    def _look_up(self, key: str) -> OrderResult | None:
        """``GET {lookup_url}``: found, None on the receiver's own "not_found", else raises."""
        assert self._lookup_url is not None and self._lookup_client is not None
        what = "GET (look-up)"
        url = self._lookup_url.replace(KEY_PLACEHOLDER, quote(key, safe=""))
        headers = {
            IDEMPOTENCY_HEADER: key,
            SIGNATURE_HEADER: signature(self._secret, key.encode(), int(self._clock())),
        }
        response = call(self._lookup_client, "GET", url, policy=self._policy,
                        sleep=self._sleep, vendor=NAME, label=self.host, where=what,
                        creates=False, reach="the receiver", hide_path=True, headers=headers)
        status = response.status_code
        if status == 404 and _status_of(response) == NOT_FOUND:
            log.info("vendor.lookup.not_found", vendor=NAME, key=key)
            return None
        if not 200 <= status < 300:
            self._raise_for(response, what, url_key="lookup_url")
        answer = _answer_of(response)
        if answer is None:
            log.warning("vendor.call.unreadable", vendor=NAME, call=what, http_status=status)
            raise OperatorFacingError(
                f"{self.host} answered HTTP {status} to the look-up with a body that is not "
                'the documented answer ({"status": "accepted"|"pending"|"refused", ...}); '
                "fix the receiver's look-up route", vendor=NAME, status=status,
            )
        sent = self._recall(key)
        if sent is not None and sent.taken is not True:
            sent.taken = True
            self._remember(key, sent)
        return self._result_of(key, answer, status)

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

    def _cache_key(self, key: str) -> str:
        return f"http:order:{key}"

    def _recall(self, key: str) -> _Sent | None:
        with self._lock:
            sent = self._sent.get(key)
        if sent is not None or self._cache is None:
            return sent
        raw = self._cache.cache_get(self._cache_key(key), datetime.now(UTC))
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("body"), str):
            return None
        taken = data.get("taken")
        sent = _Sent(body=data["body"], taken=taken if isinstance(taken, bool) else None)
        with self._lock:
            return self._sent.setdefault(key, sent)

    def _remember(self, key: str, sent: _Sent) -> None:
        with self._lock:
            self._sent[key] = sent
        if self._cache is not None:
            now = datetime.now(UTC)
            self._cache.cache_put(self._cache_key(key),
                                  json.dumps({"body": sent.body, "taken": sent.taken}),
                                  now + REMEMBER)


def _answer_of(response: httpx.Response) -> tuple[str, str | None, str] | None:
    """(status, order_id, message) from a 2xx answer, or None when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    status = data.get("status")
    if not isinstance(status, str) or status.lower() not in ("accepted", "pending", "refused"):
        return None
    order_id = data.get("order_id")
    message = data.get("message")
    return (
        status.lower(),
        str(order_id)[:200] if isinstance(order_id, str | int) and str(order_id) else None,
        scrub(message) if isinstance(message, str) else "",
    )


def _status_of(response: httpx.Response) -> str | None:
    """The ``status`` field of a JSON answer, lower-cased; None without one."""
    try:
        data = response.json()
    except ValueError:
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status.lower() if isinstance(status, str) else None


def _message_of(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        for name in ("message", "error", "detail"):
            if isinstance(data.get(name), str):
                return str(data[name])
    return ""


