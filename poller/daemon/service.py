"""The daemon as ``reward-poller run`` starts it: start-up checks (the ledger answers, the
listener binds), then the scheduler, with metrics, ``/healthz``'s problem board, the log and
alerts hearing of each cycle. ``poller.compose.daemon`` builds the parts and hands them here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from poller.daemon.alerts import Alerter, cycle_problems, problem_fields, problem_line
from poller.domain.states import State
from poller.worker.cycle import SOURCE_NAME as SOURCE
from poller.worker.cycle import CycleReport, OperatorProblem

if TYPE_CHECKING:  # the parts the daemon is handed; a run-once loads none of them
    from poller.daemon.listener import ProblemBoard
    from poller.daemon.metrics import Recorder
    from poller.daemon.runner import HttpServer
    from poller.daemon.scheduler import Daemon

log = structlog.get_logger("poller.service")

Cycle = Callable[[], CycleReport]

# Starts the listener, given the daemon's ``nudge`` (what a webhook calls for an immediate
# cycle); None when ``[server] listen`` is unset.
Listen = Callable[[Callable[[], None]], "HttpServer | None"]


class DaemonLedger(Protocol):
    def ping(self) -> None: ...

    def counts(self) -> Mapping[State, int]: ...


def _outcome(report: CycleReport | None, error: BaseException | None) -> tuple[bool, str]:
    if error is not None:
        return False, f"{type(error).__name__}: {error}"
    if report is not None and report.ok:
        return True, ""
    return False, "; ".join(report.errors if report else []) or "the cycle could not do its job"


def failed_the_cycle(problem: OperatorProblem) -> bool:
    """Whether ``problem`` made the whole cycle fail, rather than some redemptions."""
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


def run_once(cycle: Cycle, alerter: Alerter, max_pages: int) -> CycleReport:
    """One cycle (``run --run-once``), then the alerts it calls for, alerting like the
    daemon's cycles (what the alerter keeps is in the ledger's cache)."""
    report: CycleReport | None = None
    error: Exception | None = None
    try:
        report = cycle()
        return report
    except Exception as exc:
        error = exc
        raise
    finally:
        if alerter.enabled and (report is not None or error is not None):  # not on Ctrl-C
            ok, why = _outcome(report, error)
            alerter.problems(cycle_problems(report, max_pages, error))
            alerter.after_cycle(ok, why, alerter.count_failed_run(ok))


def serve(
    *, daemon: Daemon, ledger: DaemonLedger, recorder: Recorder, alerter: Alerter,
    board: ProblemBoard, max_pages: int, listen: Listen,
) -> int:
    ledger.ping()
    recorder.set_counts(ledger.counts())

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
            recorder.set_counts(ledger.counts())
        except Exception as exc:
            log.warning("service.counts.failed", error=type(exc).__name__)
        alerter.problems(problems)
        alerter.after_cycle(ok, why, daemon.failures_in_a_row)

    daemon.on_cycle = on_cycle
    server = listen(daemon.nudge)
    try:
        return daemon.run()
    finally:
        if server is not None:
            server.stop()
