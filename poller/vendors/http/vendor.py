"""The HTTP vendor: posting signed orders to ``url`` and looking them up (``HttpVendor``),
and the receiver's optional order list for the books audit (``HttpOrderBook``); the
contract, and why only the URLs' origin is ever quoted, in docs/vendors.md ("The generic
HTTP vendor")."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx
import structlog
from pydantic import SecretStr

from poller.domain.errors import (
    PRODUCT_UNAVAILABLE,
    AdvocateFacingError,
    LookupUnavailable,
    OperatorFacingError,
    TransientVendorError,
    VendorError,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.domain.orders import OrderStatus as ListStatus
from poller.domain.orders import VendorOrder
from poller.ports import Cache, ProductCheck, VendorCheck
from poller.transport import RetryPolicy, retry_after_of
from poller.vendors.base import USER_AGENT, WitnessClient, call, json_or_none, obj, origin, scrub
from poller.vendors.books import (
    SameKeyBook,
    in_period,
    minor_amount,
    parse_instant,
    rfc3339,
    text_or_none,
)
from poller.vendors.http.wire import (
    IDEMPOTENCY_HEADER,
    KEY_PLACEHOLDER,
    NOT_FOUND,
    SIGNATURE_HEADER,
    _answer_of,
    _message_of,
    order_body,
    signature,
)
from poller.vendors.ratelimit import TokenBucket

log = structlog.get_logger(__name__)

NAME = "http"
REMEMBER = timedelta(days=90)
"""How long a sent request is kept so that it can be repeated."""

ORDER_STATUS: Mapping[str, ListStatus] = {
    "accepted": ListStatus.COMPLETE,
    "pending": ListStatus.PENDING,
    "refused": ListStatus.CANCELLED,  # by the contract, a refused order took nothing
    "cancelled": ListStatus.CANCELLED,
    "failed": ListStatus.FAILED,
}


@dataclass
class _Sent:
    """What this install sent under one key. ``taken``: None = unknown (sent, no readable
    answer, or not sent yet when the process died), True = a 2xx answer, False = only
    non-2xx answers so far (by the contract, nothing taken)."""

    body: str
    taken: bool | None = None


class _Receiver:
    """What ``HttpVendor`` and ``HttpOrderBook`` share: calls that name only the receiver's
    origin, the signature and the mapping of its errors."""

    def __init__(self, url: str, secret: str | SecretStr, *, policy: RetryPolicy,
                 transport: httpx.BaseTransport | None, sleep: Callable[[float], None],
                 clock: Callable[[], float]) -> None:
        self._secret = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        self._url = url  # may hold credentials or a secret path: never quoted
        self.host = origin(url)
        self._policy = policy
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._client = self._client_for(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(origin={self.host!r})"

    def close(self) -> None:
        self._client.close()

    def _client_for(self, url: str) -> WitnessClient:
        return WitnessClient(
            target=url, headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=self._policy.timeout, transport=self._transport)

    def _signed(self, payload: bytes) -> str:
        return signature(self._secret, payload, int(self._clock()))

    def _send(self, client: httpx.Client, method: str, url: str, what: str, *,
              creates: bool = False, **kwargs: Any) -> httpx.Response:
        """Every order send may create the order (a repeat of an unanswered one too), so a
        transport error after a byte may have left is an unknown outcome."""
        return call(client, method, url, policy=self._policy, sleep=self._sleep, vendor=NAME,
                    label=self.host, where=what, creates=creates, reach="the receiver",
                    hide_path=True, **kwargs)

    def _raise_for(self, response: httpx.Response, what: str, *,
                   url_key: str = "url") -> NoReturn:
        status = response.status_code
        said = scrub(_message_of(response))
        suffix = f": {said}" if said else ""
        error: VendorError
        if status == 429 or status >= 500:
            error = TransientVendorError(
                f"{self.host} answered HTTP {status} to {what}{suffix}",
                vendor=NAME, status=status, retry_after=retry_after_of(response))
        elif status in (401, 403):
            error = OperatorFacingError(
                f"{self.host} rejected the request (HTTP {status} to {what}): does it have "
                f"the same secret?{suffix}", vendor=NAME, status=status)
        else:
            hint = f": is {url_key} right?" if status == 404 else ""
            error = OperatorFacingError(
                f"{self.host} answered HTTP {status} to {what}{hint}{suffix}", vendor=NAME,
                status=status)
        log.warning("vendor.call.failed", vendor=NAME, call=what, http_status=status,
                    error_class=type(error).__name__)
        raise error


class HttpVendor(_Receiver):
    """The ``Vendor`` (and ``CheckableVendor``) posting signed orders to ``url``. Without
    ``lookup_url`` it remembers what it sent in ``cache`` (docs/vendors.md, "Without a
    look-up route"); without a cache (tests), only in this process."""

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
        super().__init__(url, secret, policy=policy, transport=transport, sleep=sleep,
                         clock=clock)
        self._lookup_url = lookup_url  # like url: never quoted
        self._cache = cache
        self._sent: dict[str, _Sent] = {}
        self._lock = threading.Lock()
        self._lookup_client = None if lookup_url is None else self._client_for(lookup_url)

    def place_order(self, request: OrderRequest) -> OrderResult:
        key = request.idempotency_key
        sent = self._recall(key)
        fresh = sent is None
        if sent is None:
            sent = _Sent(body=order_body(request).decode())
            self._remember(key, sent)  # before the first byte leaves
        return self._ask(key, sent, fresh=fresh,
                         what="POST (order)" if fresh else "POST (repeat)")

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        """Reads only: the receiver's look-up route, or this install's own record of what
        it sent. Never sends an order."""
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
            f"{why}", vendor=NAME, idempotent_resend=True)

    def close(self) -> None:
        super().close()
        if self._lookup_client is not None:
            self._lookup_client.close()

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        """Only a TCP connection, no request (docs/vendors.md, "Without a look-up route")."""
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

    def _recall(self, key: str) -> _Sent | None:
        with self._lock:
            sent = self._sent.get(key)
        if sent is not None or self._cache is None:
            return sent
        raw = self._cache.cache_get(f"http:order:{key}", datetime.now(UTC))
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
            self._cache.cache_put(f"http:order:{key}",
                                  json.dumps({"body": sent.body, "taken": sent.taken}),
                                  datetime.now(UTC) + REMEMBER)

    def _mark(self, key: str, sent: _Sent, taken: bool | None) -> None:
        if sent.taken is not taken:
            sent.taken = taken
            self._remember(key, sent)

    def _ask(self, key: str, sent: _Sent, *, fresh: bool, what: str) -> OrderResult:
        # Nothing taken so far (a first send, or only non-2xx answers): a non-2xx answer now
        # keeps it that way. Until this send is answered, though, it may be taken.
        untaken = fresh or sent.taken is False
        if untaken:
            self._mark(key, sent, None)
        body = sent.body.encode()
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key,
                   SIGNATURE_HEADER: self._signed(body)}
        try:
            response = self._send(self._client, "POST", self._url, what, creates=True,
                                  content=body, headers=headers)
        except TransientVendorError:
            # ``call`` says transient only when no attempt reached the receiver (refused
            # connection, connect timeout): nothing can have been taken.
            if untaken:
                self._mark(key, sent, False)
            raise
        status = response.status_code
        if not 200 <= status < 300:
            if untaken:
                self._mark(key, sent, False)
            self._raise_for(response, what)
        answer = self._answer(response, what, "", "it may have taken the order: fix the "
                              "receiver, the same request is repeated later")
        self._mark(key, sent, True)
        return self._result_of(key, answer, status)

    def _answer(self, response: httpx.Response, what: str, to: str,
                then: str) -> tuple[str, str | None, str]:
        answer = _answer_of(response)
        if answer is None:
            status = response.status_code
            log.warning("vendor.call.unreadable", vendor=NAME, call=what, http_status=status)
            raise OperatorFacingError(
                f"{self.host} answered HTTP {status} {to}with a body that is not the "
                'documented answer ({"status": "accepted"|"pending"|"refused", ...}); '
                f"{then}", vendor=NAME, status=status)
        return answer

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
                vendor=NAME, status=status, advocate_message=message or PRODUCT_UNAVAILABLE)
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
        headers = {IDEMPOTENCY_HEADER: key, SIGNATURE_HEADER: self._signed(key.encode())}
        response = self._send(self._lookup_client, "GET", url, what, headers=headers)
        status = response.status_code
        if status == 404 and str(obj(json_or_none(response)).get("status")).lower() == NOT_FOUND:
            log.info("vendor.lookup.not_found", vendor=NAME, key=key)
            return None
        if not 200 <= status < 300:
            self._raise_for(response, what, url_key="lookup_url")
        answer = self._answer(response, what, "to the look-up ",
                              "fix the receiver's look-up route")
        sent = self._recall(key)
        if sent is not None:
            self._mark(key, sent, True)
        return self._result_of(key, answer, status)


class HttpOrderBook(_Receiver, SameKeyBook):
    """``OrderBook`` over the receiver's ``orders_url`` (cursor paging), a token from
    ``bucket`` before each page."""

    vendor = NAME

    def __init__(
        self, orders_url: str, secret: str | SecretStr, *, bucket: TokenBucket | None,
        policy: RetryPolicy = RetryPolicy(), transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(orders_url, secret, policy=policy, transport=transport, sleep=sleep,
                         clock=clock)
        self._bucket = bucket

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        return in_period(self._pages(since, until), self._order, since, until)

    def _pages(self, since: datetime, until: datetime) -> Iterator[list[Any]]:
        cursors: set[str] = set()
        cursor: str | None = None
        while True:
            page, cursor = self._page(since, until, cursor)
            yield page
            if cursor is None:
                return
            if cursor in cursors:
                raise OperatorFacingError(
                    f"{self.host} answered the order list with a next_cursor it gave before: "
                    "the list cannot be read to its end; fix the receiver's order list",
                    vendor=NAME)
            cursors.add(cursor)

    def _page(self, since: datetime, until: datetime,
              cursor: str | None) -> tuple[list[Any], str | None]:
        if self._bucket is not None:
            self._bucket.acquire()
        what = "GET (order list)"
        ours = {"since": rfc3339(since), "until": rfc3339(until)}
        if cursor is not None:
            ours["cursor"] = cursor
        parts = urlsplit(self._url)
        query = (parts.query + "&" if parts.query else "") + urlencode(ours)
        url = urlunsplit(parts._replace(query=query))
        response = self._send(self._client, "GET", url, what,
                              headers={SIGNATURE_HEADER: self._signed(query.encode())})
        if not 200 <= response.status_code < 300:
            self._raise_for(response, what, url_key="orders_url")
        data = obj(json_or_none(response))
        page = data.get("orders")
        following = data.get("next_cursor")
        if not isinstance(page, list) or not (following is None or isinstance(following, str)):
            raise OperatorFacingError(
                f"{self.host} answered HTTP {response.status_code} to the order list with a "
                'body that is not the documented answer ({"orders": [...], "next_cursor"}); '
                "fix the receiver's order list", vendor=NAME, status=response.status_code)
        return page, following or None

    def _order(self, item: Any) -> VendorOrder | None:
        if not isinstance(item, dict):
            return None
        key = item.get("idempotency_key")
        order_id = item.get("order_id")
        order_id = order_id if isinstance(order_id, str | int) and str(order_id) else key
        created = parse_instant(item.get("created_at"))
        if not isinstance(order_id, str | int) or created is None:
            raise OperatorFacingError(
                f"{self.host} listed an order without an order_id (or idempotency_key) and a "
                "readable created_at; fix the receiver's order list", vendor=NAME)
        raw = item.get("status")
        raw_status = raw.lower() if isinstance(raw, str) else str(raw)
        currency = item.get("currency")
        minor = minor_amount(item.get("amount"), currency)
        return VendorOrder(
            vendor=NAME,
            order_id=str(order_id)[:200],
            external_id=text_or_none(key),
            created_at=created,
            status=ORDER_STATUS.get(raw_status, ListStatus.UNKNOWN),
            raw_status=raw_status[:40],
            amount_minor=minor,
            currency=currency.upper() if minor is not None and isinstance(currency, str)
            else None,
            product=text_or_none(item.get("product")),
            recipient=text_or_none(item.get("email")))
