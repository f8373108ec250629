"""The console's ASGI app, mounted at ``/console``. Every page needs a signed-in user; every
POST needs the form's CSRF token (403 otherwise); the actions need the ``operator`` role."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
import structlog
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poller.config.sections import ConsoleSettings, is_loopback
from poller.config.sections import ConsoleUserSettings as User
from poller.console import auth, data
from poller.domain.errors import ConfigError, PollerError
from poller.domain.model import LedgerEntry
from poller.domain.states import UNCONFIRMED, State
from poller.ledger.audit import last_run
from poller.worker import operator

log = structlog.get_logger("poller.console")

MOUNT = "/console"
COOKIE = "reward_poller_console"
MAX_FORM_BYTES = 64 * 1024
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
           "referrer-policy": "no-referrer", "x-frame-options": "DENY"}
FORM_EXPIRED = ("This form has expired or did not come from this console. Go back, reload "
                "the page and try again.")
TITLES = {"retry": "Retry", "reorder": "Reorder", "refuse": "Refuse",
          "fulfill": "Mark fulfilled"}
NEEDS_MESSAGE = frozenset({"refuse", "fulfill"})

_PACKAGE = resources.files("poller.console")

Session = dict[str, Any]
Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Session, User], Awaitable[Response]]


# The actions: each runs what its ``ledger`` command runs; preview.html says what it will do.


def available(entry: LedgerEntry) -> list[str]:
    """The actions worth offering for ``entry`` (the operator functions check again)."""
    out = []
    if entry.state in (State.HELD, State.WAITING):
        out.append("retry")
        if entry.idempotency_key and entry.vendor:
            out.append("reorder")
    manual_pending = entry.state is State.PENDING and entry.vendor == operator.MANUAL_VENDOR
    if (not entry.state.terminal and entry.state not in UNCONFIRMED
            and entry.state is not State.REFUSING
            and (not entry.state.order_placed or manual_pending)):
        out.append("refuse")
    if operator.fulfill_refusal(entry) is None:
        out.append("fulfill")
    return out


def perform(backend: data.Backend, action: str, entry: LedgerEntry, *, actor: str,
            message: str) -> str:
    """Run the action as its ``ledger`` command does, and say what was done;
    OperatorError says why it was not."""
    ledger, vendors = backend.ledger, backend.vendors
    run = {
        "retry": partial(operator.retry, ledger, vendors),
        "reorder": partial(operator.reorder, ledger, vendors, namespace=backend.namespace),
        "refuse": partial(operator.refuse, ledger, vendors, message=message),
        "fulfill": partial(operator.fulfill, ledger, message=message),
    }[action]
    if action in NEEDS_MESSAGE and not message:
        raise operator.OperatorError("the message to the advocate must not be empty")
    done = run(source=entry.source, redemption_id=entry.redemption_id, actor=actor,
               now=datetime.now(UTC))
    if action not in NEEDS_MESSAGE:  # retry and reorder leave the rest to the next cycle
        return done.said
    final = backend.process(done.entry.pk)
    if final is None:
        return done.said
    if final.state in (State.REFUSED, State.FULFILLED):
        return f"{done.said}; Influitive has your message"
    if final.state is State.CLOSED_UPSTREAM:
        return "it was already decided at Influitive (closed upstream)"
    return (f"{done.said}; Influitive did not take it yet ({final.last_error}); the worker "
            "sends it again at the next cycle")


def secured(app: ASGIApp) -> ASGIApp:
    """``app`` with HEADERS on every answer (pages, errors, the stylesheet), and
    ``Cache-Control: no-store`` on all but the stylesheet."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if "/static/" not in scope["path"]:
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await app(scope, receive, with_headers if scope["type"] == "http" else send)

    return asgi


def _fmt_time(value: datetime | None) -> str:
    return "never" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt_age(value: timedelta | None) -> str:
    if value is None:
        return "none"
    seconds = int(value.total_seconds())
    if seconds < 3600:
        return f"{max(seconds // 60, 0)} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_PACKAGE / "templates")), autoescape=True,
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(when=_fmt_time, age=_fmt_age, scrub=data.scrub)
ENV.globals.update(kind=data.reason_kind, suggest=data.suggested_action, titles=TITLES,
                   needs_message=NEEDS_MESSAGE)


async def _form(request: Request) -> dict[str, str]:
    """The form's fields (the pages' forms are URL-encoded; anything else, or a body over
    64 KiB, reads as an empty form, so it fails the CSRF check)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                          max_num_fields=20))


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path inside the console only (no other site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if value.startswith(MOUNT + "/") or value == MOUNT:
        value = value[len(MOUNT):] or "/"
    return value


def create_app(backend: data.Backend, settings: ConsoleSettings) -> ASGIApp:
    users = auth.Users(settings.users)
    secret = (settings.session_secret.get_secret_value()
              if settings.session_secret is not None else secrets.token_urlsafe(32))
    # A session is a signed (not encrypted) cookie: the user's name and a CSRF token.
    signer = URLSafeTimedSerializer(secret, salt="reward-poller console")
    max_age = int(settings.session_hours * 3600)
    limiter = auth.LoginLimiter(max_failures=settings.login_failures,
                                window=settings.login_window_seconds)

    def from_proxy(request: Request) -> bool:
        return request.client is not None and request.client.host in settings.trusted_proxies

    def client_of(request: Request) -> str:
        if from_proxy(request):
            forwarded = [h.strip() for h in request.headers.get("x-forwarded-for", "")
                         .split(",") if h.strip()]
            if forwarded:
                return forwarded[-1]
        return request.client.host if request.client is not None else "unknown"

    def session_of(request: Request) -> Session:
        try:
            session = dict(signer.loads(request.cookies.get(COOKIE, ""), max_age=max_age))
        except BadSignature:  # none, tampered, expired or from another secret
            session = {}
        session.setdefault("csrf", auth.new_csrf())
        return session

    def save(request: Request, response: Response, session: Session) -> Response:
        secure = request.url.scheme == "https" or (  # or a trusted proxy says it is
            from_proxy(request) and request.headers.get("x-forwarded-proto", "").lower() == "https")
        response.set_cookie(
            COOKIE, signer.dumps(session), max_age=max_age, httponly=True, samesite="strict",
            path=request.scope.get("root_path") or "/", secure=secure)
        return response

    def render(request: Request, session: Session, template: str, *, status: int = 200,
               **values: Any) -> Response:
        values.setdefault("page", "")
        body = ENV.get_template(template).render(
            base=request.scope.get("root_path", "").rstrip("/"), csrf=session["csrf"],
            user=users.get(session.get("u", "")), flash=session.pop("flash", None), **values)
        return save(request, HTMLResponse(body, status_code=status), session)

    def error(request: Request, session: Session, status: int, why: str) -> Response:
        return render(request, session, "error.html", status=status, status_code=status,
                      why=why)

    def redirect(request: Request, session: Session, path: str) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        return save(request, RedirectResponse(root + path, status_code=303), session)

    def page(handler: Handler, *, act: bool = False) -> Endpoint:
        """``handler`` for a signed-in user (``act``: an operator), its form's token checked."""
        async def endpoint(request: Request) -> Response:
            session = session_of(request)
            user = users.get(session.get("u", ""))
            if request.method == "POST":
                request.state.form = await _form(request)
                if not auth.csrf_ok(session["csrf"], request.state.form.get("csrf")):
                    return error(request, session, 403, FORM_EXPIRED)
            if user is None:
                if request.method == "POST":
                    return error(request, session, 403, "Sign in first.")
                return redirect(request, session, f"/login?next={quote(request.url.path)}")
            if act and user.role != "operator":
                return error(request, session, 403, f"{user.name} may look but not act (role: "
                             "viewer). Ask someone with the operator role.")
            return await handler(request, session, user)
        return endpoint

    async def login(request: Request) -> Response:
        session = session_of(request)
        if request.method == "GET":
            return render(request, session, "login.html", error=None, name="",
                          next=_safe_next(request.query_params.get("next")))
        form = await _form(request)
        if not auth.csrf_ok(session["csrf"], form.get("csrf")):
            return error(request, session, 403, FORM_EXPIRED)
        client = client_of(request)
        name, next_url = form.get("name", ""), _safe_next(form.get("next"))
        again = partial(render, request, session, "login.html", next=next_url, name=name)
        wait = limiter.blocked_for(client)
        if wait > 0:
            log.warning("console.login.limited", client=client)
            response = again(status=429, error="Too many wrong passwords. Try again in "
                                               f"{int(wait // 60) + 1} min.")
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        user = await run_in_threadpool(users.authenticate, name, form.get("password", ""))
        if user is None:
            log.warning("console.login.failed", client=client)
            await asyncio.sleep(limiter.failed(client))
            return again(status=401, error="Wrong name or password.")
        limiter.succeeded(client)
        log.info("console.login", user=user.name, client=client)
        return redirect(request, {"u": user.name, "csrf": auth.new_csrf()}, next_url)

    async def logout(request: Request, session: Session, user: User) -> Response:
        return redirect(request, {"csrf": auth.new_csrf()}, "/login")

    reads: dict[str, Callable[[], dict[str, Any]]] = {
        "overview": lambda: {"view": data.overview(backend)},
        "redemptions": lambda: {"rows": data.needing_a_person(backend)},
        "spend": lambda: {"charts": [(s, data.chart(s)) for s in data.spend(backend)]},
        "audit": lambda: data.audit(backend),
    }

    def show(name: str) -> Endpoint:
        async def endpoint(request: Request, session: Session, user: User) -> Response:
            values = await run_in_threadpool(reads[name])
            return render(request, session, f"{name}.html", page=name, **values)
        return page(endpoint)

    def find(request: Request) -> LedgerEntry | None:
        return backend.ledger.get(request.path_params["source"], request.path_params["rid"])

    async def redemption(request: Request, session: Session, user: User) -> Response:
        entry = await run_in_threadpool(find, request)
        if entry is None:
            return error(request, session, 404, "No such redemption in the ledger.")
        events = await run_in_threadpool(backend.ledger.events, entry.pk)
        return render(request, session, "redemption.html", entry=entry, events=events,
                      actions=available(entry), page="redemptions")

    async def decide(request: Request, session: Session, user: User) -> Response:
        """An action's preview (``.../preview``), or the action itself (the preview's
        button); either way back to the redemption when it cannot go on."""
        action = request.path_params["action"]
        entry = await run_in_threadpool(find, request)
        if action not in TITLES or entry is None:
            return error(request, session, 404, "No such redemption or action.")
        title, message = TITLES[action], request.state.form.get("message", "").strip()
        back = "/redemptions/" + "/".join(quote(part, safe="") for part in
                                          (entry.source, entry.redemption_id))
        if request.url.path.endswith("/preview"):
            if action in NEEDS_MESSAGE and not message:
                session["flash"] = "Write the message the advocate will read first."
                return redirect(request, session, back)
            return render(request, session, "preview.html", entry=entry, action=action,
                          title=title, message=message, page="redemptions")
        try:
            said = await run_in_threadpool(partial(perform, backend, action, entry,
                                                   actor=user.name, message=message))
            session["flash"], event = f"{title}: {said}", "console.action"
        except PollerError as exc:
            session["flash"], event = f"{title} was not done: {exc}", "console.action.refused"
        log.info(event, action=action, user=user.name, source=entry.source,
                 redemption=entry.redemption_id)
        return redirect(request, session, back)

    return secured(Starlette(routes=[
        Route("/", show("overview")),
        *(Route(f"/{name}", show(name)) for name in ("redemptions", "spend", "audit")),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", page(logout), methods=["POST"]),
        Route("/redemptions/{source}/{rid}", page(redemption)),
        Route("/redemptions/{source}/{rid}/{action}/preview", page(decide, act=True),
              methods=["POST"]),
        Route("/redemptions/{source}/{rid}/{action}", page(decide, act=True), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(_PACKAGE / "static"))),
    ]))


def mount(backend: data.Backend, settings: ConsoleSettings) -> Mount:
    """The console as a route under ``/console`` (for the daemon's listener)."""
    return Mount(MOUNT, app=create_app(backend, settings))


def standalone(backend: data.Backend, settings: ConsoleSettings) -> Starlette:
    """The console alone (``reward-poller console``), ``/`` leading to ``/console/``."""
    home = RedirectResponse(f"{MOUNT}/", status_code=303)
    return Starlette(routes=[Route("/", home, methods=["GET"]), mount(backend, settings)])


def runtime_backend(runtime: Any, settings: ConsoleSettings) -> data.Backend:
    """The Backend of a running ``poller.compose.Runtime`` (passed in: the console imports none)."""
    return data.Backend(
        ledger=runtime.ledger, vendors=runtime.vendors, namespace=runtime.config.influitive.org_id,
        process=runtime.worker.process, request_budget=runtime.request_budget,
        daily_limits=dict(runtime.config.fulfillment.daily_spend_limit or {}),
        funds=(data.FundsCache(runtime.vendors, runtime.vendors.names)
               if settings.show_funds else None),
        audit=partial(last_run, runtime.ledger.engine),
    )


def check_bind(host: str, settings: ConsoleSettings) -> None:
    """ConfigError when the console would listen beyond loopback without
    ``allow_remote``, or has no user to sign in."""
    if not settings.users:
        raise ConfigError("[console] has no users: add one with `reward-poller console "
                          "add-user NAME --role operator`")
    if not is_loopback(host) and not settings.allow_remote:
        raise ConfigError(
            f"[console]: the console would listen on {host}, not loopback; put it behind a "
            "reverse proxy on 127.0.0.1 (docs/console.md), or set [console] allow_remote = "
            "true")
