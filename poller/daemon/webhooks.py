"""Webhook receivers on the daemon's listener (the Starlette routes): real-time intake.

``POST /webhooks/influitive``: Influitive's "Reward Redemption Requested" webhook is a nudge,
not the truth: it triggers an immediate (coalesced) cycle and the poll stays the source of
what is outstanding. Nothing is ordered from its body.

``POST /webhooks/influenceio``: an Influence.io ``points/redeemed`` event is stored in the
ledger before it is answered 2xx (deduplicated on the pair of webhook id and event id), then
worked by the same machinery as an Influitive redemption. The other topics Influence.io
documents (``poller.sources.influenceio.KNOWN_TOPICS``) are answered 200 and ignored (logged at
debug); a missing or unknown ``X-Webhook-Topic`` (compared case-insensitively) is answered 400
and logged as a warning. A body that is not strict JSON (NaN, a number that overflows, nesting
past ``poller.daemon.webhook_body.MAX_DEPTH``) is answered 400 with the reason.

Bodies are read chunk by chunk against ``[webhooks] max_body_bytes`` and
``[server] body_timeout_seconds`` (docs/security.md).

Neither sender documents a signature, so both require a shared secret, accepted in an
``X-Webhook-Secret`` header or a ``token`` query parameter (many senders let you set only
the URL), compared in constant time; anything else is answered 401.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from poller.daemon.httplimits import BodyTooLarge, BodyTooSlow, read_body
from poller.daemon.webhook_body import BadBody, parse_json
from poller.ports import Ledger
from poller.sources.influenceio import IGNORED_TOPICS, REDEEMED_TOPIC, SOURCE
from poller.sources.influenceio.wire import BadEvent, parse_redeemed

log = structlog.get_logger("poller.daemon.webhooks")

SECRET_HEADER = "X-Webhook-Secret"
TOKEN_PARAM = "token"
MAX_BODY = 64 * 1024
"""Default of ``[webhooks] max_body_bytes``: a ``points/redeemed`` event is a few hundred
bytes."""
MAX_BODY_KEY = "[webhooks] max_body_bytes"
BODY_TIMEOUT = 10.0
"""Default of ``[server] body_timeout_seconds``."""
# Webhook ids seen are remembered this long (senders retry for hours, not weeks).
SEEN_FOR = timedelta(days=30)

INFLUITIVE_PATH = "/webhooks/influitive"
INFLUENCEIO_PATH = "/webhooks/influenceio"


def _authorized(request: Request, secret: str) -> bool:
    given = request.headers.get(SECRET_HEADER) or request.query_params.get(TOKEN_PARAM) or ""
    return hmac.compare_digest(given.encode(), secret.encode())


def _unauthorized() -> JSONResponse:
    return JSONResponse({"error": f"missing or wrong secret ({SECRET_HEADER} header or "
                                  f"{TOKEN_PARAM} query parameter)"}, status_code=401)


def influitive_route(
    secret: str, nudge: Callable[[], None], *, max_body: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
) -> Route:
    async def receive(request: Request) -> Response:
        if not _authorized(request, secret):
            log.warning("webhook.influitive.unauthorized")
            return _unauthorized()
        # The body is not used (the poll is the truth), but it is read against the same
        # cap and deadline so a huge or trickling body cannot hold the connection.
        read = await _bounded_body(request, "influitive", max_body, body_timeout)
        if isinstance(read, Response):
            return read
        nudge()
        log.info("webhook.influitive.nudged")
        return JSONResponse({"status": "accepted", "action": "cycle requested"},
                            status_code=202)

    return Route(INFLUITIVE_PATH, receive, methods=["POST"])


async def _bounded_body(
    request: Request, receiver: str, max_body: int, body_timeout: float
) -> bytes | Response:
    """The body, read incrementally against the size cap and the deadline; or the 413/408
    answer (logged as a warning) when it is too large or too slow."""
    try:
        return await read_body(request, max_bytes=max_body, timeout=body_timeout,
                               key=MAX_BODY_KEY)
    except BodyTooLarge as exc:
        log.warning(f"webhook.{receiver}.too_large", reason=str(exc))
        return JSONResponse({"error": str(exc)}, status_code=413)
    except BodyTooSlow as exc:
        log.warning(f"webhook.{receiver}.too_slow", reason=str(exc))
        return JSONResponse({"error": str(exc)}, status_code=408)


def _topic(header: str) -> str:
    # Header values are case-sensitive in principle, but a sender's or a proxy's different
    # spelling of a topic must not drop a paid redemption: compared case-insensitively
    # (documented in docs/security.md).
    return header.strip().casefold()


def _bad_topic(shown: str) -> str:
    if not shown:
        return f"X-Webhook-Topic header is missing; expected {REDEEMED_TOPIC!r}"
    return (f"X-Webhook-Topic {shown!r} is not an Influence.io topic this receiver knows; "
            f"expected {REDEEMED_TOPIC!r}")


def influenceio_route(
    secret: str, ledger: Ledger, nudge: Callable[[], None],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC), *,
    max_body: int = MAX_BODY, body_timeout: float = BODY_TIMEOUT,
) -> Route:
    async def receive(request: Request) -> Response:
        if not _authorized(request, secret):
            log.warning("webhook.influenceio.unauthorized")
            return _unauthorized()
        topic = request.headers.get("X-Webhook-Topic", "")
        webhook_id = request.headers.get("X-Webhook-Id", "").strip()
        shown = "".join(c for c in topic[:64] if c.isprintable())
        if _topic(topic) in IGNORED_TOPICS:
            # A real topic a merchant may subscribe to (points/earned, customers/updated,
            # ...) that needs nothing from us: acknowledged, so the sender does not retry
            # it or disable the subscription, and its body is not read.
            log.debug("webhook.influenceio.ignored", topic=shown,
                      webhook_id=webhook_id[:64] or None)
            return JSONResponse({"status": "ignored", "topic": _topic(topic)})
        if _topic(topic) != REDEEMED_TOPIC:
            # A 4xx the sender sees (and shows in its delivery log): a topic Influence.io
            # does not document, or none, means a misconfigured sender that a 2xx would hide.
            log.warning("webhook.influenceio.bad_topic",
                        topic=shown or None, webhook_id=webhook_id[:64] or None)
            return JSONResponse({"error": _bad_topic(shown)}, status_code=400)
        raw = await _bounded_body(request, "influenceio", max_body, body_timeout)
        if isinstance(raw, Response):
            return raw
        try:
            body: Any = parse_json(raw)
        except BadBody as exc:
            log.warning("webhook.influenceio.rejected", reason=str(exc),
                        webhook_id=webhook_id[:64] or None)
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            redemption = parse_redeemed(body)
        except BadEvent as exc:
            log.warning("webhook.influenceio.rejected", reason=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=422)
        now = clock()
        # A delivery is the pair (webhook id, event id): a sender that reuses a webhook id
        # for another event must not have that event dropped as a repeat. (The ledger's
        # own key, source and event id, is what makes storing twice harmless.)
        seen_key = (f"webhook:{SOURCE}:{webhook_id}:{redemption.id}" if webhook_id
                    else None)
        if seen_key and await run_in_threadpool(ledger.cache_get, seen_key, now) is not None:
            log.info("webhook.influenceio.duplicate",
                     redemption_id=redemption.id, source=SOURCE)
            return JSONResponse({"status": "duplicate", "id": redemption.id})
        # Stored durably before the 2xx: if this fails, the sender retries.
        # Pushed sources are not polled: poll id 0 (see Worker: they are always outstanding).
        # The ledger is synchronous (and SQLite may wait for a lock): off the event loop.
        new = await run_in_threadpool(ledger.record, 0, [redemption], now)
        if seen_key:
            await run_in_threadpool(ledger.cache_put, seen_key, redemption.id, now + SEEN_FOR)
        log.info("webhook.influenceio.stored", redemption_id=redemption.id, source=SOURCE,
                 new=bool(new))
        if new:
            nudge()
        return JSONResponse({"status": "stored" if new else "duplicate", "id": redemption.id},
                            status_code=202 if new else 200)

    return Route(INFLUENCEIO_PATH, receive, methods=["POST"])


def webhook_routes(
    *, influitive_secret: str | None, influenceio_secret: str | None, ledger: Ledger,
    nudge: Callable[[], None], max_body: int = MAX_BODY, body_timeout: float = BODY_TIMEOUT,
) -> Sequence[BaseRoute]:
    routes: list[BaseRoute] = []
    if influitive_secret:
        routes.append(influitive_route(influitive_secret, nudge, max_body=max_body,
                                       body_timeout=body_timeout))
    if influenceio_secret:
        routes.append(influenceio_route(influenceio_secret, ledger, nudge,
                                        max_body=max_body, body_timeout=body_timeout))
    return routes
