"""The Influitive (AdvocateHub) reward API over HTTP: the outstanding redemptions and the
decision endpoints, behind ``RedemptionSource``.

docs/influitive-api.md separates what is confirmed from what is assumed. Every assumption
that shapes behaviour is a constructor argument or a named constant below, so a user can
adapt to what their hub really answers without a code change. Retrying is not done here:
``poller.transport.send`` is the one retry loop of the project.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import httpx
import structlog

from poller import __version__
from poller.core.budget import BudgetWaitAborted, RequestBudget
from poller.domain.errors import (
    AlreadyDecided,
    ConfigError,
    SourceAuthError,
    SourceBlocked,
    SourceUnavailable,
)
from poller.domain.model import PollResult, Redemption
from poller.sources.influitive.firewall import blocked_reason, looks_like_html
from poller.sources.influitive.pages import (
    DEFAULT_MAX_PAGE_BYTES,
    CappedReader,
    PageTooLarge,
    parse_items,
)
from poller.transport import ApiClient, RetryPolicy, describe, retry_after_of, send

log = structlog.get_logger(__name__)

DEFAULT_BASE_URL = "https://api.influitive.com"
LIST_PATH = "/reward_redemptions"
FULFILL_VERB = "fulfill"
REFUSE_VERB = "refuse"
"""``reject`` is the older spelling (the PHP client); configurable because it is assumed."""
USER_AGENT = f"reward-poller/{__version__}"

ALREADY_DECIDED_STATUSES = frozenset({404, 409, 422})
"""Assumed: the docs say deciding twice answers "likely 422, perhaps 404". A 404 is also what
an unknown route answers, so a wrong ``refuse_verb`` looks like "already decided" too: these
answers mean *perhaps* decided, never proof (the next complete poll confirms)."""

DEFAULT_MAX_PAGES = 4000
"""Pages per poll before it is cut short (incomplete): 100,000 outstanding at the list's
observed 25 per page. Pages are recorded as they are read, so the cap bounds the time and
the request budget one poll may spend, not memory."""

MAX_ERROR_TEXT = 200
_VERB_RE = re.compile(r"^[a-z][a-z_]{0,31}$")
_HEADER_VALUE_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")


@dataclass(frozen=True, kw_only=True)
class Probe:
    """What one request for the first list page shows (``InfluitiveClient.probe``)."""

    outstanding: int
    """Redemptions on the first page."""
    more_pages: bool
    """The page links to a next one: ``outstanding`` is then a lower bound."""



class _PageFailed(Exception):
    """One list page could not be read after the transport's retries."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after



class InfluitiveClient:
    """``RedemptionSource`` over the Influitive HTTP API.

    The token is held only in the HTTP client's headers: no attribute, message or log line
    carries it.
    """

    def __init__(
        self,
        base_url: str,
        api_token: str,
        org_id: str,
        *,
        policy: RetryPolicy = RetryPolicy(),
        max_pages: int = DEFAULT_MAX_PAGES,
        refuse_verb: str = REFUSE_VERB,
        list_path: str = LIST_PATH,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget: RequestBudget | None = None,
        max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
    ) -> None:
        """``budget``: every request (each retry included) takes a unit from it first, so
        all workers on one ledger stay under Influitive's firewall limit together."""
        try:
            parsed_base = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigError("influitive base_url is not a URL") from exc
        if parsed_base.scheme not in ("http", "https") or not parsed_base.host:
            raise ConfigError("influitive base_url must be an http(s) URL with a host")
        if not isinstance(api_token, str) or not _HEADER_VALUE_RE.match(api_token.strip()):
            raise ConfigError("influitive api_token is empty or has characters not allowed")
        if not isinstance(org_id, str) or not _HEADER_VALUE_RE.match(org_id.strip()):
            raise ConfigError("influitive org_id is empty or has characters not allowed")
        if not _VERB_RE.match(refuse_verb):
            raise ConfigError(f"influitive refuse_verb {refuse_verb!r} is not a lowercase word")
        if max_pages < 1:
            raise ConfigError("influitive max_pages must be at least 1")
        if max_page_bytes < 1024:
            raise ConfigError("influitive max_page_bytes must be at least 1024")
        if not list_path.startswith("/"):
            raise ConfigError(f"influitive list_path {list_path!r} must start with '/'")
        self._policy = policy
        self._max_pages = max_pages
        self._refuse_verb = refuse_verb
        self._sleep = sleep
        self._requests = 0
        self._budget = budget
        self._max_page_bytes = max_page_bytes
        self._http = ApiClient(
            base_url=base_url,
            headers={
                "Authorization": f"Token {api_token.strip()}",
                "X_ORG_ID": org_id.strip(),
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=policy.timeout,
            transport=transport,
            follow_redirects=False,
            event_hooks={"request": [self._count_request]},
        )
        base = str(self._http.base_url).rstrip("/")
        self._list_url = httpx.URL(base + list_path)
        self._decision_base = base + list_path.split("?", 1)[0].rstrip("/")

    # --- plumbing -----------------------------------------------------------------------

    def _count_request(self, request: httpx.Request) -> None:
        """Runs before every request httpx sends, retries included: take a budget unit
        first. When none can be had, the request is not sent at all."""
        if self._budget is not None:
            try:
                waited = self._budget.take()
            except BudgetWaitAborted as exc:
                raise SourceUnavailable(f"Influitive request not sent: {exc}") from exc
            if waited >= 1.0:
                log.info("influitive.budget.waited", seconds=round(waited, 1),
                         path=request.url.path)
        self._requests += 1

    def __repr__(self) -> str:
        base = self._http.base_url
        port = f":{base.port}" if base.port else ""
        shown = f"{base.scheme}://{base.host}{port}{base.path.rstrip('/')}"
        return (
            f"InfluitiveClient(base_url={shown!r}, "
            f"refuse_verb={self._refuse_verb!r}, max_pages={self._max_pages})"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InfluitiveClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        """Server-provided text, shortened, printable, and never carrying our token."""
        auth = self._http.headers.get("Authorization", "")
        token = auth.split(" ", 1)[1] if " " in auth else ""
        if token:
            text = text.replace(token, "[redacted]")
        text = "".join(c if c.isprintable() else " " for c in text).strip()
        if len(text) > MAX_ERROR_TEXT:
            text = text[:MAX_ERROR_TEXT] + "..."
        return text

    def _error_text(self, response: httpx.Response) -> str:
        """What the server said about an error, if it said anything readable."""
        try:
            body = response.json()
        except (ValueError, RecursionError):
            return ""
        found: Any = None
        if isinstance(body, Mapping):
            for key in ("errors", "error", "message"):
                if body.get(key):
                    found = body[key]
                    break
        elif isinstance(body, str):
            found = body
        if found is None:
            return ""
        if isinstance(found, list):
            found = "; ".join(str(f) for f in found)
        elif not isinstance(found, str):
            found = json.dumps(found, default=str)
        return self._scrub(found)

    # --- poll -------------------------------------------------------------------------

    def poll(self) -> PollResult:
        """Every page read, then returned at once (``--dry-run``, ``check``)."""
        found: list[Redemption] = []
        result = self.poll_pages(found.extend)
        return replace(result, redemptions=tuple(found), streamed=0)

    def poll_pages(self, on_page: Callable[[Sequence[Redemption]], None]) -> PollResult:
        """Read the list page by page, handing each page's redemptions (not seen earlier in
        this poll) to ``on_page`` as soon as it is read; only their ids are kept, so memory
        does not grow with the number outstanding. The result's ``streamed`` counts them.
        An exception from ``on_page`` ends the poll and is raised as it is."""
        first_request = self._requests
        found: set[str] = set()
        rejected: list[str] = []
        seen: set[str] = {str(self._list_url)}
        url = self._list_url
        pages = 0
        duplicates = 0
        incomplete: str | None = None
        while True:
            try:
                body = self._get_page(url, pages + 1)
                page = parse_items(body, pages + 1)
            except (_PageFailed, ValueError) as exc:
                failure = (exc if isinstance(exc, _PageFailed)
                           else _PageFailed(f"page {pages + 1} has the wrong shape: {exc}"))
                if pages == 0:  # the caller says so, once (the error names the page)
                    raise SourceUnavailable(
                        f"Influitive redemption list could not be read: {failure.message}",
                        failure.retry_after,
                    ) from exc
                incomplete = failure.message
                break
            pages += 1
            rejected.extend(page.rejected)
            fresh: list[Redemption] = []
            for redemption in page.redemptions:
                if redemption.id in found:
                    duplicates += 1
                else:
                    found.add(redemption.id)
                    fresh.append(redemption)
            if fresh:
                on_page(fresh)
            # A page's own ``self`` link counts as read too, so that a ``next`` back to
            # "?page=1" is caught even when the first request had no page parameter.
            with contextlib.suppress(_PageFailed):
                self_url = self._link(body, "self", url, pages)
                if self_url is not None:
                    seen.add(str(self_url))
            try:
                next_url = self._link(body, "next", url, pages)
            except _PageFailed as exc:
                incomplete = exc.message
                break
            if next_url is None:
                break
            if str(next_url) in seen:
                incomplete = f"page {pages} links to a page already read ({next_url})"
                break
            if pages >= self._max_pages:
                incomplete = f"stopped at the page cap ({self._max_pages} pages)"
                break
            seen.add(str(next_url))
            url = next_url
        for reason in rejected:
            log.warning("influitive.item.rejected", reason=reason)
        if incomplete is not None:
            log.warning("influitive.poll.incomplete", reason=incomplete, pages=pages)
        result = PollResult(
            redemptions=(),
            streamed=len(found),
            complete=incomplete is None,
            pages=pages,
            requests=self._requests - first_request,
            rejected=tuple(rejected),
        )
        log.info(
            "influitive.poll.done", pages=pages, requests=result.requests,
            redemptions=len(found), rejected=len(rejected),
            duplicates=duplicates, complete=result.complete,
        )
        return result

    def _get_page(self, url: httpx.URL, page: int) -> Any:
        """The decoded JSON body of one list page, or _PageFailed / SourceAuthError /
        SourceBlocked."""
        reader = CappedReader(self._http, self._max_page_bytes)
        try:
            response = send(cast(httpx.Client, reader), "GET", str(url), policy=self._policy,
                            sleep=self._sleep)
        except PageTooLarge as exc:
            raise _PageFailed(
                f"page {page} is larger than [influitive] max_page_bytes "
                f"({self._max_page_bytes} bytes); not read"
            ) from exc
        except httpx.TransportError as exc:
            raise _PageFailed(f"page {page}: {describe(exc)}") from exc
        except httpx.HTTPError as exc:  # e.g. an unusable next link
            raise _PageFailed(f"page {page}: {type(exc).__name__}") from exc
        status = response.status_code
        blocked = blocked_reason(response)
        if blocked is not None:
            # Not a page, and not a verdict on the token: the firewall stopped the request.
            log.warning("influitive.poll.blocked", page=page, answer=blocked)
            raise SourceBlocked(
                f"blocked by Influitive's firewall on page {page} ({blocked}); "
                "retrying after a backoff", retry_after_of(response),
            )
        if status in (401, 403):
            raise SourceAuthError(
                f"Influitive rejected the API token or org id (HTTP {status})"
            )
        if not 200 <= status < 300:
            detail = self._error_text(response)
            raise _PageFailed(
                f"page {page}: HTTP {status}" + (f" ({detail})" if detail else ""),
                retry_after_of(response),
            )
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise _PageFailed(
                f"page {page} is not JSON (HTTP {status}, {self._scrub(kind)})"
            ) from exc

    def probe(self) -> Probe:
        """One request for the first list page (``reward-poller check``): are the token,
        org id and the firewall letting us in, and how much is waiting? Raises
        SourceAuthError, SourceBlocked or SourceUnavailable."""
        try:
            body = self._get_page(self._list_url, 1)
            page = parse_items(body, 1)
            more = self._link(body, "next", self._list_url, 1) is not None
        except (_PageFailed, ValueError) as exc:
            message = exc.message if isinstance(exc, _PageFailed) else f"wrong shape: {exc}"
            raise SourceUnavailable(
                f"Influitive redemption list could not be read: {message}",
                exc.retry_after if isinstance(exc, _PageFailed) else None,
            ) from exc
        return Probe(outstanding=len(page.redemptions) + len(page.rejected), more_pages=more)

    def _link(self, body: Any, name: str, current: httpx.URL, page: int) -> httpx.URL | None:
        """``links.<name>`` resolved against the current page; None when absent or empty.
        Raises _PageFailed for a link that cannot or must not be followed (our token goes
        only to the configured host)."""
        links = body.get("links") if isinstance(body, Mapping) else None
        if not isinstance(links, Mapping):
            return None
        raw = links.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if not isinstance(raw, str):
            raise _PageFailed(f"page {page}: links.{name} is a {type(raw).__name__}, not a URL")
        try:
            target = current.join(raw.strip())
        except httpx.InvalidURL as exc:
            raise _PageFailed(f"page {page}: links.{name} is not a valid URL") from exc
        base = self._http.base_url
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise _PageFailed(
                f"page {page}: links.{name} leaves the API host "
                f"({target.scheme}://{target.host}); not followed"
            )
        return target

    # --- decisions ----------------------------------------------------------------------

    def fulfill(self, redemption_id: str, message: str) -> None:
        self._decide(redemption_id, FULFILL_VERB, message)

    def refuse(self, redemption_id: str, message: str) -> None:
        self._decide(redemption_id, self._refuse_verb, message)

    def _decide(self, redemption_id: str, verb: str, message: str) -> None:
        """POST a decision and classify the answer. Only a 2xx that is Influitive's own JSON
        counts as done; a firewall answer is SourceBlocked (nothing was applied); 404, 409
        and 422 are AlreadyDecided, which means *perhaps* decided."""
        if not redemption_id or redemption_id in {".", ".."}:
            raise ValueError(f"redemption id {redemption_id!r} cannot be decided")
        path = f"{self._decision_base}/{quote(redemption_id, safe='')}/decision/{verb}"
        what = f"Influitive {verb} of redemption {redemption_id}"
        try:
            response = send(
                self._http, "POST", path, policy=self._policy, sleep=self._sleep,
                json={"message": message},
            )
        except httpx.HTTPError as exc:
            error = describe(exc) if isinstance(exc, httpx.TransportError) else type(exc).__name__
            log.warning("influitive.decision.unavailable", redemption_id=redemption_id,
                        verb=verb, error=error)
            raise SourceUnavailable(f"{what} failed: {error}") from exc
        status = response.status_code
        blocked = blocked_reason(response)
        if blocked is None and 200 <= status < 300 and status != 204 and not _is_json(response):
            # A 2xx that is not Influitive's JSON (an HTML page, an empty or cut body) is
            # not evidence that anything was applied.
            blocked = (f"HTTP {status} with a body that is not Influitive's JSON "
                       "(a firewall page?)")
        elif blocked is not None:
            blocked = f"blocked by Influitive's firewall ({blocked})"
        if blocked is not None:
            log.warning("influitive.decision.blocked", redemption_id=redemption_id, verb=verb,
                        answer=blocked)
            raise SourceBlocked(f"{what} not applied: {blocked}", retry_after_of(response))
        if 200 <= status < 300:
            # Debug: the worker's own decision.fulfilled/decision.refused says it at info.
            log.debug("influitive.decision.done", redemption_id=redemption_id, verb=verb)
            return
        detail = self._error_text(response)
        suffix = f" ({detail})" if detail else ""
        if status in (401, 403):
            raise SourceAuthError(
                f"Influitive rejected the API token or org id (HTTP {status})"
            )
        if status in ALREADY_DECIDED_STATUSES:
            log.info("influitive.decision.already_decided", redemption_id=redemption_id,
                     verb=verb, status=status)
            hint = ""
            if status == 404:
                hint = (f"; a 404 also answers a wrong decision route: check [influitive] "
                        f"refuse_verb (now {self._refuse_verb!r})")
            raise AlreadyDecided(
                f"{what}: perhaps already decided (HTTP {status}){suffix}; only a complete "
                f"poll without it confirms that{hint}"
            )
        log.warning("influitive.decision.unavailable", redemption_id=redemption_id,
                    verb=verb, status=status)
        raise SourceUnavailable(f"{what} failed: HTTP {status}{suffix}", retry_after_of(response))


def _is_json(response: httpx.Response) -> bool:
    if looks_like_html(response):
        return False
    try:
        response.json()
    except (ValueError, RecursionError):
        return False
    return True
