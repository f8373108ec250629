"""The manual vendor (``vendor = "manual"``): nothing is ordered, a person sends the reward
and closes it with ``reward-poller ledger fulfill`` (docs/vendors.md, "The manual vendor").

``place_order`` answers PENDING with what to send to whom; ``lookup`` keeps no records and
answers PENDING for any key, which for this vendor means "waiting for a person", the truth
for every redemption routed here. Nothing does I/O, so nothing can fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import NoReturn

from pydantic import BaseModel, ConfigDict

from poller.domain.errors import NotAuditable
from poller.domain.model import OrderRequest, OrderResult, OrderStatus, Shipping
from poller.ports import ProductCheck, VendorCheck
from poller.vendors import BuildContext

NAME = "manual"
DETAIL = "waiting for a person to send it by hand (then: reward-poller ledger fulfill)"


class Settings(BaseModel):
    """The ``[vendors.manual]`` config section: no keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def build(settings: Settings, context: BuildContext) -> ManualVendor:
    return ManualVendor()


def order_book(settings: Settings, context: BuildContext) -> NoReturn:
    raise NotAuditable("manual vendor: nothing is ordered anywhere, so there is no order "
                       "list to read")


def shipping_summary(shipping: Shipping | None) -> str:
    """``"1 Main St, Apt 2, Springfield, IL 62701, US"``; empty without an address."""
    if shipping is None:
        return ""
    region = " ".join(p for p in (shipping.state, shipping.zip) if p)
    parts = (shipping.address, shipping.address_2, shipping.city, region, shipping.country)
    return ", ".join(p.strip() for p in parts if p and p.strip())


class ManualVendor:
    """The ``Vendor`` (and ``CheckableVendor``) for rewards sent by hand."""

    name = NAME

    def __repr__(self) -> str:
        return "ManualVendor()"

    def place_order(self, request: OrderRequest) -> OrderResult:
        what = request.reward_name or request.product or "the reward"
        who = request.recipient_name or request.recipient_email or "the advocate"
        text = f"send {what} by hand to {who}"
        if request.recipient_email and request.recipient_email != who:
            text += f" <{request.recipient_email}>"
        address = shipping_summary(request.shipping)
        text += f", ship to: {address}" if address else " (no shipping address given)"
        text += (f"; then run `reward-poller ledger fulfill {request.redemption_id} "
                 "--message ...`")
        return OrderResult(
            vendor_order_id=f"manual-{request.idempotency_key}",
            status=OrderStatus.PENDING,
            delivery=text,
            detail=text)

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        return OrderResult(vendor_order_id=f"manual-{idempotency_key}",
                           status=OrderStatus.PENDING, detail=DETAIL)

    def check(self, products: Sequence[tuple[str | None, Decimal, str]]) -> VendorCheck:
        return VendorCheck(vendor=NAME, credentials_ok=True, products=tuple(
            ProductCheck(product=p, amount=a, currency=c, ok=True, detail="sent by hand")
            for p, a, c in products))

    def close(self) -> None:
        pass
