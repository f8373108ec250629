"""The console's ASGI app: pages, log-in, the actions, and the headers every answer carries.

Mounted at ``/console`` (by the daemon's listener, or by ``reward-poller console``). Every
page needs a signed-in user; every POST needs the form's CSRF token (403 otherwise); the
actions need the ``operator`` role (403 for a ``viewer``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poller.config.sections import ConsoleSettings, is_loopback
from poller.console import actions, auth, data
from poller.console.chart import spend_svg
from poller.domain.errors import ConfigError, PollerError
from poller.ledger.audit import last_run

log = structlog.get_logger("poller.console")

MOUNT = "/console"
MAX_FORM_BYTES = 64 * 1024

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

_PACKAGE = resources.files("poller.console")


class SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every answer (pages, errors, the
    stylesheet), and ``Cache-Control: no-store`` to all but the stylesheet."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(k, v) for k, v in HEADERS if k not in names]
                if not static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _fmt_time(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt_age(value: timedelta | None) -> str:
    if value is None:
        return "none"
    seconds = int(value.total_seconds())
    if seconds < 3600:
        return f"{max(seconds // 60, 0)} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_PACKAGE / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _fmt_time
    env.filters["age"] = _fmt_age
    env.filters["scrub"] = data.scrub
    return env


class Console:
    """The state behind the routes: the backend, the users, the sessions, the limiter."""

    def __init__(self, backend: data.Backend, settings: ConsoleSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.users = auth.Users(
            auth.User(name=u.name, role=u.role, password_hash=u.password_hash)
            for u in settings.users)
        secret = (settings.session_secret.get_secret_value()
                  if settings.session_secret is not None else secrets.token_urlsafe(32))
        self.sessions = auth.Sessions(secret, max_age=settings.session_hours * 3600)
        self.limiter = auth.LoginLimiter(max_failures=settings.login_failures,
                                         window=settings.login_window_seconds)
        self.trusted = frozenset(settings.trusted_proxies)
        self.env = _environment()

    # --- the request's facts -------------------------------------------------------------

    def _from_proxy(self, request: Request) -> bool:
        return request.client is not None and request.client.host in self.trusted

    def secure(self, request: Request) -> bool:
        """Served over TLS: directly, or by a trusted proxy that says so."""
        if request.url.scheme == "https":
            return True
        return (self._from_proxy(request)
                and request.headers.get("x-forwarded-proto", "").lower() == "https")

    def client(self, request: Request) -> str:
        host = request.client.host if request.client is not None else "unknown"
        if self._from_proxy(request):
            forwarded = [h.strip() for h in request.headers.get("x-forwarded-for", "")
                         .split(",") if h.strip()]
            if forwarded:
                return forwarded[-1]
        return host

    # --- rendering -----------------------------------------------------------------------

    def render(self, request: Request, session: dict[str, Any], template: str, *,
               status: int = 200, **values: Any) -> HTMLResponse:
        user = self.users.get(session.get("u", "")) if session.get("u") else None
        base = request.scope.get("root_path", "").rstrip("/")
        values.setdefault("page", "")
        body = self.env.get_template(template).render(
            base=base, user=user, csrf=session.get("csrf", ""),
            flash=session.pop("flash", None), **values)
        response = HTMLResponse(body, status_code=status)
        self.save(request, response, session)
        return response

    def save(self, request: Request, response: Response, session: dict[str, Any]) -> None:
        response.set_cookie(
            auth.COOKIE, self.sessions.dump(session),
            max_age=int(self.sessions.max_age), path=request.scope.get("root_path") or "/",
            httponly=True, samesite="strict", secure=self.secure(request))

    def error(self, request: Request, session: dict[str, Any], status: int,
              why: str) -> HTMLResponse:
        return self.render(request, session, "error.html", status=status, status_code=status,
                           why=why)


Handler = Callable[[Request, dict[str, Any], auth.User], Awaitable[Response]]


def create_app(backend: data.Backend, settings: ConsoleSettings) -> ASGIApp:
    """The console, to be mounted at ``/console`` (``mount(...)`` does it)."""
    c = Console(backend, settings)

    def session_of(request: Request) -> dict[str, Any]:
        session = c.sessions.load(request.cookies.get(auth.COOKIE))
        if not session.get("csrf"):
            session["csrf"] = auth.new_csrf()
        return session

    async def form_of(request: Request) -> dict[str, str]:
        """The form's fields (the pages' forms are URL-encoded; anything else, or a body
        over 64 KiB, reads as an empty form, so it fails the CSRF check)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return {}
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return {}
        fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                           max_num_fields=20)
        return dict(fields)

    def page(*, act: bool = False) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
        def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                session = session_of(request)
                user = c.users.get(session.get("u", "")) if session.get("u") else None
                if request.method == "POST":
                    form = await form_of(request)
                    if not auth.csrf_ok(session.get("csrf"), form.get("csrf")):
                        return c.error(request, session, 403,
                                       "This form has expired or did not come from this "
                                       "console. Go back, reload the page and try again.")
                    request.state.form = form
                if user is None:
                    if request.method == "POST":
                        return c.error(request, session, 403, "Sign in first.")
                    target = request.url.path
                    response = RedirectResponse(
                        f"{request.scope.get('root_path', '').rstrip('/')}/login?next="
                        f"{quote(target if target.startswith('/') else '/')}",
                        status_code=303)
                    c.save(request, response, session)
                    return response
                if act and not user.can_act:
                    return c.error(request, session, 403,
                                   f"{user.name} may look but not act (role: viewer). Ask "
                                   "someone with the operator role.")
                return await handler(request, session, user)
            return endpoint
        return wrap

    # --- log-in ---------------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        session = session_of(request)
        return c.render(request, session, "login.html", error=None,
                        next=_safe_next(request.query_params.get("next")), name="")

    async def login(request: Request) -> Response:
        session = session_of(request)
        form = await form_of(request)
        if not auth.csrf_ok(session.get("csrf"), form.get("csrf")):
            return c.error(request, session, 403, "This form has expired. Reload the "
                           "sign-in page and try again.")
        client = c.client(request)
        next_url = _safe_next(form.get("next"))
        wait = c.limiter.blocked_for(client)
        if wait > 0:
            log.warning("console.login.limited", client=client)
            response = c.render(request, session, "login.html", status=429, next=next_url,
                                name=form.get("name", ""),
                                error=f"Too many wrong passwords. Try again in "
                                      f"{int(wait // 60) + 1} min.")
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        name, password = form.get("name", ""), form.get("password", "")
        user = await run_in_threadpool(c.users.authenticate, name, password)
        if user is None:
            delay = c.limiter.failed(client)
            log.warning("console.login.failed", client=client)
            await asyncio.sleep(delay)
            return c.render(request, session, "login.html", status=401, next=next_url,
                            name=name, error="Wrong name or password.")
        c.limiter.succeeded(client)
        log.info("console.login", user=user.name, client=client)
        session = {"u": user.name, "csrf": auth.new_csrf()}
        done = RedirectResponse(
            f"{request.scope.get('root_path', '').rstrip('/')}{next_url}", status_code=303)
        c.save(request, done, session)
        return done

    @page()
    async def logout(request: Request, session: dict[str, Any], user: auth.User) -> Response:
        response = RedirectResponse(
            f"{request.scope.get('root_path', '').rstrip('/')}/login", status_code=303)
        c.save(request, response, {"csrf": auth.new_csrf()})
        return response

    # --- pages --------------------------------------------------------------------------

    @page()
    async def overview(request: Request, session: dict[str, Any], user: auth.User) -> Response:
        view = await run_in_threadpool(data.overview, backend)
        return c.render(request, session, "overview.html", view=view, page="overview")

    @page()
    async def redemptions(request: Request, session: dict[str, Any],
                          user: auth.User) -> Response:
        rows = await run_in_threadpool(data.needing_a_person, backend)
        return c.render(request, session, "redemptions.html", rows=rows,
                        kind=data.reason_kind, suggest=data.suggested_action,
                        page="redemptions")

    def _find(request: Request) -> Any:
        return backend.ledger.get(request.path_params["source"],
                                  request.path_params["rid"])

    @page()
    async def redemption(request: Request, session: dict[str, Any],
                         user: auth.User) -> Response:
        entry = await run_in_threadpool(_find, request)
        if entry is None:
            return c.error(request, session, 404, "No such redemption in the ledger.")
        events = await run_in_threadpool(data.history, backend, entry)
        return c.render(request, session, "redemption.html", entry=entry, events=events,
                        actions=actions.available(entry), titles=actions.TITLES,
                        hints=actions.HINTS,
                        needs_message=actions.NEEDS_MESSAGE, kind=data.reason_kind,
                        suggest=data.suggested_action, page="redemptions")

    def _action(request: Request) -> actions.Action | None:
        name = request.path_params["action"]
        for known in actions.ACTIONS:
            if name == known:
                return known
        return None

    @page(act=True)
    async def preview(request: Request, session: dict[str, Any], user: auth.User) -> Response:
        action = _action(request)
        entry = await run_in_threadpool(_find, request)
        if action is None or entry is None:
            return c.error(request, session, 404, "No such redemption or action.")
        message = request.state.form.get("message", "").strip()
        if action in actions.NEEDS_MESSAGE and not message:
            session["flash"] = "Write the message the advocate will read first."
            back = RedirectResponse(_entry_url(request, entry), status_code=303)
            c.save(request, back, session)
            return back
        return c.render(request, session, "preview.html", entry=entry, action=action,
                        title=actions.TITLES[action], message=message,
                        lines=actions.preview(action, entry, message), page="redemptions")

    @page(act=True)
    async def act(request: Request, session: dict[str, Any], user: auth.User) -> Response:
        action = _action(request)
        entry = await run_in_threadpool(_find, request)
        if action is None or entry is None:
            return c.error(request, session, 404, "No such redemption or action.")
        message = request.state.form.get("message", "").strip()
        try:
            done = await run_in_threadpool(actions.perform, backend, action, entry,
                                           actor=user.name, message=message)
            session["flash"] = f"{actions.TITLES[action]}: {done.said}"
            log.info("console.action", action=action, user=user.name, source=entry.source,
                     redemption=entry.redemption_id)
        except PollerError as exc:
            session["flash"] = f"{actions.TITLES[action]} was not done: {exc}"
            log.info("console.action.refused", action=action, user=user.name,
                     source=entry.source, redemption=entry.redemption_id)
        response = RedirectResponse(_entry_url(request, entry), status_code=303)
        c.save(request, response, session)
        return response

    @page()
    async def spend(request: Request, session: dict[str, Any], user: auth.User) -> Response:
        rows = await run_in_threadpool(data.spend, backend)
        charts = [(s, spend_svg(s)) for s in rows]
        return c.render(request, session, "spend.html", charts=charts, page="spend")

    @page()
    async def audit(request: Request, session: dict[str, Any], user: auth.User) -> Response:
        summary = await run_in_threadpool(backend.audit.latest_audit)
        return c.render(request, session, "audit.html", audit=summary, page="audit")

    routes = [
        Route("/", overview, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/redemptions", redemptions, methods=["GET"]),
        Route("/redemptions/{source}/{rid}", redemption, methods=["GET"]),
        Route("/redemptions/{source}/{rid}/{action}/preview", preview, methods=["POST"]),
        Route("/redemptions/{source}/{rid}/{action}", act, methods=["POST"]),
        Route("/spend", spend, methods=["GET"]),
        Route("/audit", audit, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(_PACKAGE / "static")), name="static"),
    ]
    return SecurityHeaders(Starlette(routes=routes))


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path inside the console only (no other site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if value.startswith(MOUNT + "/") or value == MOUNT:
        value = value[len(MOUNT):] or "/"
    return value


def _entry_url(request: Request, entry: Any) -> str:
    base = request.scope.get("root_path", "").rstrip("/")
    return (f"{base}/redemptions/{quote(entry.source, safe='')}/"
            f"{quote(entry.redemption_id, safe='')}")


def mount(backend: data.Backend, settings: ConsoleSettings) -> Mount:
    """The console as a route under ``/console`` for a Starlette app (the daemon's
    listener)."""
    return Mount(MOUNT, app=create_app(backend, settings))


def standalone(backend: data.Backend, settings: ConsoleSettings) -> Starlette:
    """The console alone (``reward-poller console``): ``/console/``, and ``/`` leading
    there."""

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{MOUNT}/", status_code=303)

    return Starlette(routes=[Route("/", home), mount(backend, settings)])


def app_backend(app: Any, settings: ConsoleSettings) -> data.Backend:
    """The Backend of a running App (``poller.compose.App``, passed in so that the console
    need not import it): its ledger, vendors, worker and request budget."""
    config = app.config
    funds = (data.FundsCache(app.vendors, sorted(app.vendors.names))
             if settings.show_funds else None)
    engine = getattr(app.ledger, "engine", None)
    audit: data.AuditReader = (data.StoredAudit(lambda: last_run(engine)) if engine is not None
                               else data.NoAudit())
    return data.Backend(
        ledger=app.ledger, vendors=app.vendors, vendor_names=app.vendors.names,
        namespace=config.influitive.org_id, process=app.worker.process,
        daily_limits=dict(config.fulfillment.daily_spend_limit or {}),
        request_budget=app.request_budget, funds=funds, audit=audit,
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

