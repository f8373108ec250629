"""Giftbit: placing campaigns and looking them up (``GiftbitVendor``), and its gifts as an
order list for the books audit (``GiftbitOrderBook``); docs/vendors.md, "Giftbit" and
"Listing orders"."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog

from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.domain.orders import OrderStatus as ListStatus
from poller.domain.orders import VendorOrder
from poller.vendors.base import json_or_none, mask_email, obj
from poller.vendors.books import ListBook, int_or_none, text_or_none
from poller.vendors.giftbit.client import (
    NAME,
    GiftbitClient,
    _error_of,
    _is_duplicate,
    campaign_id,
    is_our_campaign,
)

log = structlog.get_logger(__name__)

FUNDS_REQUIRED = "INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED"
FUNDS_PENDING = "INFO_CAMPAIGN_CREATED_FUNDS_PENDING"
API_CREATING = "API_CREATING"
AWAITING_FUNDS = "AWAITING_FUNDS"
CAMPAIGN_CREATED = "CAMPAIGN_CREATED"
DELIVERED = frozenset({"DELIVERED"})
UNDELIVERABLE = frozenset({"UNDELIVERABLE", "COMPLAINT", "UNSUBSCRIBED"})
"""Final for this recipient: Giftbit will not deliver (or send again) to that address."""
NOT_YET = frozenset({"UNSENT", "TEMPORARILY_UNDELIVERABLE"})


def _campaign_of(data: Any) -> dict[str, Any] | None:
    campaign = obj(data).get("campaign")
    return campaign if isinstance(campaign, dict) else None


def _info_code(data: Any) -> str | None:
    code = obj(obj(data).get("info")).get("code")
    return code if isinstance(code, str) else None


def _first_email(campaign: Mapping[str, Any]) -> str | None:
    contacts = campaign.get("contacts")
    if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
        email = contacts[0].get("email")
        return email if isinstance(email, str) else None
    return None


class GiftbitVendor(GiftbitClient):
    """The ``Vendor`` (and ``CheckableVendor``) for Giftbit."""

    key_name = "campaign id"

    def place_order(self, request: OrderRequest) -> OrderResult:
        product = self._product_of(request)
        cents = request.amount * 100
        if cents != cents.to_integral_value() or cents <= 0:
            raise ConfigFixable(
                f"Giftbit prices are whole cents; {request.amount} {request.currency} is not",
                vendor=NAME)
        ident = campaign_id(request.idempotency_key)
        first, _, last = (request.recipient_name or "").strip().partition(" ")
        reward = request.reward_name or "reward"
        body = {
            "id": ident,
            "contacts": [{
                "firstname": first or request.recipient_email.partition("@")[0],
                "lastname": last.strip(),
                "email": request.recipient_email,
            }],
            "price_in_cents": int(cents),
            "brand_codes": [product],
            "subject": f"Your {reward}",
            "message": f"Thank you for being an advocate! Here is your {reward}.",
        }
        response = self._call("POST", "campaign", creates=True, json=body)
        status = response.status_code
        if status == 200:
            data = json_or_none(response)
            campaign = _campaign_of(data)
            another = obj(campaign).get("id") not in (None, ident)
            campaign = self._created(status, campaign, another, "POST /campaign")
            result = self._result(campaign, _info_code(data), ident,
                                  fallback_email=request.recipient_email)
            log.info("vendor.order.placed", vendor=NAME, key=request.idempotency_key,
                     order_id=result.vendor_order_id, status=result.status.value,
                     http_status=status)
            return result
        if 200 < status < 300:
            raise UnknownOutcome(
                f"Giftbit answered HTTP {status} to POST /campaign (only 200 is success): the "
                "campaign may or may not exist", vendor=NAME, status=status)
        if status == 409 or (400 <= status < 500 and _is_duplicate(_error_of(response))):
            # We have used this id before: the campaign is ours (ids derive from our key).
            found = self._repeat(request.idempotency_key, status)
            if found is not None:
                return found
            raise OperatorFacingError(
                f"Giftbit says campaign id {ident} is taken but does not find it: look at the "
                "account before retrying", vendor=NAME, status=status)
        self._raise_for(response, "POST /campaign", creating=request)

    def lookup(self, idempotency_key: str) -> OrderResult | None:
        ident = campaign_id(idempotency_key)
        response = self._call("GET", f"campaign/{quote(ident, safe='')}")
        status = response.status_code
        if status == 404 and _error_of(response) is not None:
            return None
        if status != 200:
            self._raise_for(response, "GET /campaign/<id>")
        data = json_or_none(response)
        campaign = _campaign_of(data)
        another = obj(campaign).get("id") not in (None, ident)
        campaign = self._found(status, campaign, another, "GET /campaign/<id>")
        return self._result(campaign, _info_code(data), ident, fallback_email=None)

    def _result(self, campaign: Mapping[str, Any], info_code: str | None, ident: str, *,
                fallback_email: str | None) -> OrderResult:
        raw = next((campaign[k] for k in ("status", "campaign_status")
                    if isinstance(campaign.get(k), str)), None)
        status_text = raw.upper() if raw else ""
        uuid = campaign.get("uuid")
        order_id = str(campaign.get("id") or ident)
        detail = f"Giftbit campaign {status_text or '?'}"
        if isinstance(uuid, str):
            detail += f" (uuid {self._scrub(uuid[:64])})"
        email = _first_email(campaign) or fallback_email
        if status_text == AWAITING_FUNDS or info_code in (FUNDS_REQUIRED, FUNDS_PENDING):
            # The operator's problem, not the advocate's: the campaign exists and Giftbit
            # sends it by itself once the balance covers it. Re-checked on later cycles.
            log.warning("vendor.order.awaiting_funds", vendor=NAME, order_id=order_id,
                        info=info_code)
            waiting = ("a payment has not cleared yet" if info_code == FUNDS_PENDING
                       else "the Giftbit balance needs a top-up")
            return OrderResult(
                vendor_order_id=order_id, status=OrderStatus.PENDING,
                delivery="waiting for funds at Giftbit",
                detail=f"{detail}: {waiting}; Giftbit sends it once funded")
        if status_text == CAMPAIGN_CREATED:
            return self._gifts_result(ident, order_id, detail, email)
        if status_text != API_CREATING:
            log.warning("vendor.order.unknown_status", vendor=NAME, order_id=order_id,
                        status=status_text[:40] or None)
        return OrderResult(vendor_order_id=order_id, status=OrderStatus.PENDING,
                           delivery="being created at Giftbit", detail=detail)

    def _gifts_result(self, ident: str, order_id: str, detail: str, email: str | None,
                      ) -> OrderResult:
        """A sent campaign: its gift's ``delivery_status`` says whether it arrived."""
        response = self._call("GET", "gifts", params={"campaign_id": ident})
        if response.status_code != 200:
            self._raise_for(response, "GET /gifts?campaign_id=")
        data = json_or_none(response)
        listed = data.get("gifts") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise TransientVendorError(
                "Giftbit answered HTTP 200 to GET /gifts?campaign_id= without a list of gifts",
                vendor=NAME, status=200)
        gifts = [g for g in listed if isinstance(g, dict)
                 and g.get("campaign_id") in (None, ident)]
        if not gifts:
            return OrderResult(vendor_order_id=order_id, status=OrderStatus.PENDING,
                               delivery="being sent by Giftbit",
                               detail=f"{detail}, no gift listed yet")
        states = [str(g.get("delivery_status", "")).upper() for g in gifts]
        gift_states = {str(g.get("status", "")).upper() for g in gifts}
        address = next((g["recipient_email"] for g in gifts
                        if isinstance(g.get("recipient_email"), str)), None) or email
        masked = mask_email(address) if address else "the recipient's address"
        detail = f"{detail}, gift delivery {', '.join(s or '?' for s in states)}"
        bad = next((s for s in states if s in UNDELIVERABLE), None)
        if bad is not None:
            why = {"UNDELIVERABLE": "the address does not exist",
                   "COMPLAINT": "the recipient marked Giftbit's e-mail as spam",
                   "UNSUBSCRIBED": "the recipient unsubscribed from Giftbit's e-mails"}[bad]
            log.error("vendor.delivery.failed", vendor=NAME, order_id=order_id, delivery=bad)
            return OrderResult(
                vendor_order_id=order_id, status=OrderStatus.NEEDS_PERSON,
                delivery="not delivered",
                detail=f"Giftbit could not deliver the gift to {masked}: {why} "
                       f"({bad}); send it another way or cancel it at Giftbit")
        if "GIVER_CANCELLED" in gift_states:
            return OrderResult(vendor_order_id=order_id, status=OrderStatus.FAILED,
                               delivery="cancelled", detail=f"{detail}, gift cancelled")
        if states and all(s in DELIVERED for s in states):
            delivery = f"sent by email to {mask_email(address)}" if address else "sent by email"
            return OrderResult(vendor_order_id=order_id, status=OrderStatus.COMPLETE,
                               delivery=delivery, detail=detail)
        unknown = [s for s in states if s not in NOT_YET]
        if unknown:
            log.warning("vendor.order.unknown_status", vendor=NAME, order_id=order_id,
                        delivery=unknown[0][:40])
        return OrderResult(vendor_order_id=order_id, status=OrderStatus.PENDING,
                           delivery="being sent by Giftbit", detail=detail)



PACIFIC = ZoneInfo("America/Los_Angeles")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

GIFT_STATUS: Mapping[str, ListStatus] = {
    "REDEEMED": ListStatus.COMPLETE,
    "TO_CHARITY": ListStatus.COMPLETE,  # deprecated
    # Delivered, not claimed in time: whether Giftbit returns the value is not documented.
    "EXPIRED": ListStatus.COMPLETE,
    "GIVER_CANCELLED": ListStatus.CANCELLED,
}
"""Gift ``status`` values that decide alone; ``SENT_AND_REDEEMABLE`` is decided by the
``delivery_status`` (``DELIVERY_STATUS``)."""

DELIVERY_STATUS: Mapping[str, ListStatus] = {
    "DELIVERED": ListStatus.COMPLETE,
    "LINKCREATED": ListStatus.COMPLETE,  # deprecated
    "UNSENT": ListStatus.PENDING,
    "TEMPORARILY_UNDELIVERABLE": ListStatus.PENDING,
    "UNDELIVERABLE": ListStatus.FAILED,
    "UNSUBSCRIBED": ListStatus.FAILED,
    "COMPLAINT": ListStatus.FAILED,
}


def gift_status(status: str, delivery: str) -> ListStatus:
    if status in GIFT_STATUS:
        return GIFT_STATUS[status]
    if status == "SENT_AND_REDEEMABLE":
        return DELIVERY_STATUS.get(delivery, ListStatus.UNKNOWN)
    return ListStatus.UNKNOWN


def pacific(moment: datetime) -> str:
    """``moment`` as Giftbit's filters take it: Pacific time, ``yyyy-MM-dd HH:mm:ss``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(PACIFIC).strftime(DATE_FORMAT)


class GiftbitOrderBook(ListBook):
    """``OrderBook`` over ``GET /gifts``: each gift is one order (``order_id`` its ``uuid``,
    ``external_id`` its ``campaign_id``)."""

    def vendor_key(self, idempotency_key: str) -> str:
        """A gift lists its campaign's id, which is our key made to fit Giftbit's id."""
        return campaign_id(idempotency_key)

    def is_ours(self, external_id: str | None) -> bool:
        return external_id is not None and is_our_campaign(external_id)

    def _page(self, since: datetime, until: datetime, number: int,
              offset: int) -> tuple[list[Any], int | None]:
        what = "GET /gifts (list)"
        # A second wider than the period: whether the filters are inclusive is not documented.
        params = {"created_date_greater_than": pacific(since - timedelta(seconds=1)),
                  "created_date_less_than": pacific(until + timedelta(seconds=1)),
                  "limit": self._page_size, "offset": offset}
        return self._listed("gifts", what, "gifts", params)

    def _order(self, item: Any) -> VendorOrder | None:
        if not isinstance(item, dict) or not isinstance(item.get("uuid"), str):
            return None
        created = self._created_at(item, "created_date", item["uuid"], naive=PACIFIC)
        status = str(item.get("status") or "").upper()
        delivery = str(item.get("delivery_status") or "").upper()
        return VendorOrder(
            vendor=NAME,
            order_id=item["uuid"],
            external_id=text_or_none(item.get("campaign_id")),
            created_at=created.astimezone(UTC),
            status=gift_status(status, delivery),
            raw_status=f"{status or '?'}/{delivery or '?'}",
            amount_minor=int_or_none(item.get("price_in_cents")),
            currency=None,
            product=text_or_none(item.get("brand_code")),
            recipient=text_or_none(item.get("recipient_email")))
