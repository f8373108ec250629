"""The daemon, composed: builds the worker (``App``) with the daemon's metrics, the problem
board ``/healthz`` shows, the scheduler, the alerts, the listener and its webhook receivers,
and hands them to ``poller.daemon.service.serve``. Only ``reward-poller run`` (without
``--run-once``) imports this module: it is what loads the scheduler, the HTTP server and
the metrics library."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog
from starlette.routing import BaseRoute

from poller.compose import App, alerter_for
from poller.config import Config
from poller.config.sections import parse_listen
from poller.console.app import app_backend, check_bind, mount
from poller.daemon import service
from poller.daemon.alerts import problem_line
from poller.daemon.audit_job import AuditJob
from poller.daemon.listener import Health, ProblemBoard, create_app, webhook_routes
from poller.daemon.metrics import Recorder
from poller.daemon.runner import HttpServer
from poller.daemon.scheduler import Daemon, Notifier, schedule_audit

log = structlog.get_logger("poller.service")

RouteFactory = Callable[[App], Sequence[BaseRoute]]
"""Builds extra routes for the listener (webhook receivers) from the running App."""


def problem_board(config: Config) -> ProblemBoard:
    """What ``/healthz`` shows of the operator-facing problems cycles met: each until no cycle
    has met it for two intervals or the longest retry backoff."""
    max_pages = config.influitive.max_pages
    return ProblemBoard(
        keep_seconds=max(2 * config.schedule.interval_seconds,
                         config.retry.max_backoff_seconds),
        describe=lambda p: problem_line(p, max_pages=max_pages),
    )


def serve(config: Config, *, routes: RouteFactory | None = None,
          notifier: Notifier | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; returns its exit code."""
    notifier = notifier or Notifier.from_environment()
    recorder = Recorder()
    board = problem_board(config)
    max_pages = config.influitive.max_pages
    with App(config, recorder=recorder) as app:
        daemon = Daemon(
            recorder.timed(app.worker.run_cycle),
            interval_seconds=config.schedule.interval_seconds, stop=app.stop,
            notifier=notifier,
            explain=lambda report, error: service.failure_fields(report, error, max_pages),
        )
        # The first audit a minute after the start, or after one interval when that is
        # shorter: a daemon started with a short interval shows its audit's metrics soon.
        schedule_audit(daemon.scheduler, AuditJob(config, app.ledger.engine, recorder),
                       config.audit.interval, first_after=min(60.0, config.audit.interval))

        def listen(nudge: Callable[[], None]) -> HttpServer | None:
            return listener(config, app, recorder, with_webhooks(config, routes, nudge), board)

        return service.serve(
            daemon=daemon, ledger=app.ledger, recorder=recorder,
            alerter=alerter_for(config, app.ledger), board=board, max_pages=max_pages,
            listen=listen,
        )


def with_webhooks(
    config: Config, routes: RouteFactory | None, nudge: Callable[[], None]
) -> RouteFactory | None:
    """Add the webhook receivers whose secret is set to the listener's routes."""
    w = config.webhooks
    if w.influitive_secret is None and w.influenceio_secret is None:
        return routes
    if not config.server.listen:
        log.warning("service.webhooks.no_listener",
                    reason="webhook secrets are set but [server] listen is not: no receiver runs")
        return routes

    def factory(app: App) -> Sequence[BaseRoute]:
        extra = list(routes(app)) if routes else []
        return [*extra, *webhook_routes(
            influitive_secret=w.influitive_secret.get_secret_value()
            if w.influitive_secret else None,
            influenceio_secret=w.influenceio_secret.get_secret_value()
            if w.influenceio_secret else None,
            ledger=app.ledger, nudge=nudge, max_body=w.max_body_bytes,
            body_timeout=config.server.body_timeout_seconds,
        )]

    return factory


def listener(
    config: Config, app: App, recorder: Recorder, routes: RouteFactory | None,
    board: ProblemBoard | None = None,
) -> HttpServer | None:
    """The started listener of ``[server] listen`` (``/healthz``, ``/metrics`` and
    ``routes``), or None when it is unset."""
    if not config.server.listen:
        if config.console.enabled:
            log.warning("service.console.no_listener",
                        reason="[console] enabled is set but [server] listen is not")
        return None
    health = Health(interval_seconds=config.schedule.interval_seconds,
                    last_success=lambda: recorder.last_successful_poll, problems=board)
    extra = list(routes(app)) if routes else []
    if config.console.enabled:  # docs/console.md
        check_bind(parse_listen(config.server.listen)[0], config.console)
        extra.append(mount(app_backend(app, config.console), config.console))
    server = HttpServer(
        create_app(health, recorder, extra_routes=extra),
        config.server.listen, config.server.limits(),
    )
    server.start()
    return server
