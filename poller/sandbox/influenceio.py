"""A local stand-in for the Influence.io Platform API's points endpoints, with fault knobs.

What it speaks (Influence.io developer reference, "Award points to a customer"; the shared
notes in docs/influenceio.md): ``POST /v1/customers/{customerId}/points`` with header
``x-api-key``; a body with a positive whole number of points and a reason; 404 "Customer not
found" for an unknown customer; 401 without a valid key. The body's field names are not
public: the stand-in takes ``points_field``/``reason_field`` (default ``points``/``reason``)
and answers 400 when the points field is missing or not a positive integer, as an API
validating its body would.

Assumed (configurable in the worker): ``GET /v1/customers/{customerId}/points`` lists the
customer's points history, newest first, as ``{"data": [{"id", "points", "reason",
"createdAt"}]}``.

Admin routes under ``/_standin`` (loopback only): ``POST /_standin/customers`` seeds
``{"id", "pointBalance"}`` objects (one or an array); ``GET /_standin/awards`` lists every
award applied; plus the shared fault routes (``reset``, ``faults``, ``delay``, ``lose``,
``garbage``: a lost answer is applied first, then dropped or hung).
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from poller.sandbox.faults import (
    Faults,
    apply_delay,
    fault_admin_routes,
    retry_after_headers,
    spoil,
)

API_PREFIX = "/v1"
DEFAULT_KEY = "standin-influenceio-key"
GARBAGE = b"<html><body>Bad gateway</body></html>"

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(kw_only=True)
class Award:
    id: int
    customer_id: str
    points: int
    reason: str | None
    created_at: str


class InfluenceioState(Faults):
    """Customers, their balances and every award applied. Thread-safe."""

    def __init__(self, *, points_field: str = "points", reason_field: str = "reason") -> None:
        self._lock = threading.RLock()
        self.points_field = points_field
        self.reason_field = reason_field
        self.customers: dict[str, int] = {}
        self._awards: list[Award] = []
        self.requests = 0
        self._init_faults()

    def reset(self) -> None:
        with self._lock:
            self.customers.clear()
            self._awards.clear()
            self.requests = 0
        self._reset_faults()

    def seed_customer(self, customer_id: str, balance: int = 0) -> None:
        with self._lock:
            self.customers[str(customer_id)] = balance

    def awards(self, customer_id: str | None = None) -> list[Award]:
        with self._lock:
            return [Award(**asdict(a)) for a in self._awards
                    if customer_id is None or a.customer_id == customer_id]

    def balance(self, customer_id: str) -> int | None:
        with self._lock:
            return self.customers.get(customer_id)

    def _award(self, customer_id: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if customer_id not in self.customers:
                return 404, {"message": "Customer not found"}
            points = body.get(self.points_field) if isinstance(body, dict) else None
            if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
                return 400, {"message": f"{self.points_field} must be an integer > 0"}
            reason = body.get(self.reason_field)
            award = Award(id=len(self._awards) + 1, customer_id=customer_id, points=points,
                          reason=None if reason is None else str(reason),
                          created_at=datetime.now(UTC).isoformat())
            self._awards.append(award)
            self.customers[customer_id] += points
            return 200, {"id": customer_id, "pointBalance": self.customers[customer_id]}

    def _history(self, customer_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if customer_id not in self.customers:
                return 404, {"message": "Customer not found"}
            entries = [{"id": a.id, "points": a.points, "reason": a.reason,
                        "createdAt": a.created_at}
                       for a in reversed(self._awards) if a.customer_id == customer_id]
            return 200, {"data": entries}


def create_app(state: InfluenceioState | None = None, *, api_key: str = DEFAULT_KEY) -> Starlette:
    """The stand-in app; ``app.state.influenceio`` is the ``InfluenceioState``."""
    st = state if state is not None else InfluenceioState()
    expected = api_key.encode()

    def api(handler: Handler, *, lose: bool) -> Handler:
        async def wrapped(request: Request) -> Response:
            with st._lock:
                st.requests += 1
            path = request.url.path.removeprefix(API_PREFIX) or "/"
            await apply_delay(st)
            fault = st._take_fault(request.method, path)
            if fault is not None:
                return JSONResponse({"message": f"Forced {fault.status} (stand-in)"},
                                    status_code=fault.status,
                                    headers=retry_after_headers(fault.retry_after))
            given = request.headers.get("x-api-key", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse({"message": "Unauthorized"}, status_code=401)
            response = await handler(request)
            return spoil(st, response, lose=lose and response.status_code == 200,
                         garbage=GARBAGE, garbage_type="text/html")

        return wrapped

    async def award(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"message": "Body is not valid JSON"}, status_code=400)
        status, answer = st._award(str(request.path_params["cid"]), body)
        return JSONResponse(answer, status_code=status)

    async def history(request: Request) -> Response:
        status, answer = st._history(str(request.path_params["cid"]))
        return JSONResponse(answer, status_code=status)

    async def admin_customers(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        items = body if isinstance(body, list) else [body]
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), int | str):
                return JSONResponse({"error": "send {\"id\", \"pointBalance\"} objects"},
                                    status_code=400)
            st.seed_customer(str(item["id"]), int(item.get("pointBalance") or 0))
        return JSONResponse({"customers": len(st.customers)}, status_code=201)

    async def admin_awards(request: Request) -> Response:
        return JSONResponse({"awards": [asdict(a) for a in st.awards()]})

    routes = [
        Route(API_PREFIX + "/customers/{cid}/points", api(award, lose=True), methods=["POST"]),
        Route(API_PREFIX + "/customers/{cid}/points", api(history, lose=False),
              methods=["GET"]),
        Route("/_standin/customers", admin_customers, methods=["POST"]),
        Route("/_standin/awards", admin_awards, methods=["GET"]),
    ]
    routes += fault_admin_routes(st)
    app = Starlette(routes=routes)
    app.state.influenceio = st
    return app


__all__ = ["Award", "InfluenceioState", "create_app"]
