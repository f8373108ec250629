"""The HTTP vendor: the ``Vendor``, posting signed orders to ``url`` and looking them up."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from urllib.parse import quote, urlsplit

import httpx
import structlog
from pydantic import SecretStr

from poller.domain.errors import (
    PRODUCT_UNAVAILABLE,
    AdvocateFacingError,
    LookupUnavailable,
    OperatorFacingError,
    TransientVendorError,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.ports import Cache, ProductCheck, VendorCheck
from poller.transport import RetryPolicy
from poller.vendors.base import USER_AGENT, WitnessClient, call, origin
from poller.vendors.http.client import _HttpCalls
from poller.vendors.http.record import _Sent, _SentRecord
from poller.vendors.http.settings import KEY_PLACEHOLDER, NAME
from poller.vendors.http.wire import (
    IDEMPOTENCY_HEADER,
    NOT_FOUND,
    SIGNATURE_HEADER,
    _answer_of,
    _status_of,
    order_body,
    signature,
)

log = structlog.get_logger(__name__)


class HttpVendor(_HttpCalls, _SentRecord):
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
            self._remember(key, sent)  # before the first byte leaves: see the package doc
        return self._ask(key, sent, fresh=fresh,
                         what="POST (order)" if fresh else "POST (repeat)")

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        """Reads only: the receiver's look-up route, or this install's own record of what
        it sent (see the package doc). Never sends an order."""
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

