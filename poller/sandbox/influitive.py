"""A local stand-in for the Influitive reward API (docs/influitive-api.md), with fault knobs.

It speaks the documented shapes: ``Authorization: Token <token>`` and ``X_ORG_ID`` checked
(401, empty body, ``WWW-Authenticate: Token realm=Api``), ``GET /reward_redemptions`` paged
with ``links.self``/``links.next`` and side-loaded ``contacts``, and
``POST /reward_redemptions/{id}/decision/{verb}`` with ``{"message": ...}``. A decided
redemption leaves the list; deciding it again answers 422 with an error body.

Everything a test needs is reachable from Python (``InfluitiveState``) and over HTTP under
``/_standin/...`` (no auth: loopback only) so a test in another process can drive it:

* ``POST /_standin/redemptions``: seed items (one object, an array, or
  ``{"reward_redemptions": [...], "contacts": [...]}``); items may nest a ``contact``.
* ``GET /_standin/redemptions``: the outstanding items, as stored.
* ``POST /_standin/redemptions/{id}/decide``: ``{"verb": "fulfill"|"refuse", "message": ...}``,
  an admin deciding in the UI.
* ``GET /_standin/decisions``: every decision received, accepted or not.
* ``GET /_standin/requests``: every API request (method, path, query, status), no headers.
* ``GET|POST /_standin/faults``: read or change the knobs (see ``InfluitiveState.configure``)
  and append to the fault queue with ``{"queue": [fault, ...]}`` (see ``Fault``).
* ``POST /_standin/reset``: back to an empty stand-in with default knobs.

A firewall like Influitive's AWS WAF rule (Influitive's support article "API Rate Limitation
in Influitive"; AWS WAF's documented answers) sits in front of the API when the knob
``waf_limit`` is set: past ``waf_limit`` API requests from one client address in any rolling
``waf_window`` seconds (blocked requests count too), a request is answered without reaching
the API: a 403 HTML page without ``WWW-Authenticate`` (``waf_mode="block"``), or a 202 with
``x-amzn-waf-action: challenge`` (``waf_mode="challenge"``). ``InfluitiveState.waf_blocked()``
counts those answers. A queued ``Fault(waf=...)`` gives one such answer on demand.

Outside-world glitches, on chosen requests (queued ``Fault``: ``{"empty_list": true}``,
``{"waf": "challenge"}``, ``{"status": 404, "match": "/decision/"}``) or at random (knobs
``empty_list_rate``, ``decision_fault_rate`` with ``decision_faults`` and ``random_seed``): a
complete list that comes back empty, and decisions that apply nothing yet answer AWS WAF's
challenge (``202``, ``x-amzn-waf-action: challenge``, an HTML page), 404 or 422.

The token is never logged, echoed or stored in the state.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

LIST_PATH = "/reward_redemptions"
DEFAULT_TOKEN = "standin-token"
DEFAULT_ORG = "standin-org"
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>We're sorry, but something went wrong (500)</title>"
    "</head><body><h1>We're sorry, but something went wrong.</h1></body></html>\n"
)

WAF_BLOCK_PAGE = (
    "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
    "<center><h1>403 Forbidden</h1></center>\r\n</body>\r\n</html>\r\n"
)
"""AWS WAF's default block answer behind a load balancer: a 403 HTML page."""
WAF_CHALLENGE_PAGE = (
    "<!DOCTYPE html><html lang=\"en\"><head><title></title>"
    "<script src=\"https://example.token.awswaf.com/challenge.js\"></script></head>"
    "<body><div id=\"challenge-container\"></div></body></html>"
)
"""The JavaScript interstitial AWS WAF sends with a challenge (202) or CAPTCHA (405)."""

WafAnswer = Literal["block", "challenge", "captcha"]
WAF_ANSWERS: frozenset[str] = frozenset({"block", "challenge", "captcha"})

Garbage = Literal["html", "truncated", "wrong_shape", "empty"]
GARBAGE_KINDS: frozenset[str] = frozenset({"html", "truncated", "wrong_shape", "empty"})
DECISION_FAULTS: frozenset[str] = frozenset({"challenge", "block", "404", "409", "422"})


@dataclass(frozen=True, kw_only=True)
class Fault:
    """What to do to one coming API request. Queued faults are taken in order, each by the
    first request it ``match``-es, and used once.

    JSON form (``POST /_standin/faults`` ``{"queue": [...]}``) uses the same field names,
    e.g. ``{"status": 429, "retry_after": "7"}`` or ``{"garbage": "html", "match": "page=2"}``.
    """

    status: int | None = None
    """Answer this status instead of the real answer."""
    retry_after: str | None = None
    """A Retry-After header to send with ``status``."""
    body: str | None = None
    """Body to send with ``status`` (default: a small JSON error, empty for 401)."""
    garbage: Garbage | None = None
    """A 200 that is not the documented JSON: an HTML page, the real JSON cut in half, JSON
    of the wrong shape, or an empty body."""
    delay: float = 0.0
    """Seconds to wait before answering this request (a slow answer, a client timeout)."""
    match: str | None = None
    """Only a request whose ``"METHOD /path?query"`` contains this text takes the fault."""
    after: bool = False
    """Let the request take effect first (a decision is applied), then answer the fault:
    the answer was lost on the way back."""
    waf: WafAnswer | None = None
    """The firewall answers instead of the API, as AWS WAF does: ``block`` (403 HTML page,
    no ``WWW-Authenticate``), ``challenge`` (202, ``x-amzn-waf-action: challenge``),
    ``captcha`` (405, ``x-amzn-waf-action: captcha``). Nothing is applied."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers to send with ``status`` (JSON: an object), e.g. a 403 with
    ``WWW-Authenticate: Token realm=Api``."""
    empty_list: bool = False
    """A list read answers a complete, empty list (``links.next`` null)."""

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, Mapping):
            raise ValueError("a fault is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        status = data.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise ValueError("fault status must be an HTTP status code")
        garbage = data.get("garbage")
        if garbage is not None and garbage not in GARBAGE_KINDS:
            raise ValueError(f"fault garbage must be one of {sorted(GARBAGE_KINDS)}")
        retry_after = data.get("retry_after")
        delay = data.get("delay", 0.0)
        if not isinstance(delay, int | float) or delay < 0:
            raise ValueError("fault delay must be a number of seconds")
        body = data.get("body")
        match = data.get("match")
        waf = data.get("waf")
        if waf is not None and waf not in WAF_ANSWERS:
            raise ValueError(f"fault waf must be one of {sorted(WAF_ANSWERS)}")
        headers = data.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise ValueError("fault headers must be an object")
        return cls(
            waf=cast("WafAnswer | None", waf),
            headers=tuple((str(k), str(v)) for k, v in headers.items()),
            empty_list=bool(data.get("empty_list", False)),
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            body=None if body is None else str(body),
            garbage=cast("Garbage | None", garbage),
            delay=float(delay),
            match=None if match is None else str(match),
            after=bool(data.get("after", False)),
        )


@dataclass(kw_only=True)
class DecisionRecord:
    """One decision the stand-in received (``source="api"``) or an admin took (``"admin"``)."""

    id: str
    verb: str
    message: str | None
    accepted: bool
    """The decision took effect (the redemption left the outstanding list)."""
    status: int
    """The status the stand-in answered (a fault may hide an accepted decision)."""
    source: Literal["api", "admin"] = "api"


@dataclass(kw_only=True)
class RequestRecord:
    method: str
    path: str
    query: str
    status: int


@dataclass(kw_only=True)
class _Knobs:
    page_size: int = 25
    absolute_links: bool = False
    """``links`` as absolute URLs (``http://host:port/reward_redemptions?page=2``)."""
    nest_contacts: bool = False
    """Serve the advocate nested as ``contact`` instead of side-loading ``contacts``."""
    loop_next: bool = False
    """The last page links back to page 1: a ``next`` that repeats forever."""
    last_next: Literal["null", "empty", "absent"] = "null"
    """How the last page says there is no next page."""
    refuse_verbs: tuple[str, ...] = ("refuse",)
    """Accepted refusal verbs; others answer 404 like an unknown route."""
    delay: float = 0.0
    """Seconds every API request waits before its answer."""
    waf_limit: int | None = None
    """API requests allowed per client address in any ``waf_window`` seconds; None: no
    firewall."""
    waf_window: float = 300.0
    waf_mode: Literal["block", "challenge"] = "block"
    empty_list_rate: float = 0.0
    """Chance that a read of the list's first page answers a complete, empty list."""
    decision_fault_rate: float = 0.0
    """Chance that a decision applies nothing and answers one of ``decision_faults``."""
    decision_faults: tuple[str, ...] = ("challenge", "404", "422")
    random_seed: int | None = None
    """Seed of the random faults (set it to replay a run)."""


def _key(item: Any) -> str | None:
    if isinstance(item, Mapping) and isinstance(item.get("id"), int | str):
        return str(item["id"])
    return None


class InfluitiveState:
    """The stand-in's records and knobs. Thread-safe: tests read it while uvicorn serves."""

    def __init__(self, **knobs: Any) -> None:
        self._lock = threading.RLock()
        self._items: list[Any] = []
        self._contacts: dict[str, dict[str, Any]] = {}
        self._decided: dict[str, str] = {}
        self._decisions: list[DecisionRecord] = []
        self._requests: list[RequestRecord] = []
        self._faults: deque[Fault] = deque()
        self._waf_hits: dict[str, deque[float]] = {}
        self._waf_blocked = 0
        self._knobs = _Knobs()
        self._rng = random.Random()
        if knobs:
            self.configure(**knobs)

    # --- set-up -------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._items.clear()
            self._contacts.clear()
            self._decided.clear()
            self._decisions.clear()
            self._requests.clear()
            self._faults.clear()
            self._waf_hits.clear()
            self._waf_blocked = 0
            self._knobs = _Knobs()
            self._rng = random.Random()

    def configure(
        self,
        *,
        page_size: int | None = None,
        absolute_links: bool | None = None,
        nest_contacts: bool | None = None,
        loop_next: bool | None = None,
        last_next: Literal["null", "empty", "absent"] | None = None,
        refuse_verbs: Iterable[str] | None = None,
        delay: float | None = None,
        waf_limit: int | None = None,
        waf_window: float | None = None,
        waf_mode: Literal["block", "challenge"] | None = None,
        empty_list_rate: float | None = None,
        decision_fault_rate: float | None = None,
        decision_faults: Iterable[str] | None = None,
        random_seed: int | None = None,
    ) -> None:
        """Change knobs; ``None`` leaves one as it is (``waf_limit=0`` turns the firewall
        off)."""
        if waf_limit is not None and (not isinstance(waf_limit, int) or waf_limit < 0):
            raise ValueError("waf_limit must be a non-negative integer")
        if waf_window is not None and (not isinstance(waf_window, int | float)
                                       or waf_window <= 0):
            raise ValueError("waf_window must be a positive number of seconds")
        if waf_mode is not None and waf_mode not in ("block", "challenge"):
            raise ValueError("waf_mode must be block or challenge")
        for name, rate in (("empty_list_rate", empty_list_rate),
                           ("decision_fault_rate", decision_fault_rate)):
            if rate is not None and (not isinstance(rate, int | float) or not 0 <= rate <= 1):
                raise ValueError(f"{name} must be between 0 and 1")
        if decision_faults is not None:
            decision_faults = [decision_faults] if isinstance(decision_faults, str) \
                else list(decision_faults)
            unknown = set(decision_faults) - DECISION_FAULTS
            if unknown or not decision_faults:
                raise ValueError(f"decision_faults: choose from {sorted(DECISION_FAULTS)}")
        if page_size is not None and (not isinstance(page_size, int) or page_size < 1):
            raise ValueError("page_size must be a positive integer")
        if delay is not None and (not isinstance(delay, int | float) or delay < 0):
            raise ValueError("delay must be a number of seconds")
        if last_next is not None and last_next not in ("null", "empty", "absent"):
            raise ValueError("last_next must be null, empty or absent")
        with self._lock:
            k = self._knobs
            if page_size is not None:
                k.page_size = page_size
            if absolute_links is not None:
                k.absolute_links = bool(absolute_links)
            if nest_contacts is not None:
                k.nest_contacts = bool(nest_contacts)
            if loop_next is not None:
                k.loop_next = bool(loop_next)
            if last_next is not None:
                k.last_next = last_next
            if refuse_verbs is not None:
                if isinstance(refuse_verbs, str):
                    refuse_verbs = [refuse_verbs]
                k.refuse_verbs = tuple(str(v) for v in refuse_verbs)
            if delay is not None:
                k.delay = float(delay)
            if waf_limit is not None:
                k.waf_limit = waf_limit or None
            if waf_window is not None:
                k.waf_window = float(waf_window)
            if waf_mode is not None:
                k.waf_mode = waf_mode

            if empty_list_rate is not None:
                k.empty_list_rate = float(empty_list_rate)
            if decision_fault_rate is not None:
                k.decision_fault_rate = float(decision_fault_rate)
            if decision_faults is not None:
                k.decision_faults = tuple(decision_faults)
            if random_seed is not None:
                k.random_seed = int(random_seed)
                self._rng = random.Random(random_seed)

    def waf_blocked(self) -> int:
        """How many API requests the firewall answered instead of the API."""
        with self._lock:
            return self._waf_blocked

    def _waf_check(self, client: str) -> WafAnswer | None:
        """Count one API request from ``client``; the firewall's answer when it is past the
        limit. Blocked requests count too, as in a WAF rate-based rule."""
        now = time.monotonic()
        with self._lock:
            k = self._knobs
            if k.waf_limit is None:
                return None
            hits = self._waf_hits.setdefault(client, deque())
            while hits and hits[0] <= now - k.waf_window:
                hits.popleft()
            hits.append(now)
            if len(hits) <= k.waf_limit:
                return None
            self._waf_blocked += 1
            return k.waf_mode

    def knobs(self) -> dict[str, Any]:
        with self._lock:
            out = asdict(self._knobs)
            out["refuse_verbs"] = list(self._knobs.refuse_verbs)
            out["decision_faults"] = list(self._knobs.decision_faults)
            out["queue"] = [asdict(f) for f in self._faults]
            out["waf_blocked"] = self._waf_blocked
            return out

    def add_faults(self, *faults: Fault | Mapping[str, Any]) -> None:
        parsed = [f if isinstance(f, Fault) else Fault.from_json(f) for f in faults]
        with self._lock:
            self._faults.extend(parsed)

    def fail_next(self, *statuses: int, retry_after: str | None = None) -> None:
        """Shorthand: the next requests answer these statuses, one each."""
        self.add_faults(*(Fault(status=s, retry_after=retry_after) for s in statuses))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def seed(self, items: Iterable[Any], contacts: Iterable[Mapping[str, Any]] = ()) -> int:
        """Add outstanding items, stored as given (a nested ``contact`` is kept and served
        side-loaded or nested as the knob says). Items are not checked: seed garbage to test
        the client's tolerance. The same id may be seeded twice (a redemption that shifted
        between pages). Returns how many items were added."""
        added = [json.loads(json.dumps(i)) for i in items]
        with self._lock:
            for contact in contacts:
                cid = _key(contact)
                if cid is not None:
                    self._contacts[cid] = dict(contact)
            self._items.extend(added)
        return len(added)

    # --- what tests read ----------------------------------------------------------------

    def outstanding(self) -> list[Any]:
        with self._lock:
            return json.loads(json.dumps(self._items))  # type: ignore[no-any-return]

    def outstanding_ids(self) -> list[str]:
        with self._lock:
            return [k for k in (_key(i) for i in self._items) if k is not None]

    def decisions(self) -> list[DecisionRecord]:
        with self._lock:
            return [DecisionRecord(**asdict(d)) for d in self._decisions]

    def decided(self, redemption_id: str) -> str | None:
        with self._lock:
            return self._decided.get(redemption_id)

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return [RequestRecord(**asdict(r)) for r in self._requests]

    # --- behaviour ----------------------------------------------------------------------

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match is None or fault.match in target:
                    self._faults.remove(fault)
                    return fault
            return self._random_fault(target)

    def _random_fault(self, target: str) -> Fault | None:
        """A fault drawn from the random knobs, or None."""
        k = self._knobs
        method, _, rest = target.partition(" ")
        path, _, query = rest.partition("?")
        if method == "GET" and path == LIST_PATH and query in ("", "page=1"):
            if k.empty_list_rate and self._rng.random() < k.empty_list_rate:
                return Fault(empty_list=True)
        elif (method == "POST" and "/decision/" in path and k.decision_fault_rate
              and self._rng.random() < k.decision_fault_rate):
            kind = self._rng.choice(k.decision_faults)
            if kind in ("challenge", "block"):
                return Fault(waf=cast("WafAnswer", kind))
            return Fault(status=int(kind), body=json.dumps(
                {"errors": ["Reward redemption could not be processed"]}))
        return None

    def _record_request(self, method: str, path: str, query: str, status: int) -> None:
        with self._lock:
            self._requests.append(RequestRecord(method=method, path=path, query=query,
                                                status=status))

    def list_page(self, page: int, origin: str) -> dict[str, Any]:
        """One page of the outstanding list in the documented shape. ``origin`` is
        ``scheme://host:port`` for absolute links."""
        with self._lock:
            k = self._knobs
            start = (page - 1) * k.page_size
            chunk = json.loads(json.dumps(self._items[start:start + k.page_size]))
            more = start + k.page_size < len(self._items)
            contacts = dict(self._contacts)
            knobs = _Knobs(**asdict(k))
        side: dict[str, Any] = {}
        for item in chunk:
            if not isinstance(item, dict):
                continue
            nested = item.get("contact")
            if knobs.nest_contacts:
                cid = _key({"id": item.get("contact_id")})
                if not isinstance(nested, Mapping) and cid in contacts:
                    item["contact"] = contacts[cid]
            elif isinstance(nested, Mapping) and _key(nested) is not None:
                del item["contact"]
                item["contact_id"] = nested["id"]
                side[str(_key(nested))] = nested
            else:
                cid = _key({"id": item.get("contact_id")})
                if cid is not None and cid in contacts:
                    side[cid] = contacts[cid]
        prefix = origin if knobs.absolute_links else ""

        def link(n: int) -> str:
            return f"{prefix}{LIST_PATH}?page={n}"

        links: dict[str, Any] = {"self": link(page)}
        if more:
            links["next"] = link(page + 1)
        elif knobs.loop_next:
            links["next"] = link(1)
        elif knobs.last_next == "null":
            links["next"] = None
        elif knobs.last_next == "empty":
            links["next"] = ""
        return {"reward_redemptions": chunk, "contacts": list(side.values()), "links": links}

    def decide(
        self, redemption_id: str, verb: str, message: str | None,
        source: Literal["api", "admin"] = "api",
    ) -> tuple[int, dict[str, Any], DecisionRecord]:
        """Apply one decision; returns (status, body, the record kept)."""
        body: dict[str, Any]
        with self._lock:
            refuse = verb in self._knobs.refuse_verbs or (source == "admin" and verb == "refuse")
            if verb != "fulfill" and not refuse:
                status, body = 404, {"error": "Not Found"}
            else:
                matching = [i for i in self._items if _key(i) == redemption_id]
                if matching:
                    self._items = [i for i in self._items if _key(i) != redemption_id]
                    stage = "fulfilled" if verb == "fulfill" else "refused"
                    self._decided[redemption_id] = stage
                    item = dict(matching[0])
                    item["stage"] = stage
                    status, body = 200, {"reward_redemption": item}
                elif redemption_id in self._decided:
                    status = 422
                    body = {"errors": [
                        f"Reward redemption has already been {self._decided[redemption_id]}"
                    ]}
                else:
                    status, body = 404, {"error": "Not Found"}
            record = DecisionRecord(id=redemption_id, verb=verb, message=message,
                                    accepted=status == 200, status=status, source=source)
            self._decisions.append(record)
            return status, body, record

    def record_unprocessed_decision(
        self, redemption_id: str, verb: str, message: str | None, status: int
    ) -> None:
        """A decision POST that never reached the logic (auth failure, forced fault)."""
        with self._lock:
            self._decisions.append(DecisionRecord(
                id=redemption_id, verb=verb, message=message, accepted=False, status=status,
            ))

    def delay(self) -> float:
        with self._lock:
            return self._knobs.delay


# --- the app ----------------------------------------------------------------------------


def _unauthorized() -> Response:
    return Response(b"", status_code=401, headers={"WWW-Authenticate": "Token realm=Api"})


def _waf_response(answer: WafAnswer) -> Response:
    """What AWS WAF sends instead of forwarding the request."""
    if answer == "challenge":
        return Response(WAF_CHALLENGE_PAGE, status_code=202, media_type="text/html",
                        headers={"x-amzn-waf-action": "challenge"})
    if answer == "captcha":
        return Response(WAF_CHALLENGE_PAGE, status_code=405, media_type="text/html",
                        headers={"x-amzn-waf-action": "captcha"})
    return Response(WAF_BLOCK_PAGE, status_code=403, media_type="text/html")


def _fault_response(fault: Fault, real: Response | None) -> Response:
    if fault.waf is not None:
        return _waf_response(fault.waf)
    if fault.empty_list:
        return JSONResponse({"reward_redemptions": [], "contacts": [],
                             "links": {"self": f"{LIST_PATH}?page=1", "next": None}})
    if fault.status is not None:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        headers.update(dict(fault.headers))
        if fault.status == 401:
            headers["WWW-Authenticate"] = "Token realm=Api"
        if fault.body is not None:
            return Response(fault.body, status_code=fault.status, headers=headers,
                            media_type="application/json")
        if fault.status == 401:
            return Response(b"", status_code=401, headers=headers)
        return JSONResponse({"error": f"stand-in fault {fault.status}"},
                            status_code=fault.status, headers=headers)
    if fault.garbage == "html":
        return Response(HTML_PAGE, status_code=200, media_type="text/html")
    if fault.garbage == "wrong_shape":
        return JSONResponse({"status": "maintenance", "reward_redemptions": "unavailable"})
    if fault.garbage == "empty":
        return Response(b"", status_code=200, media_type="application/json")
    if fault.garbage == "truncated" and real is not None:
        body = bytes(real.body)
        return Response(body[: max(1, len(body) // 2)], status_code=200,
                        media_type="application/json")
    return real if real is not None else Response(b"", status_code=500)


def _short_circuits(fault: Fault | None) -> bool:
    """The fault answers instead of the real handler (which then never runs)."""
    if fault is None or fault.after:
        return False
    return (fault.status is not None or fault.waf is not None or fault.empty_list
            or fault.garbage in ("html", "wrong_shape", "empty"))


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def create_app(
    state: InfluitiveState | None = None,
    *,
    api_token: str = DEFAULT_TOKEN,
    org_id: str = DEFAULT_ORG,
) -> Starlette:
    """The stand-in app. ``app.state.influitive`` is the ``InfluitiveState``."""
    st = state if state is not None else InfluitiveState()
    expected_auth = f"Token {api_token}"

    def authorized(request: Request) -> bool:
        return (request.headers.get("authorization") == expected_auth
                and request.headers.get("x_org_id") == org_id)

    async def serve(
        request: Request,
        handler: Callable[[], Awaitable[Response]],
        skipped: Callable[[int], None] | None = None,
    ) -> Response:
        """Delay, faults and auth around one API request, then record it."""
        query = request.url.query
        client = request.client.host if request.client else "unknown"
        waf = st._waf_check(client)
        if waf is not None:
            # The firewall answers before the API (and its faults) sees anything.
            response = _waf_response(waf)
            if skipped:
                skipped(response.status_code)
            st._record_request(request.method, request.url.path, query, response.status_code)
            return response
        target = f"{request.method} {request.url.path}" + (f"?{query}" if query else "")
        fault = st._take_fault(target)
        delay = st.delay() + (fault.delay if fault else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None and _short_circuits(fault):
            response = _fault_response(fault, None)
            if skipped:
                skipped(response.status_code)
        elif not authorized(request):
            response = _unauthorized()
            if skipped:
                skipped(401)
        else:
            response = await handler()
            if fault is not None:
                response = _fault_response(fault, response)
        st._record_request(request.method, request.url.path, query, response.status_code)
        return response

    async def list_redemptions(request: Request) -> Response:
        async def handler() -> Response:
            raw = request.query_params.get("page", "1")
            if not raw.isdigit() or int(raw) < 1:
                return JSONResponse({"error": "page must be a positive integer"},
                                    status_code=400)
            origin = f"{request.url.scheme}://{request.url.netloc}"
            return JSONResponse(st.list_page(int(raw), origin))

        return await serve(request, handler)

    async def decide(request: Request) -> Response:
        rid = str(request.path_params["rid"])
        verb = str(request.path_params["verb"])
        body = await _json_body(request)
        message = body.get("message") if isinstance(body, Mapping) else None
        message = None if message is None else str(message)
        record: list[DecisionRecord] = []

        async def handler() -> Response:
            status, answer, kept = st.decide(rid, verb, message)
            record.append(kept)
            return JSONResponse(answer, status_code=status)

        def skipped(status: int) -> None:
            st.record_unprocessed_decision(rid, verb, message, status)

        response = await serve(request, handler, skipped)
        if record:
            with st._lock:
                record[0].status = response.status_code
        return response

    # --- admin ------------------------------------------------------------------------

    async def admin_seed(request: Request) -> Response:
        body = await _json_body(request)
        contacts: list[Any] = []
        if isinstance(body, Mapping) and "reward_redemptions" in body:
            items = body.get("reward_redemptions")
            raw_contacts = body.get("contacts")
            contacts = [c for c in raw_contacts or [] if isinstance(c, Mapping)]
        elif isinstance(body, Mapping):
            items = [body]
        else:
            items = body
        if not isinstance(items, list):
            return JSONResponse({"error": "send an item, an array of items, or "
                                 "{\"reward_redemptions\": [...], \"contacts\": [...]}"},
                                status_code=400)
        added = st.seed(items, contacts)
        return JSONResponse({"seeded": added, "outstanding": len(st.outstanding())},
                            status_code=201)

    async def admin_outstanding(request: Request) -> Response:
        return JSONResponse({"reward_redemptions": st.outstanding()})

    async def admin_decide(request: Request) -> Response:
        body = await _json_body(request)
        body = body if isinstance(body, Mapping) else {}
        verb = str(body.get("verb", "fulfill"))
        if verb not in ("fulfill", "refuse"):
            return JSONResponse({"error": "verb must be fulfill or refuse"}, status_code=400)
        message = body.get("message")
        status, answer, _ = st.decide(str(request.path_params["rid"]), verb,
                                      None if message is None else str(message), "admin")
        return JSONResponse(answer, status_code=status)

    async def admin_decisions(request: Request) -> Response:
        return JSONResponse({"decisions": [asdict(d) for d in st.decisions()]})

    async def admin_requests(request: Request) -> Response:
        return JSONResponse({"requests": [asdict(r) for r in st.requests()]})

    async def admin_faults(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request)
            if not isinstance(body, Mapping):
                return JSONResponse({"error": "send a JSON object"}, status_code=400)
            body = dict(body)
            queue = body.pop("queue", [])
            clear = bool(body.pop("clear_queue", False))
            try:
                if not isinstance(queue, list):
                    raise ValueError("queue must be an array of faults")
                faults = [Fault.from_json(f) for f in queue]
                st.configure(**body)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if clear:
                st.clear_faults()
            st.add_faults(*faults)
        return JSONResponse(st.knobs())

    async def admin_reset(request: Request) -> Response:
        st.reset()
        return JSONResponse({"reset": True})

    app = Starlette(routes=[
        Route(LIST_PATH, list_redemptions, methods=["GET"]),
        Route(LIST_PATH + "/{rid}/decision/{verb}", decide, methods=["POST"]),
        Route("/_standin/redemptions", admin_seed, methods=["POST"]),
        Route("/_standin/redemptions", admin_outstanding, methods=["GET"]),
        Route("/_standin/redemptions/{rid}/decide", admin_decide, methods=["POST"]),
        Route("/_standin/decisions", admin_decisions, methods=["GET"]),
        Route("/_standin/requests", admin_requests, methods=["GET"]),
        Route("/_standin/faults", admin_faults, methods=["GET", "POST"]),
        Route("/_standin/reset", admin_reset, methods=["POST"]),
    ])
    app.state.influitive = st
    return app


__all__ = ["DecisionRecord", "Fault", "InfluitiveState", "RequestRecord", "create_app"]
