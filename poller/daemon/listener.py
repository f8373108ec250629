"""The ASGI app of the daemon's listener: ``/healthz``, ``/metrics``, and whatever routes
other parts add (webhook receivers) through ``extra_routes``."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from poller.daemon.health import Health
from poller.daemon.metrics import CONTENT_TYPE, Recorder


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

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET", "HEAD"]),
        *extra_routes,
    ]
    return Starlette(routes=routes)
