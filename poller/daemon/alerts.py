"""Short messages to a Slack-compatible webhook (``[alerts] webhook_url``) when a person is
needed: held redemptions, cycles failing in a row, operator-facing errors (docs/alerts.md,
docs/cli.md "run"). What was announced and when is kept in memory and in the ledger's cache,
so a restart or the next ``--run-once`` neither repeats it nor drops it. Messages pass through
the log redactor; a webhook that fails is logged and tried again with the next cycle's news:
alerting never stops the worker.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import structlog

from poller import logs
from poller.domain.errors import SourceAuthError
from poller.domain.model import LedgerEntry
from poller.domain.states import State
from poller.ports import Cache
from poller.transport import tls_context
from poller.worker.cycle import CycleReport, OperatorProblem

log = structlog.get_logger("poller.alerts")

HELD_KEY = "alerts:held:{source}:{redemption_id}"
PROBLEM_KEY = "alerts:problem:{cause}"
LAST_POST_KEY = "alerts:last-post"
FAILED_RUNS_KEY = "alerts:failed-runs"
FAILURE_ANNOUNCED_KEY = "alerts:failure-announced"

MAX_LISTED = 10
MAX_REASON = 200
HELD_SCAN = 500


class HeldSource(Cache, Protocol):
    def list(
        self, *, states: frozenset[State] | None = None, limit: int = 100,
    ) -> list[LedgerEntry]: ...


Post = Callable[[str, str, float], bool]  # (url, text, timeout) -> delivered?


def post_webhook(url: str, text: str, timeout: float) -> bool:
    """POST ``{"text": text}`` the way Slack's incoming webhooks (and Mattermost, Rocket.Chat,
    Teams' Slack-compatible endpoints) take it."""
    try:
        response = httpx.post(url, json={"text": text}, timeout=timeout,
                              verify=tls_context(url))
    except httpx.HTTPError as exc:
        # httpx names the URL in some messages: the redactor knows it as a secret.
        log.warning("alert.delivery.failed", error=logs.redactor.scrub(f"{type(exc).__name__}: "
                                                                      f"{exc}"))
        return False
    if response.status_code >= 300:
        log.warning("alert.delivery.failed", status=response.status_code)
        return False
    return True


def clip(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(logs.redactor.scrub(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def held_message(entries: Sequence[LedgerEntry], host: str) -> str:
    def line(e: LedgerEntry) -> str:
        reward = f" ({clip(e.reward_name, 60)})" if e.reward_name else ""
        return f"- {e.redemption_id}{reward}: {clip(e.hold_reason or 'no reason recorded')}"

    if len(entries) == 1:
        e = entries[0]
        head = f"reward-poller ({host}): redemption {e.redemption_id} is held and needs a person."
    else:
        head = f"reward-poller ({host}): {len(entries)} redemptions are held and need a person."
    lines = [head, *(line(e) for e in entries[:MAX_LISTED])]
    if len(entries) > MAX_LISTED:
        lines.append(f"... and {len(entries) - MAX_LISTED} more "
                     "(reward-poller ledger list --state held)")
    lines.append("See: reward-poller ledger show ID; then ledger retry, approve, fulfill or "
                 "refuse.")
    return "\n".join(lines)


# --- operator-facing problems: what happened and the fix ----------------------------------

INFLUITIVE_PROBLEMS = {
    "firewall": ("Influitive's firewall blocked our requests{waiting}",
                 "poll less often ([schedule] interval_seconds) or ask Influitive to allow "
                 "this address; the next cycles retry on their own"),
    "credentials": ("Influitive rejected the credentials{waiting}",
                    "check [influitive] api_token and org_id, then run `reward-poller check`"),
    "page_cap": ("the poll stopped at [influitive] max_pages{cap} before the end of the list, "
                 "so nothing is treated as gone", "raise [influitive] max_pages"),
}
VENDOR_PROBLEMS = {
    "credentials": ("rejected the credentials",
                    "check the credentials in [vendors.{who}], then run `reward-poller check`"),
    "funds": ("has not enough funds for the orders",
              "top up the {who} balance; waiting redemptions are ordered at a later cycle"),
    "configuration": ("does not accept what the configuration asks for",
                      "fix the [[rewards]] product, amount or currency for {who} "
                      "(`reward-poller check` shows which), then `reward-poller ledger retry "
                      "ID` for the held ones"),
    "unreachable": ("could not be reached",
                    "check the address in [vendors.{who}] and that this host can reach it "
                    "(DNS, firewall, proxy), then run `reward-poller check`; waiting "
                    "redemptions are retried at a later cycle"),
}
OTHER_VENDOR_PROBLEM = ("needs an operator", "see `reward-poller ledger list --vendor {who}`")


def problem_parts(problem: OperatorProblem, *, max_pages: int | None = None) -> tuple[str, str]:
    """(what happened, the fix) for ``problem``; the fix is "" when there is none to give."""
    who, count = problem.who, problem.redemptions
    verb = "redemptions wait" if count != 1 else "redemption waits"
    waiting = f"; {count} {verb} on it, nothing was refused" if count else ""
    if who == "influitive":
        if problem.kind not in INFLUITIVE_PROBLEMS:
            return f"Influitive: {clip(problem.detail)}{waiting}", ""
        what, fix = INFLUITIVE_PROBLEMS[problem.kind]
        return what.format(waiting=waiting, cap=f" = {max_pages}" if max_pages else ""), fix
    what, fix = VENDOR_PROBLEMS.get(problem.kind, OTHER_VENDOR_PROBLEM)
    return f"vendor {who} {what} ({clip(problem.detail, 120)}){waiting}", fix.format(who=who)


def problem_line(problem: OperatorProblem, *, max_pages: int | None = None) -> str:
    """One line naming who, what and the fix (``run --run-once``'s last line, alerts)."""
    what, fix = problem_parts(problem, max_pages=max_pages)
    return f"{what}. Fix: {fix}" if fix else what


def problem_fields(problem: OperatorProblem, *, max_pages: int | None = None) -> dict[str, Any]:
    return {"cause": problem.cause, "who": problem.who, "kind": problem.kind,
            "redemptions": problem.redemptions,
            "fix": problem_parts(problem, max_pages=max_pages)[1]}


def cycle_problems(report: CycleReport | None, max_pages: int,
                   error: BaseException | None = None) -> list[OperatorProblem]:
    """Those the report counted, Influitive rejecting the credentials (``error``), and an
    incomplete poll that read ``max_pages`` pages (it stopped at the cap)."""
    if isinstance(error, SourceAuthError):
        return [OperatorProblem(who="influitive", kind="credentials", detail=str(error))]
    if report is None:
        return []
    found = list(report.problems.values())
    if report.poll_ok and not report.poll_complete and report.pages >= max_pages:
        found.append(OperatorProblem(who="influitive", kind="page_cap",
                                     detail=f"stopped after {report.pages} pages"))
    return found


class Alerter:
    def __init__(
        self, *, webhook_url: str | None, ledger: HeldSource, failures_before_alert: int = 3,
        min_interval_seconds: float = 300.0, timeout_seconds: float = 10.0,
        post: Post = post_webhook, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        host: str | None = None,
    ) -> None:
        self._url = webhook_url
        self._ledger = ledger
        self.failures_before_alert = failures_before_alert
        self.min_interval = timedelta(seconds=min_interval_seconds)
        self.timeout = timeout_seconds
        self._post = post
        self._clock = clock
        self.host = host or socket.gethostname()
        self._memory: dict[str, tuple[str, datetime | None]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    def after_cycle(self, ok: bool, last_error: str, failures_in_a_row: int) -> None:
        """Called once per cycle (daemon or ``--run-once``). Never raises."""
        if not self.enabled:
            return
        try:
            self._failures(ok, last_error, failures_in_a_row)
            self._held()
        except Exception as exc:  # a ledger that is down, a bug: log, never stop the worker
            log.error("alert.failed", error=clip(f"{type(exc).__name__}: {exc}"))

    def problems(self, found: Sequence[OperatorProblem]) -> None:
        """Post each operator-facing problem at once, once per cause per interval (its own
        limit, so a held-redemption post just before never delays it). Never raises."""
        if not self.enabled:
            return
        for problem in found:
            try:
                if self._send(f"reward-poller ({self.host}): {problem_line(problem)}.",
                              PROBLEM_KEY.format(cause=problem.cause),
                              "alert.problem.deferred", cause=problem.cause):
                    log.info("alert.problem.posted", cause=problem.cause,
                             redemptions=problem.redemptions)
            except Exception as exc:
                log.error("alert.failed", error=clip(f"{type(exc).__name__}: {exc}"))

    def count_failed_run(self, ok: bool) -> int:
        """For ``--run-once``: failed runs in a row, kept in the cache across runs."""
        now = self._clock()
        try:
            before = int(self._ledger.cache_get(FAILED_RUNS_KEY, now) or "0")
            count = 0 if ok else before + 1
            self._ledger.cache_put(FAILED_RUNS_KEY, str(count), None)
        except Exception:  # the ledger is down: this run counts as the first failure
            return 0 if ok else 1
        return count

    def _failures(self, ok: bool, last_error: str, failures: int) -> None:
        announced = self._get(FAILURE_ANNOUNCED_KEY) is not None
        head = f"reward-poller ({self.host}):"
        if not ok and failures >= self.failures_before_alert and not announced:
            if self._send(f"{head} {failures} cycles in a row failed. Last error: "
                          f"{clip(last_error) or 'unknown'}. Nothing is lost: redemptions "
                          "wait in the ledger and are worked on once a cycle succeeds."):
                self._put(FAILURE_ANNOUNCED_KEY, "1", None)
        elif ok and announced and self._send(f"{head} cycles succeed again."):
            self._put(FAILURE_ANNOUNCED_KEY, "", self._clock())  # expired: cleared

    def _held(self) -> None:
        now = self._clock()
        held = self._ledger.list(states=frozenset({State.HELD}), limit=HELD_SCAN)
        fresh = [e for e in held if self._ledger.cache_get(_held_key(e), now) is None]
        if not fresh:
            return
        fresh.sort(key=lambda e: (e.updated_at, e.pk))
        if self._send(held_message(fresh, self.host)):
            for entry in fresh:
                self._ledger.cache_put(_held_key(entry), now.isoformat(), None)
            log.info("alert.held.posted", count=len(fresh))

    def _send(self, text: str, key: str = LAST_POST_KEY, deferred: str = "alert.deferred",
              **fields: Any) -> bool:
        """Post ``text`` unless ``key`` marks a post less than an interval ago."""
        assert self._url
        now = self._clock()
        if self._get(key) is not None:
            log.info(deferred, **fields, min_interval_seconds=self.min_interval.total_seconds())
            return False
        if not self._post(self._url, text, self.timeout):
            return False
        self._put(key, now.isoformat(), now + self.min_interval)
        return True

    def _get(self, key: str) -> str | None:
        """Memory first (works with the ledger down), then the durable cache."""
        now = self._clock()
        value, expires = self._memory.get(key, (None, None))
        if value is not None and (expires is None or expires > now):
            return value or None
        try:
            return self._ledger.cache_get(key, now) or None
        except Exception:
            return None

    def _put(self, key: str, value: str, expires_at: datetime | None) -> None:
        self._memory[key] = (value, expires_at)
        try:
            self._ledger.cache_put(key, value, expires_at)
        except Exception as exc:
            log.warning("alert.state.unsaved", key=key,
                        error=clip(f"{type(exc).__name__}: {exc}"))


def _held_key(entry: LedgerEntry) -> str:
    return HELD_KEY.format(source=entry.source, redemption_id=entry.redemption_id)
