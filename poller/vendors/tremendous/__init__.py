"""Tremendous (API v2): the first vendor adapter.

What Tremendous promises (docs/vendors.md, with sources) and what this package assumes on
top of it:

* ``POST /orders`` is idempotent on ``external_id``: 200 is a new order; 201 says the
  ``external_id`` was used before and returns the first order (nothing new is created);
  202 says the order is being created in the background: PENDING, looked up by
  ``external_id`` on later cycles. A 409 (listed by the SDK, unexplained) is answered by
  looking the order up by key.
* ``GET /orders/{external_id}`` finds the order by our key; a 404 in Tremendous's error
  shape means "no such order", any other 404 a wrong ``base_url``.
* Order states: ``EXECUTED`` is placed; ``OPEN``, ``PENDING APPROVAL``, ``PENDING INTERNAL
  PAYMENT APPROVAL`` (and the retired ``CART``, ``PENDING SETTLEMENT``) are pending;
  ``FAILED`` and ``CANCELED`` failed. An ``EXECUTED`` order is complete only when its
  reward's delivery is ``SUCCEEDED``: ``FAILED`` (a bounced e-mail) did not reach the
  advocate and needs a person (NEEDS_PERSON, with the masked address); ``SCHEDULED`` and
  ``PENDING`` are re-checked like a pending order.
* Errors come as ``{"errors": {"message", "payload"}}`` (``payload`` mirrors the request);
  a 429 says ``{"error": ...}``. The 400/422 classification reads the payload's paths: a
  problem with the recipient refuses the redemption; one about the product, its value or
  currency is decided by the catalog (``GET /products/{id}``), never by the message's
  wording: a product listed with that currency and value that Tremendous will not sell is
  unavailable (ProductUnavailable: refused by default), an unknown product or a value or
  currency it does not take is the operator's config (ConfigFixable), and a catalog that
  cannot be read decides nothing (the order waits); a funding source is the operator's
  config; anything it cannot place is the operator's to look at.
* No Retry-After is promised on 429; one is honoured when present.

Secrets: the API key lives in the client's headers only (httpx masks it in reprs) and the
reward link only in ``OrderResult.link``; neither reaches a log line or an exception
message (vendor texts are scrubbed of the key and of URLs before they are quoted).

Modules: ``settings`` (the config section), ``wire`` (the shapes of its answers), ``client``
(the HTTP calls and error mapping), ``catalog`` (the funding source, products and ``check``),
``vendor`` (``TremendousVendor``: placing and looking up orders), ``orders``
(``TremendousOrderBook``: its own order list, for the books audit).
"""

from __future__ import annotations

from poller.vendors import BuildContext
from poller.vendors.ratelimit import list_bucket
from poller.vendors.tremendous.orders import TremendousOrderBook
from poller.vendors.tremendous.settings import NAME, Settings
from poller.vendors.tremendous.vendor import TremendousVendor

__all__ = ["Settings", "TremendousVendor", "build", "order_book"]


def build(settings: Settings, context: BuildContext) -> TremendousVendor:
    return TremendousVendor(
        settings.base_url,
        settings.api_key,
        settings.funding_source_id,
        settings.delivery_method,
        policy=context.policy,
    )


def order_book(settings: Settings, context: BuildContext) -> TremendousOrderBook:
    """Tremendous's own order list, for the books audit (``orders``)."""
    return TremendousOrderBook(build(settings, context),
                               bucket=list_bucket(NAME, context.rate_limit_per_second))
