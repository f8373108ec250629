"""Giftbit (papi v1): campaigns that Giftbit emails to the recipient.

What Giftbit's documentation and recorded traffic say (docs/vendors.md, with sources) and
what this package assumes on top of it:

* ``Authorization: Bearer <token>``. Only HTTP 200 is success; any other 2xx on a create is
  read as "the campaign may or may not exist" (UnknownOutcome, reconciled by id).
* ``POST /campaign`` takes a client-supplied ``id`` and creates at most one campaign per id;
  the same POST may be resent after a timeout or a 5xx. That id is derived from our
  idempotency key (``campaign_id``). What a repeat of a known id answers is *unconfirmed*:
  a 200 with the campaign is taken as is, and an error whose code or message says the id is
  a duplicate / already exists (or a 409) is answered by looking the campaign up by id. The
  limits on ``id`` are *unconfirmed*: this package assumes letters and digits, at most 40
  characters (``MAX_CAMPAIGN_ID``), and maps a longer key (ours are 42) to ``"rp"`` + the
  first 38 hex digits of its SHA-256: stable, so every replay uses the same id, and 152
  bits, so two keys never share one.
* ``GET /campaign/{id}`` finds it; a 404 in Giftbit's error shape means "no such campaign"
  (any other 404 is a wrong ``base_url``, never "no such campaign").
* A campaign's status is one of exactly three: ``API_CREATING`` (being created: pending),
  ``AWAITING_FUNDS`` (created, not sent for lack of funds; info
  ``INFO_CAMPAIGN_CREATED_FUNDS_REQUIRED`` or ``..._FUNDS_PENDING``: pending, and the detail
  tells the operator to top the balance up; Giftbit sends it by itself once funded) and
  ``CAMPAIGN_CREATED`` (sent). Anything else is read as pending (asking again is safe).
* After ``CAMPAIGN_CREATED`` the gift look-up ``GET /gifts?campaign_id=`` tells the rest by
  ``delivery_status``: ``DELIVERED`` is complete; ``UNDELIVERABLE``, ``COMPLAINT`` and
  ``UNSUBSCRIBED`` mean it will not reach the advocate (NEEDS_PERSON, with the masked
  address); ``UNSENT``, ``TEMPORARILY_UNDELIVERABLE`` (and an empty list: the e-mails are on
  their way) are pending. A gift the giver cancelled is FAILED.
* Errors come as ``{"error": {"code", "name", "message"}, "status"}``. 422
  ``ERROR_CAMPAIGN_INVALID_BRAND`` (brand or price not available) is decided by the brand
  (``GET /brands/{code}``): a brand that takes the route's currency and price is
  unavailable (ProductUnavailable: refused by default), an unknown brand or a price or
  currency it does not take is the operator's config (ConfigFixable), and a brand that
  cannot be read decides nothing; 422 ``ERROR_CAMPAIGN_NO_CONTACTS`` (the contact could
  not be added, e.g. an undeliverable address) refuses the redemption as an invalid
  recipient; 402 is a failed credit-card top-up (operator); 429 and 5xx are transient;
  anything else is the operator's.
* ``price_in_cents`` is in the brand's currency; the route's currency and price are compared
  with the brand's (``fund_currencyisocode``, ``allowed_prices_in_cents`` or
  ``min/max_price_in_cents``) by ``check()`` (``reward-poller check`` and the daemon's
  start), not per order.
* Catalog: ``GET /brands/{code}`` (``{"brand": {...}}``; an unknown code is 422
  ``ERROR_BRANDS_NO_SUCH_BRAND``) and ``GET /brands`` (only to suggest a code for a
  mistyped one); balance ``GET /funds`` (``fundsbycurrency``).

Secrets: the API key lives in the client's headers only; vendor texts are scrubbed of the
key and of URLs before they are quoted.

Modules: ``settings`` (the config section), ``wire`` (the campaign id and the shapes of its
answers), ``client`` (the HTTP calls and error mapping), ``catalog`` (funds, brands and
``check``), ``vendor`` (``GiftbitVendor``: placing and looking up campaigns), ``orders``
(``GiftbitOrderBook``: its gifts as an order list, for the books audit).
"""

from __future__ import annotations

from poller.vendors import BuildContext
from poller.vendors.giftbit.orders import GiftbitOrderBook
from poller.vendors.giftbit.settings import NAME, Settings
from poller.vendors.giftbit.vendor import GiftbitVendor
from poller.vendors.ratelimit import list_bucket

__all__ = ["GiftbitVendor", "Settings", "build", "order_book"]


def build(settings: Settings, context: BuildContext) -> GiftbitVendor:
    return GiftbitVendor(settings.base_url, settings.api_key, policy=context.policy)


def order_book(settings: Settings, context: BuildContext) -> GiftbitOrderBook:
    """Giftbit's own list of rewards (gifts), for the books audit."""
    return GiftbitOrderBook(build(settings, context),
                            bucket=list_bucket(NAME, context.rate_limit_per_second))
