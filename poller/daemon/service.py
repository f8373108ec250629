"""The daemon as ``reward-poller run`` starts it: start-up checks, then the scheduler, with
systemd notifications, metrics, the optional HTTP listener and alerts around the cycle.

Start-up checks, in order, each failing the command (exit 1, or 2 for configuration) before
systemd hears READY=1: the ledger opens (and a SQLite one migrates) and answers a query; the
listener, when ``[server] listen`` is set, binds its address. Influitive and the vendors are
not called here: the first cycle does that, and a failure there is reported by logs, metrics,
``/healthz`` and alerts without stopping the daemon.

An operator-facing error met by a cycle (``poller.daemon.alerts.cycle_problems``) is alerted at
once (once per cause per ``[alerts] min_interval_seconds``) and shown by ``/healthz`` until
no cycle has met it for the longest retry backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from poller.config import Config
from poller.daemon.alerts import (
    Alerter,
    HeldSource,
    cycle_problems,
    describe_failure,
    problem_fields,
)
from poller.daemon.notify import Notifier
from poller.worker.cycle import SOURCE_NAME as SOURCE
from poller.worker.cycle import CycleReport, OperatorProblem

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from poller.compose import App
    from poller.daemon.health import ProblemBoard
    from poller.daemon.metrics import Recorder
    from poller.daemon.runner import HttpServer

log = structlog.get_logger("poller.service")

RouteFactory = Callable[["App"], Sequence["BaseRoute"]]
"""Builds extra routes for the listener (webhook receivers) from the running App."""


def alerter_for(config: Config, ledger: HeldSource) -> Alerter:
    a = config.alerts
    return Alerter(
        webhook_url=a.webhook_url.get_secret_value() if a.webhook_url is not None else None,
        ledger=ledger, failures_before_alert=a.failures_before_alert,
        min_interval_seconds=a.min_interval_seconds, timeout_seconds=a.timeout_seconds,
    )


def _outcome(report: CycleReport | None, error: BaseException | None) -> tuple[bool, str]:
    ok = error is None and report is not None and report.ok
    return ok, "" if ok else describe_failure(report.errors if report else [], error)


def failed_the_cycle(problem: OperatorProblem) -> bool:
    """Whether ``problem`` is what makes a cycle fail (Influitive rejecting the credentials
    or its firewall blocking the poll), rather than one met by some redemptions."""
    return problem.who == SOURCE and problem.kind in ("credentials", "firewall")


def failure_fields(report: CycleReport | None, error: BaseException | None,
                   max_pages: int) -> dict[str, Any]:
    """What a failed cycle's ``cycle.failed`` line adds: the operator-facing ``cause`` and
    ``fix`` when an Influitive problem made it fail (nothing otherwise)."""
    for problem in cycle_problems(report, max_pages, error):
        if failed_the_cycle(problem):
            fields = problem_fields(problem, max_pages=max_pages)
            return {"cause": fields["cause"], "fix": fields["fix"]}
    return {}


def run_once(app: App) -> CycleReport:
    """One cycle (``run --run-once``), then the alerts it calls for. Failed runs in a row are
    counted in the ledger's cache, and a problem's once-per-interval mark is kept there too,
    so a timer's runs alert like the daemon's cycles."""
    alerter = alerter_for(app.config, app.ledger)
    report: CycleReport | None = None
    error: Exception | None = None
    try:
        report = app.worker.run_cycle()
        return report
    except Exception as exc:
        error = exc
        raise
    finally:
        if alerter.enabled and (report is not None or error is not None):  # not on Ctrl-C
            ok, why = _outcome(report, error)
            alerter.problems(cycle_problems(report, app.config.influitive.max_pages, error))
            alerter.after_cycle(ok, why, alerter.count_failed_run(ok))


def serve(config: Config, *, routes: RouteFactory | None = None,
          notifier: Notifier | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; returns its exit code."""
    from poller.compose import App
    from poller.daemon.metrics import Recorder
    from poller.daemon.scheduler import Daemon

    notifier = notifier or Notifier.from_environment()
    recorder = Recorder()
    from poller.daemon.alerts import problem_line
    from poller.daemon.health import ProblemBoard

    max_pages = config.influitive.max_pages
    board = ProblemBoard(
        keep_seconds=max(2 * config.schedule.interval_seconds,
                         config.retry.max_backoff_seconds),
        describe=lambda p: problem_line(p, max_pages=max_pages),
    )
    with App(config, recorder=recorder) as app:
        app.ledger.ping()
        recorder.set_counts(app.ledger.counts())
        alerter = alerter_for(config, app.ledger)
        daemon = Daemon(
            recorder.timed(app.worker.run_cycle),
            interval_seconds=config.schedule.interval_seconds, stop=app.stop,
            notifier=notifier,
            explain=lambda report, error: failure_fields(report, error, max_pages),
        )

        def on_cycle(report: CycleReport | None, error: BaseException | None) -> None:
            ok, why = _outcome(report, error)
            recorder.observe_cycle(ok, daemon.failures_in_a_row)
            problems = cycle_problems(report, max_pages, error)
            board.update(problems)
            for problem in problems:
                if not ok and failed_the_cycle(problem):
                    continue  # its cause and fix are in the cycle's one cycle.failed line
                log.error("cycle.problem", cause=problem.cause, who=problem.who,
                          kind=problem.kind, redemptions=problem.redemptions,
                          fix=problem_line(problem, max_pages=max_pages))
            try:
                recorder.set_counts(app.ledger.counts())
            except Exception as exc:
                log.warning("service.counts.failed", error=type(exc).__name__)
            alerter.problems(problems)
            alerter.after_cycle(ok, why, daemon.failures_in_a_row)

        daemon.on_cycle = on_cycle
        from poller.daemon.audit_job import AuditJob, schedule_audit

        # The first audit a minute after the start, or after one interval when that is
        # shorter: a daemon started with a short interval shows its audit's metrics soon.
        schedule_audit(daemon.scheduler, AuditJob(config, app.ledger.engine, recorder),
                       config.audit.interval, first_after=min(60.0, config.audit.interval))
        server = _listener(config, app, recorder, _with_webhooks(config, routes, daemon.nudge),
                           board)
        try:
            return daemon.run()
        finally:
            if server is not None:
                server.stop()


def _with_webhooks(
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
        from poller.daemon.webhooks import webhook_routes

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


def _listener(
    config: Config, app: App, recorder: Recorder, routes: RouteFactory | None,
    board: ProblemBoard | None = None,
) -> HttpServer | None:
    if not config.server.listen:
        if config.console.enabled:
            log.warning("service.console.no_listener",
                        reason="[console] enabled is set but [server] listen is not")
        return None
    from poller.daemon.health import Health
    from poller.daemon.listener import create_app
    from poller.daemon.runner import HttpServer

    health = Health(interval_seconds=config.schedule.interval_seconds,
                    last_success=lambda: recorder.last_successful_poll, problems=board)
    extra = list(routes(app)) if routes else []
    if config.console.enabled:  # docs/console.md
        from poller.console.app import app_backend, check_bind, mount
        from poller.daemon.runner import parse_listen

        check_bind(parse_listen(config.server.listen)[0], config.console)
        extra.append(mount(app_backend(app, config.console), config.console))
    server = HttpServer(create_app(health, recorder, extra_routes=extra),
                        config.server.listen, config.server.limits())
    server.start()
    return server
