"""Tango Card RaaS v2.

What Tango documents (docs/vendors.md, with sources: Tango's official client and
developers.tangocard.com) and what this package assumes on top of it:

* HTTP Basic auth with the platform name and key.
* ``POST /orders`` is idempotent on ``externalRefID`` (alphanumeric, at most 100 characters,
  per account): a new order answers 201, a repeat 200 with the first order. Any 2xx that
  carries an order is success. There is no idempotency promise beyond 90 days; the worker
  re-asks pending orders long before that.
* 409 ``409.002``: the same externalRefID is still being processed: wait at least 2 s and
  send the identical request again (``IN_PROCESS_WAIT``, up to ``IN_PROCESS_RETRIES`` times
  in one call, then transient). 409 ``409.024``: an order with this externalRefID exists:
  look it up.
* ``GET /orders?externalRefID=`` finds the order by our key (``{"orders": [...], "page"}``).
  This module trusts only entries whose ``externalRefID`` is our key, so a server that
  ignored the filter cannot make it pick someone else's order. An empty list, or a 404
  carrying ``404.110`` ("no orders found for this External Ref ID"), means "no such
  order"; any other 404 is a wrong ``base_url`` (held for a person), never "not found".
* Order states: ``COMPLETE``; ``PENDING`` (review, up to 2 to 3 business days: re-checked);
  ``PARTIAL`` (not all of it was issued: NEEDS_PERSON with the reason); ``FAILED`` (the
  account is refunded).
* Errors come as ``{"timestamp", "requestId", "path", "httpCode", "httpPhrase", "message",
  "i18nKey", "errors": [{"path", "i18nKey", "message", ...}], "code"}``; ``i18nKey`` is the
  error's id (at the top level and per field; field errors come as HTTP 400). By key:
  ``402.001`` not enough funds (the operator tops up; retried); ``403.016`` (fraud velocity
  flag) and ``403.007`` (customer not authorised) are the operator's and not always a bad
  key; ``422.024``, ``422.025``-``.027``, ``422.030``, ``422.097``-``.099`` (UTID, amount,
  inactive item) are decided by the (cached) catalog: an item it lists with the route's
  currency and value is unavailable (ProductUnavailable: refused by default), an unknown
  UTID or an amount or currency the item does not take is the operator's config
  (ConfigFixable), and a catalog that cannot be read decides nothing; ``422.009``,
  ``422.028``,
  ``422.029``, ``422.134`` (the recipient) refuse the redemption. A 4xx without a known key
  is read from its field paths, leaning towards the operator.
* 5xx "may occasionally process": the request is replayed with the same ``externalRefID``
  (inside the call by the shared retry loop, then on later cycles), which cannot create a
  second order.
* One request per second on every endpoint (orders, look-ups, catalog): this adapter spaces
  all of its requests (retries included) at least ``min_order_interval`` apart.
* ``GET /catalogs`` should be called about twice a day, not per order: the catalog is kept
  in ``context.cache`` (the ledger) for ``CATALOG_TTL`` so ``--run-once`` from a timer does
  not fetch it each run. It is read for ``check()`` and, when already cached, to hold a
  route whose currency does not match the item before anything is sent.
* ``GET /accounts/{accountIdentifier}`` (balance, currency) is used by ``check()`` only
  (field names ``currentBalance``/``currencyCode`` unconfirmed).
* The reward link is the ``credentialList`` entry of ``type`` ``url`` (or a
  ``redemptionUrl``); claim codes and PINs are never read into anything.

Secrets: the platform key lives in the client's auth only, reward links only in
``OrderResult.link``; vendor texts are scrubbed of the key and of URLs before they are
quoted in an exception or a log line.

Modules: ``settings`` (the config section, Tango's limits), ``wire`` (the shapes of its
answers), ``client`` (the HTTP calls and error mapping), ``catalog`` (the catalog, balance and
``check``), ``vendor`` (``TangoVendor``: placing and looking up orders), ``orders``
(``TangoOrderBook``: its own order list, for the books audit).
"""

from __future__ import annotations

from poller.vendors import BuildContext
from poller.vendors.ratelimit import list_bucket
from poller.vendors.tango.orders import TangoOrderBook
from poller.vendors.tango.settings import NAME, Settings
from poller.vendors.tango.vendor import TangoVendor

__all__ = ["Settings", "TangoVendor", "build", "order_book"]


def build(settings: Settings, context: BuildContext) -> TangoVendor:
    return TangoVendor(
        settings.base_url,
        settings.platform_name,
        settings.platform_key,
        settings.customer_identifier,
        settings.account_identifier,
        policy=context.policy,
        cache=context.cache,
    )


def order_book(settings: Settings, context: BuildContext) -> TangoOrderBook:
    """Tango Card's own order list for the configured account, for the books audit."""
    return TangoOrderBook(build(settings, context),
                          bucket=list_bucket(NAME, context.rate_limit_per_second))
