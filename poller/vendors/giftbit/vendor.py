"""Giftbit: the ``Vendor``, placing campaigns and looking them up."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from pydantic import SecretStr

from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    TransientVendorError,
    UnknownOutcome,
)
from poller.domain.model import OrderRequest, OrderResult, OrderStatus
from poller.transport import RetryPolicy
from poller.vendors.base import bearer_client, json_or_none, mask_email
from poller.vendors.giftbit.catalog import _GiftbitCatalog
from poller.vendors.giftbit.settings import NAME
from poller.vendors.giftbit.wire import (
    API_CREATING,
    AWAITING_FUNDS,
    CAMPAIGN_CREATED,
    DELIVERED,
    FUNDS_PENDING,
    FUNDS_REQUIRED,
    NOT_YET,
    UNDELIVERABLE,
    _campaign_of,
    _error_of,
    _first_email,
    _info_code,
    _is_duplicate,
    campaign_id,
)

log = structlog.get_logger(__name__)


class GiftbitVendor(_GiftbitCatalog):
    """The ``Vendor`` (and ``CheckableVendor``) for Giftbit."""

    name = NAME

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        *,
        policy: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._key = key
        self.base_url = base_url.rstrip("/")
        self._policy = policy
        self._sleep = sleep
        self._client = bearer_client(self.base_url, key.get_secret_value(),
                                     timeout=policy.timeout, transport=transport)

    def __repr__(self) -> str:
        return f"GiftbitVendor(base_url={self.base_url!r})"

    # --- the Vendor protocol ---------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderResult:
        if not request.product:
            raise ConfigFixable(
                "Giftbit needs a brand code and the route gives none: set product in the "
                "routing config", vendor=NAME,
            )
        cents = request.amount * 100
        if cents != cents.to_integral_value() or cents <= 0:
            raise ConfigFixable(
                f"Giftbit prices are whole cents; {request.amount} {request.currency} is not",
                vendor=NAME,
            )
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
            "brand_codes": [request.product],
            "subject": f"Your {reward}",
            "message": f"Thank you for being an advocate! Here is your {reward}.",
        }
        response = self._call("POST", "campaign", creates=True, json=body)
        status = response.status_code
        if status == 200:
            data = json_or_none(response)
            campaign = _campaign_of(data)
            if campaign is None:
                log.warning("vendor.call.outcome_unknown", vendor=NAME, call="POST /campaign",
                            http_status=status, error="200 without a campaign")
                raise UnknownOutcome(
                    "Giftbit answered HTTP 200 to POST /campaign with a body that is not a "
                    "campaign: it may or may not exist", vendor=NAME, status=status,
                )
            if campaign.get("id") not in (None, ident):
                raise UnknownOutcome(
                    "Giftbit answered HTTP 200 to POST /campaign with another campaign id",
                    vendor=NAME, status=status,
                )
            result = self._result(campaign, _info_code(data), ident,
                                  fallback_email=request.recipient_email)
            log.info("vendor.order.placed", vendor=NAME, key=request.idempotency_key,
                     order_id=result.vendor_order_id, status=result.status.value,
                     http_status=status)
            return result
        if 200 < status < 300:
            raise UnknownOutcome(
                f"Giftbit answered HTTP {status} to POST /campaign (only 200 is success): the "
                "campaign may or may not exist", vendor=NAME, status=status,
            )
        if status == 409 or (400 <= status < 500 and _is_duplicate(_error_of(response))):
            # We have used this id before: the campaign is ours (ids derive from our key).
            found = self.lookup(request.idempotency_key)
            if found is not None:
                log.info("vendor.order.repeat", vendor=NAME, key=request.idempotency_key,
                         order_id=found.vendor_order_id, status=found.status.value)
                return found
            raise OperatorFacingError(
                f"Giftbit says campaign id {ident} is taken but does not find it: look at the "
                "account before retrying", vendor=NAME, status=status,
            )
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
        if campaign is None:
            raise TransientVendorError(
                "Giftbit answered HTTP 200 to GET /campaign/<id> with a body that is not a "
                "campaign", vendor=NAME, status=status,
            )
        if campaign.get("id") not in (None, ident):
            raise OperatorFacingError(
                "Giftbit answered the look-up by id with another campaign", vendor=NAME,
                status=status,
            )
        return self._result(campaign, _info_code(data), ident, fallback_email=None)

    def close(self) -> None:
        self._client.close()

    # --- the configuration check -------------------------------------------------------
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
                detail=f"{detail}: {waiting}; Giftbit sends it once funded",
            )
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
                vendor=NAME, status=200,
            )
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
                       f"({bad}); send it another way or cancel it at Giftbit",
            )
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

