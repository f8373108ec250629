"""The HTTP vendor: orders sent to your own endpoint (``vendor = "http"``).

Point ``[vendors.http] url`` at anything that speaks this small protocol (a Zapier catch
hook, an internal service) and any vendor can be plugged in without writing Python. This is
a vendor like the others; the HTTP plumbing every vendor shares is ``poller.transport``.

The protocol (the request, the answer, the receiver's side of the contract and the optional
look-up) is described in ``poller.vendors.http.wire``; ``verify_signature`` there is the
receiver's side of the signature, and is importable from here too.

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

Modules: ``settings`` (the config section), ``wire`` (the protocol: signature, order body,
answers), ``client`` (the calls and error mapping), ``record`` (what this install sent),
``vendor`` (``HttpVendor``: placing and looking up orders), ``orders`` (``HttpOrderBook``: the
receiver's optional order list, for the books audit).
"""

from __future__ import annotations

from poller.domain.errors import NotAuditable
from poller.vendors import BuildContext
from poller.vendors.http.orders import HttpOrderBook
from poller.vendors.http.settings import NAME, Settings
from poller.vendors.http.vendor import HttpVendor
from poller.vendors.http.wire import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    order_body,
    signature,
    verify_signature,
)
from poller.vendors.ratelimit import list_bucket

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "HttpVendor",
    "Settings",
    "build",
    "order_body",
    "order_book",
    "signature",
    "verify_signature",
]


def build(settings: Settings, context: BuildContext) -> HttpVendor:
    return HttpVendor(settings.url, settings.secret, policy=context.policy, cache=context.cache,
                      lookup_url=settings.lookup_url)


def order_book(settings: Settings, context: BuildContext) -> HttpOrderBook:
    """The receiver's order list (``orders_url``), for the books audit; NotAuditable
    without one."""
    if settings.orders_url is None:
        raise NotAuditable(
            "http vendor: no orders_url configured ([vendors.http] orders_url), so the "
            "receiver's own order list cannot be read")

    return HttpOrderBook(settings.orders_url, settings.secret, policy=context.policy,
                         bucket=list_bucket(NAME, context.rate_limit_per_second))
