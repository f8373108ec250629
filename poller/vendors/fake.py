"""An in-memory ``Vendor`` for fast worker tests, with scripted outcomes, and
``FakeOrderBook``, a vendor's order list for the books audit's tests.

It keeps the one promise every real vendor makes (idempotent on the key) and counts what it
was asked, so a test can check "one order per redemption, however often the worker tried".
Scripts match by key and/or product (``None`` matches any); the first script added that
matches and has turns left is used.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from poller.domain.errors import UnknownOutcome, VendorError
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.domain.orders import VendorOrder
from poller.vendors.base import mask_email
from poller.vendors.books import SameKeyBook

Action = Literal["raise", "lose", "pending"]
On = Literal["place_order", "lookup"]


@dataclass
class _Script:
    action: Action
    on: On
    key: str | None
    product: str | None
    remaining: int | None
    """Turns left; None = forever."""
    error: VendorError | None = None
    polls: int = 1
    final: OrderStatus = OrderStatus.COMPLETE

    def matches(self, on: On, key: str, product: str | None) -> bool:
        return (
            self.on == on
            and (self.remaining is None or self.remaining > 0)
            and (self.key is None or self.key == key)
            and (self.product is None or self.product == product)
        )


@dataclass
class _Order:
    request: OrderRequest
    result: OrderResult
    polls_left: int = 0
    final: OrderStatus = OrderStatus.COMPLETE


class FakeVendor:
    """Implements ``poller.ports.Vendor`` in memory. Thread-safe."""

    def __init__(self, name: str = "fake", *, link: bool = True) -> None:
        self.name = name
        self._link = link
        self._lock = threading.Lock()
        self._scripts: list[_Script] = []
        self._orders: dict[str, _Order] = {}
        self.calls: Counter[str] = Counter()
        """``place_order`` calls per key (including the ones that raised)."""
        self.lookups: Counter[str] = Counter()
        self.created: Counter[str] = Counter()
        """Orders created per key: never more than 1."""
        self.requests: list[OrderRequest] = []
        self.closed = False

    def fail(
        self, error: VendorError, *, key: str | None = None, product: str | None = None,
        times: int | None = 1, on: On = "place_order",
    ) -> None:
        """Raise ``error`` (before anything is created) on the next ``times`` matching calls;
        ``times=None``: on every one."""
        self._add(_Script("raise", on, key, product, times, error=error))

    def lose_answer(
        self, *, key: str | None = None, product: str | None = None, times: int | None = 1,
    ) -> None:
        """Create the order (or find the existing one), then raise UnknownOutcome."""
        self._add(_Script("lose", "place_order", key, product, times))

    def pending(
        self, *, key: str | None = None, product: str | None = None, polls: int = 1,
        final: OrderStatus = OrderStatus.COMPLETE, times: int | None = 1,
    ) -> None:
        """Create the order as PENDING; it turns ``final`` after ``polls`` more answers
        about it (look-ups or repeated ``place_order``)."""
        self._add(_Script("pending", "place_order", key, product, times, polls=polls, final=final))

    def set_status(self, key: str, status: OrderStatus) -> None:
        with self._lock:
            order = self._orders[key]
            order.result = replace(order.result, status=status)
            order.polls_left = 0

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()

    def order(self, key: str) -> OrderResult | None:
        with self._lock:
            found = self._orders.get(key)
            return found.result if found else None

    @property
    def order_count(self) -> int:
        with self._lock:
            return len(self._orders)

    def place_order(self, request: OrderRequest) -> OrderResult:
        key = request.idempotency_key
        with self._lock:
            self.calls[key] += 1
            self.requests.append(request)
            script = self._script("place_order", key, request.product)
            if script is not None and script.error is not None:
                raise script.error
            existing = self._orders.get(key)
            if existing is not None:
                result = self._answer(existing)
            else:
                result = self._create(request, script)
            if script is not None and script.action == "lose":
                raise UnknownOutcome(
                    f"{self.name}: the answer was lost (scripted)", vendor=self.name)
            return result

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        with self._lock:
            self.lookups[idempotency_key] += 1
            existing = self._orders.get(idempotency_key)
            product = existing.request.product if existing else None
            script = self._script("lookup", idempotency_key, product)
            if script is not None and script.error is not None:
                raise script.error
            return self._answer(existing) if existing else None

    def close(self) -> None:
        self.closed = True

    def _add(self, script: _Script) -> None:
        with self._lock:
            self._scripts.append(script)

    def _script(self, on: On, key: str, product: str | None) -> _Script | None:
        for script in self._scripts:
            if script.matches(on, key, product):
                if script.remaining is not None:
                    script.remaining -= 1
                return script
        return None

    def _create(self, request: OrderRequest, script: _Script | None) -> OrderResult:
        key = request.idempotency_key
        number = len(self._orders) + 1
        pending = script is not None and script.action == "pending"
        email = request.recipient_email
        result = OrderResult(
            vendor_order_id=f"FAKE-{number:06d}",
            status=OrderStatus.PENDING if pending else OrderStatus.COMPLETE,
            delivery=f"sent by email to {mask_email(email)}" if "@" in email else "sent by email",
            link=f"https://fake.invalid/rewards/{key}" if self._link else None,
            detail=f"{self.name} order")
        order = _Order(request=request, result=result)
        if pending and script is not None:
            order.polls_left = script.polls
            order.final = script.final
        self._orders[key] = order
        self.created[key] += 1
        return result

    def _answer(self, order: _Order) -> OrderResult:
        """The order as it stands now; a pending one moves on by one answer."""
        if order.result.status is OrderStatus.PENDING and order.polls_left > 0:
            order.polls_left -= 1
            if order.polls_left == 0:
                order.result = replace(order.result, status=order.final)
        return order.result


class FakeOrderBook(SameKeyBook):
    """Implements ``poller.ports.OrderBook`` in memory: the orders a test gives it, or the
    error it was told to raise. Records each period it was asked for."""

    def __init__(self, vendor: str = "fake", orders: Iterable[VendorOrder] = (), *,
                 error: Exception | None = None) -> None:
        self.vendor = vendor
        self._orders = list(orders)
        self.error = error
        self.asked: list[tuple[datetime, datetime]] = []
        self.closed = False

    def add(self, *orders: VendorOrder) -> None:
        self._orders.extend(orders)

    def orders(self, since: datetime, until: datetime) -> Iterator[VendorOrder]:
        self.asked.append((since, until))
        if self.error is not None:
            raise self.error
        for order in sorted(self._orders, key=lambda o: o.created_at):
            if since <= order.created_at < until:
                yield order

    def close(self) -> None:
        self.closed = True
