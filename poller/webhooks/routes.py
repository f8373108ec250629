"""The Starlette routes of the two receivers."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from poller.core.ports import Ledger
from poller.influenceio import REDEEMED_TOPIC, SOURCE
from poller.influenceio.events import BadEvent, parse_redeemed

log = structlog.get_logger("poller.webhooks")

SECRET_HEADER = "X-Webhook-Secret"
TOKEN_PARAM = "token"
MAX_BODY = 64 * 1024
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


def influitive_route(secret: str, nudge: Callable[[], None]) -> Route:
    async def receive(request: Request) -> Response:
        if not _authorized(request, secret):
            log.warning("influitive webhook refused: bad secret")
            return _unauthorized()
        # The body is not read for anything: the poll is the truth.
        nudge()
        log.info("influitive webhook: cycle requested")
        return JSONResponse({"status": "accepted", "action": "cycle requested"},
                            status_code=202)

    return Route(INFLUITIVE_PATH, receive, methods=["POST"])


def influenceio_route(
    secret: str, ledger: Ledger, nudge: Callable[[], None],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Route:
    async def receive(request: Request) -> Response:
        if not _authorized(request, secret):
            log.warning("influenceio webhook refused: bad secret")
            return _unauthorized()
        topic = request.headers.get("X-Webhook-Topic", "")
        webhook_id = request.headers.get("X-Webhook-Id", "").strip()
        if topic != REDEEMED_TOPIC:
            log.debug("influenceio webhook ignored: other topic", topic=topic[:64])
            return JSONResponse({"status": "ignored", "topic": topic[:64]})
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": "body is not valid JSON"}, status_code=400)
        try:
            redemption = parse_redeemed(body)
        except BadEvent as exc:
            log.warning("influenceio webhook rejected", reason=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=422)
        now = clock()
        seen_key = f"webhook:{SOURCE}:{webhook_id}" if webhook_id else None
        if seen_key and await run_in_threadpool(ledger.cache_get, seen_key, now) is not None:
            log.info("influenceio webhook: delivered again, already stored",
                     redemption_id=redemption.id, source=SOURCE)
            return JSONResponse({"status": "duplicate", "id": redemption.id})
        # Stored durably before the 2xx: if this fails, the sender retries.
        # Pushed sources are not polled: poll id 0 (see Worker: they are always outstanding).
        # The ledger is synchronous (and SQLite may wait for a lock): off the event loop.
        new = await run_in_threadpool(ledger.record, 0, [redemption], now)
        if seen_key:
            await run_in_threadpool(ledger.cache_put, seen_key, redemption.id, now + SEEN_FOR)
        log.info("influenceio webhook stored", redemption_id=redemption.id, source=SOURCE,
                 new=bool(new))
        if new:
            nudge()
        return JSONResponse({"status": "stored" if new else "duplicate", "id": redemption.id},
                            status_code=202 if new else 200)

    return Route(INFLUENCEIO_PATH, receive, methods=["POST"])


def webhook_routes(
    *, influitive_secret: str | None, influenceio_secret: str | None, ledger: Ledger,
    nudge: Callable[[], None],
) -> Sequence[BaseRoute]:
    routes: list[BaseRoute] = []
    if influitive_secret:
        routes.append(influitive_route(influitive_secret, nudge))
    if influenceio_secret:
        routes.append(influenceio_route(influenceio_secret, ledger, nudge))
    return routes
