"""The daemon, composed: the worker (``Runtime``) with the daemon's metrics, the problem board
``/healthz`` shows, the scheduler, the alerts, the listener and its webhook receivers, handed
to ``poller.daemon.service.serve``. Only ``reward-poller run`` (without ``--run-once``)
imports this module: it is what loads the scheduler, the HTTP server and the metrics."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import structlog
from starlette.routing import BaseRoute

from poller.compose import Runtime, alerter_for
from poller.config import Config
from poller.config.sections import parse_listen
from poller.console.app import check_bind, mount, runtime_backend
from poller.daemon import service
from poller.daemon.alerts import problem_line
from poller.daemon.audit_job import AuditJob
from poller.daemon.listener import Health, ProblemBoard, create_app, webhook_routes
from poller.daemon.metrics import Recorder
from poller.daemon.runner import HttpServer
from poller.daemon.scheduler import Daemon, Notifier, schedule_audit

log = structlog.get_logger("poller.service")


def serve(config: Config) -> int:
    """Run the daemon until SIGTERM/SIGINT; returns its exit code."""
    recorder = Recorder()
    max_pages = config.influitive.max_pages
    # A problem a cycle met is shown until no cycle has met it for two intervals or the
    # longest retry backoff.
    board = ProblemBoard(
        keep_seconds=max(2 * config.schedule.interval_seconds,
                         config.retry.max_backoff_seconds),
        describe=lambda p: problem_line(p, max_pages=max_pages),
    )
    with Runtime(config, recorder=recorder) as runtime:
        daemon = Daemon(
            recorder.timed(runtime.worker.run_cycle),
            interval_seconds=config.schedule.interval_seconds, stop=runtime.stop,
            notifier=Notifier.from_environment(),
            explain=lambda report, error: service.failure_fields(report, error, max_pages),
        )
        # The first audit a minute after the start, or after one interval when that is
        # shorter: a daemon started with a short interval shows its audit's metrics soon.
        schedule_audit(daemon.scheduler, AuditJob(config, runtime.ledger.engine, recorder),
                       config.audit.interval, first_after=min(60.0, config.audit.interval))
        return service.serve(
            daemon=daemon, ledger=runtime.ledger, recorder=recorder,
            alerter=alerter_for(config, runtime.ledger), board=board, max_pages=max_pages,
            listen=partial(listener, config, runtime, recorder, board),
        )


def listener(config: Config, runtime: Runtime, recorder: Recorder, board: ProblemBoard,
             nudge: Callable[[], None]) -> HttpServer | None:
    """The started listener of ``[server] listen`` (``/healthz``, ``/metrics``, the webhook
    receivers whose secret is set, the console when enabled), or None when it is unset."""
    hooks = config.webhooks
    secrets = {"influitive_secret": hooks.influitive_secret,
               "influenceio_secret": hooks.influenceio_secret}
    if not config.server.listen:
        if any(secrets.values()):
            log.warning("service.webhooks.no_listener", reason="webhook secrets are set but "
                        "[server] listen is not: no receiver runs")
        if config.console.enabled:
            log.warning("service.console.no_listener",
                        reason="[console] enabled is set but [server] listen is not")
        return None
    routes: list[BaseRoute] = []
    if any(secrets.values()):
        routes += webhook_routes(
            **{name: secret.get_secret_value() if secret else None
               for name, secret in secrets.items()},
            ledger=runtime.ledger, nudge=nudge, max_body=hooks.max_body_bytes,
            body_timeout=config.server.body_timeout_seconds,
        )
    if config.console.enabled:  # docs/console.md
        check_bind(parse_listen(config.server.listen)[0], config.console)
        routes.append(mount(runtime_backend(runtime, config.console), config.console))
    health = Health(interval_seconds=config.schedule.interval_seconds,
                    last_success=lambda: recorder.last_successful_poll, problems=board)
    server = HttpServer(create_app(health, recorder, extra_routes=routes),
                        config.server.listen, config.server.limits())
    server.start()
    return server
