"""The daemon's listener app: ``/healthz``, ``/metrics`` and the webhook receivers.

``/healthz`` is judged at each request: healthy while the last successful poll is at most two
intervals old (so one slow or failed cycle is not an outage; before the first, for two
intervals from the start), and no operator-facing problem is on the board (docs/cli.md "run":
a person must act, however fresh the polls).

The receivers (docs/webhooks.md; their limits, topics and deduplication: docs/security.md):
neither sender documents a signature, so both require a shared secret (``X-Webhook-Secret``
header or ``token`` query parameter), compared in constant time. Influitive's webhook is a
nudge, not the truth: nothing is ordered from its body. An Influence.io ``points/redeemed``
event is stored in the ledger before it is answered 2xx.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from poller.daemon.metrics import CONTENT_TYPE, Recorder
from poller.ports import Ledger
from poller.sources.influenceio import IGNORED_TOPICS, REDEEMED_TOPIC, SOURCE
from poller.sources.influenceio.wire import BadEvent, parse_redeemed
from poller.worker.cycle import OperatorProblem

log = structlog.get_logger("poller.daemon.webhooks")

SECRET_HEADER = "X-Webhook-Secret"
TOKEN_PARAM = "token"
MAX_BODY = 64 * 1024  # default of [webhooks] max_body_bytes
BODY_TIMEOUT = 10.0  # default of [server] body_timeout_seconds
# Webhook ids seen are remembered this long (senders retry for hours, not weeks).
SEEN_FOR = timedelta(days=30)
# Deepest nesting of objects and arrays taken: an Influence.io event is three deep, and a
# bound well under the recursion limit keeps storing and re-reading the body (``json.dumps``
# recurses too) safe.
MAX_DEPTH = 32


# --- /healthz ----------------------------------------------------------------------------

def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat()


class ProblemBoard:
    """The operator-facing problems recent cycles met, by cause, each until no cycle has met
    it for ``keep_seconds`` (thread-safe: cycles write, ``/healthz`` reads)."""

    def __init__(self, *, keep_seconds: float, describe: Callable[[OperatorProblem], str],
                 clock: Callable[[], float] = time.time) -> None:
        self.keep_seconds = keep_seconds
        self._describe = describe
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[OperatorProblem, float, float]] = {}

    def update(self, problems: Sequence[OperatorProblem]) -> None:
        now = self._clock()
        with self._lock:
            for problem in problems:
                first = self._seen.get(problem.cause, (problem, now, now))[1]
                self._seen[problem.cause] = (problem, first, now)

    def current(self) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            for cause in [c for c, (_, _, last) in self._seen.items()
                          if now - last > self.keep_seconds]:
                del self._seen[cause]
            return [
                {"cause": cause, "who": p.who, "kind": p.kind, "redemptions": p.redemptions,
                 "message": self._describe(p), "first_seen": _iso(first),
                 "last_seen": _iso(last)}
                for cause, (p, first, last) in sorted(self._seen.items())
            ]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    ok: bool
    reason: str
    last_successful_poll: float | None
    threshold_seconds: float
    problems: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, now: float) -> dict[str, Any]:
        last = self.last_successful_poll
        return {
            "status": "ok" if self.ok else "unhealthy",
            "reason": self.reason,
            "last_successful_poll": _iso(last) if last is not None else None,
            "seconds_since_last_successful_poll": (
                round(now - last, 3) if last is not None else None
            ),
            "threshold_seconds": self.threshold_seconds,
            "problems": self.problems,
        }


class Health:
    def __init__(
        self, *, interval_seconds: float, last_success: Callable[[], float | None],
        started_at: float | None = None, clock: Callable[[], float] = time.time,
        problems: ProblemBoard | None = None,
    ) -> None:
        self.threshold = 2 * interval_seconds
        self.problems = problems
        self._last_success = last_success
        self._clock = clock
        self.started_at = clock() if started_at is None else started_at

    def now(self) -> float:
        return self._clock()

    def judge(self) -> Verdict:
        last = self._last_success()
        age = self._clock() - (self.started_at if last is None else last)
        ok = age <= self.threshold
        late = f"more than 2 intervals ({self.threshold:g}s)"
        if last is not None:
            reason = f"last successful poll {age:.0f}s ago" + ("" if ok else f", {late}")
        elif ok:
            reason = f"starting: no poll finished yet ({age:.0f}s since start)"
        else:
            reason = (f"no successful poll since the daemon started {age:.0f}s ago "
                      f"(more than 2 intervals, {self.threshold:g}s)")
        problems = self.problems.current() if self.problems is not None else []
        if problems:
            ok = False
            reason = "a person must act: " + "; ".join(p["message"] for p in problems)
        return Verdict(ok=ok, reason=reason, last_successful_poll=last,
                       threshold_seconds=self.threshold, problems=problems)


def create_app(
    health: Health, recorder: Recorder, *, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """``extra_routes`` are served beside the two built-in ones (which win on a clash of
    paths, so a plug-in route can never hide the health check)."""

    async def healthz(request: Request) -> Response:
        verdict = health.judge()
        return JSONResponse(verdict.as_json(health.now()), status_code=200 if verdict.ok else 503,
                            headers={"Cache-Control": "no-store"})

    async def metrics(request: Request) -> Response:
        return Response(recorder.exposition(), media_type=CONTENT_TYPE,
                        headers={"Cache-Control": "no-store"})

    return Starlette(routes=[
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET", "HEAD"]),
        *extra_routes,
    ])


# --- strict JSON: every way a body can fail to parse is a 400 with a reason ---------------
# Python's ``json`` takes NaN, Infinity and 1e400 (inf), and raises RecursionError on a body
# nested thousands deep: left alone, a 500 the sender retries for ever.

class BadBody(ValueError):
    """The body is not acceptable JSON; the message says why, never quoting the body."""


def _no_constant(name: str) -> NoReturn:
    raise BadBody(f"body has {name}, which is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadBody("body has a number too large to represent")
    return value


def _too_deep(value: Any) -> bool:
    # Iterative, so a wide or deep value cannot exhaust the stack while being measured.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except BadBody:
        raise
    except RecursionError:
        raise BadBody(f"body is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # also UnicodeDecodeError and integers past the digit limit
        raise BadBody("body is not valid JSON") from None
    if _too_deep(value):
        raise BadBody(f"body is nested more than {MAX_DEPTH} levels deep")
    return value


# --- the receivers -------------------------------------------------------------------------

def _unauthorized(request: Request, secret: str, receiver: str) -> Response | None:
    """The 401 answer (logged as a warning) unless the request carries ``secret``."""
    given = request.headers.get(SECRET_HEADER) or request.query_params.get(TOKEN_PARAM) or ""
    if hmac.compare_digest(given.encode(), secret.encode()):
        return None
    log.warning(f"webhook.{receiver}.unauthorized")
    return JSONResponse({"error": f"missing or wrong secret ({SECRET_HEADER} header or "
                                  f"{TOKEN_PARAM} query parameter)"}, status_code=401)


async def read_body(
    request: Request, receiver: str, max_bytes: int, timeout: float
) -> bytes | Response:
    """The body, read chunk by chunk so a huge one is refused after the first bytes past the
    cap (or at once when Content-Length says it will pass it); or the 413/408 answer, logged
    as a warning, when it is too large or too slow."""
    limit = f"[webhooks] max_body_bytes ({max_bytes} bytes)"
    declared = request.headers.get("content-length", "")
    error, status = "", 413
    if declared.isdigit() and int(declared) > max_bytes:
        error = f"body of {int(declared)} bytes is larger than {limit}"
    else:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_bytes:
                        error = f"body is larger than {limit}"
                        break
                    chunks.append(chunk)
        except TimeoutError:
            error, status = f"body not received within {timeout:g} seconds", 408
        if not error:
            return b"".join(chunks)
    log.warning(f"webhook.{receiver}.{'too_large' if status == 413 else 'too_slow'}",
                reason=error)
    return JSONResponse({"error": error}, status_code=status)


def _influitive(secret: str, nudge: Callable[[], None], max_body: int,
                body_timeout: float) -> Route:
    async def receive(request: Request) -> Response:
        if (refused := _unauthorized(request, secret, "influitive")) is not None:
            return refused
        # The body is not used (the poll is the truth), but it is read against the same
        # cap and deadline so a huge or trickling body cannot hold the connection.
        read = await read_body(request, "influitive", max_body, body_timeout)
        if isinstance(read, Response):
            return read
        nudge()
        log.info("webhook.influitive.nudged")
        return JSONResponse({"status": "accepted", "action": "cycle requested"},
                            status_code=202)

    return Route("/webhooks/influitive", receive, methods=["POST"])


def _influenceio(secret: str, ledger: Ledger, nudge: Callable[[], None], max_body: int,
                 body_timeout: float) -> Route:
    async def receive(request: Request) -> Response:
        if (refused := _unauthorized(request, secret, "influenceio")) is not None:
            return refused
        header = request.headers.get("X-Webhook-Topic", "")
        # Compared case-insensitively: a sender's or a proxy's spelling of the topic must not
        # drop a paid redemption (docs/security.md).
        topic = header.strip().casefold()
        webhook_id = request.headers.get("X-Webhook-Id", "").strip()
        shown = "".join(c for c in header[:64] if c.isprintable())
        if topic in IGNORED_TOPICS:
            # Acknowledged, so the sender neither retries it nor disables the subscription.
            log.debug("webhook.influenceio.ignored", topic=shown,
                      webhook_id=webhook_id[:64] or None)
            return JSONResponse({"status": "ignored", "topic": topic})
        if topic != REDEEMED_TOPIC:
            # A 4xx the sender shows in its delivery log: a 2xx would hide a misconfigured
            # sender.
            log.warning("webhook.influenceio.bad_topic",
                        topic=shown or None, webhook_id=webhook_id[:64] or None)
            problem = (f"X-Webhook-Topic {shown!r} is not an Influence.io topic this receiver "
                       "knows" if shown else "X-Webhook-Topic header is missing")
            return JSONResponse({"error": f"{problem}; expected {REDEEMED_TOPIC!r}"},
                                status_code=400)
        raw = await read_body(request, "influenceio", max_body, body_timeout)
        if isinstance(raw, Response):
            return raw
        try:
            redemption = parse_redeemed(parse_json(raw))
        except BadBody as exc:
            log.warning("webhook.influenceio.rejected", reason=str(exc),
                        webhook_id=webhook_id[:64] or None)
            return JSONResponse({"error": str(exc)}, status_code=400)
        except BadEvent as exc:
            log.warning("webhook.influenceio.rejected", reason=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=422)
        now = datetime.now(UTC)
        # A delivery is the pair (webhook id, event id): a sender that reuses a webhook id
        # for another event must not have that event dropped as a repeat.
        seen_key = (f"webhook:{SOURCE}:{webhook_id}:{redemption.id}" if webhook_id
                    else None)
        if seen_key and await run_in_threadpool(ledger.cache_get, seen_key, now) is not None:
            log.info("webhook.influenceio.duplicate",
                     redemption_id=redemption.id, source=SOURCE)
            return JSONResponse({"status": "duplicate", "id": redemption.id})
        # Stored durably before the 2xx (if this fails, the sender retries), off the event
        # loop. Pushed sources are not polled: poll id 0 (they are always outstanding).
        new = await run_in_threadpool(ledger.record, 0, [redemption], now)
        if seen_key:
            await run_in_threadpool(ledger.cache_put, seen_key, redemption.id, now + SEEN_FOR)
        log.info("webhook.influenceio.stored", redemption_id=redemption.id, source=SOURCE,
                 new=bool(new))
        if new:
            nudge()
        return JSONResponse({"status": "stored" if new else "duplicate", "id": redemption.id},
                            status_code=202 if new else 200)

    return Route("/webhooks/influenceio", receive, methods=["POST"])


def webhook_routes(
    *, influitive_secret: str | None, influenceio_secret: str | None, ledger: Ledger,
    nudge: Callable[[], None], max_body: int = MAX_BODY, body_timeout: float = BODY_TIMEOUT,
) -> Sequence[BaseRoute]:
    routes: list[BaseRoute] = []
    if influitive_secret:
        routes.append(_influitive(influitive_secret, nudge, max_body, body_timeout))
    if influenceio_secret:
        routes.append(_influenceio(influenceio_secret, ledger, nudge, max_body, body_timeout))
    return routes
