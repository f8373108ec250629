"""The Influitive (AdvocateHub) reward API over HTTP, behind ``RedemptionSource``. What is
confirmed, what is assumed and how AWS WAF's answers are told apart: docs/influitive.md.
Retries are ``poller.transport.send``'s."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast
from urllib.parse import quote

import httpx
import structlog

from poller.core.budget import BudgetWaitAborted, RequestBudget
from poller.domain.errors import (
    AlreadyDecided,
    ConfigError,
    SourceAuthError,
    SourceBlocked,
    SourceUnavailable,
)
from poller.domain.model import PollResult, Redemption
from poller.sources import USER_AGENT, checked_base_url, error_text, failure, scrub
from poller.sources.influitive.wire import PageItems, parse_items
from poller.transport import ApiClient, RetryPolicy, retry_after_of, send

log = structlog.get_logger(__name__)

ALREADY_DECIDED_STATUSES = frozenset({404, 409, 422})
"""Assumed (docs/influitive.md). A 404 is also what an unknown route answers, so a wrong
``refuse_verb`` looks like "already decided" too: these answers mean *perhaps* decided, never
proof (the next complete poll confirms)."""

_ERROR_KEYS = ("errors", "error", "message")
_HEADER_VALUE_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")


def _waf_action(response: httpx.Response) -> str | None:
    value = response.headers.get("x-amzn-waf-action")
    if value is None:
        return None
    # Server text that ends up in messages: only the characters an action name has.
    return re.sub(r"[^a-z0-9_-]", "", value.lower())[:32] or "present"


def _has_token_realm(response: httpx.Response) -> bool:
    """``WWW-Authenticate: Token realm=Api`` (quotes, case and spacing tolerated)."""
    for value in response.headers.get_list("WWW-Authenticate"):
        normalised = re.sub(r"\s*=\s*", "=", value.replace('"', "").lower()).strip()
        if normalised.startswith("token") and re.search(r"\brealm=api\b", normalised):
            return True
    return False


def _looks_like_html(response: httpx.Response) -> bool:
    if "html" in response.headers.get("Content-Type", "").lower():
        return True
    return response.content[:64].lstrip().lower().startswith((b"<!doctype", b"<html"))


def blocked_reason(response: httpx.Response) -> str | None:
    """Why this answer is Influitive's firewall (AWS WAF) and not Influitive, or None: a
    block, a challenge or a CAPTCHA applied nothing and says nothing about the credentials."""
    action = _waf_action(response)
    if action is not None:
        return f"HTTP {response.status_code}, x-amzn-waf-action: {action}"
    if response.status_code == 403 and (
            not _has_token_realm(response) or _looks_like_html(response)):
        detail = "an HTML page" if _looks_like_html(response) else "no Token realm"
        return f"HTTP 403 with {detail}"
    return None


def _is_json(response: httpx.Response) -> bool:
    if _looks_like_html(response):
        return False
    try:
        response.json()
    except (ValueError, RecursionError):
        return False
    return True


def _check_auth(status: int) -> None:
    if status in (401, 403):
        raise SourceAuthError(f"Influitive rejected the API token or org id (HTTP {status})")


class _PageFailed(Exception):
    """One list page could not be read after the transport's retries."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def unavailable(self) -> SourceUnavailable:
        return SourceUnavailable(
            f"Influitive redemption list could not be read: {self}", self.retry_after)


class _CappedReader:
    """What the retry loop calls for a list page: the GET, with the body read in chunks and
    abandoned at the cap, so a huge page never sits in memory whole."""

    def __init__(self, client: httpx.Client, cap: int, page: int) -> None:
        self._client = client
        self._cap = cap
        self._page = page

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        request = self._client.build_request(method, url, **kwargs)
        response = self._client.send(request, stream=True)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():  # decoded: the size that reaches memory
                size += len(chunk)
                if size > self._cap:
                    raise _PageFailed(f"page {self._page} is larger than [influitive] "
                                      f"max_page_bytes ({self._cap} bytes); not read")
                chunks.append(chunk)
        finally:
            response.close()
        # The body is already decoded: drop the headers that would make httpx decode again.
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length",
                                        "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks),
                              request=request)


class InfluitiveClient:
    """``RedemptionSource`` over the Influitive HTTP API. The token is held only in the HTTP
    client's headers: no attribute, message or log line carries it."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        org_id: str,
        *,
        policy: RetryPolicy = RetryPolicy(),
        max_pages: int = 4000,
        refuse_verb: str = "refuse",
        list_path: str = "/reward_redemptions",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget: RequestBudget | None = None,
        max_page_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        """``budget``: every request (each retry included) takes a unit from it first, so
        all workers on one ledger stay under Influitive's firewall limit together."""
        checked_base_url(base_url, "influitive")
        for key, value in (("api_token", api_token), ("org_id", org_id)):
            if not isinstance(value, str) or not _HEADER_VALUE_RE.match(value.strip()):
                raise ConfigError(f"influitive {key} is empty or has characters not allowed")
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

    @property
    def _token(self) -> str:
        return str(self._http.headers.get("Authorization", "")).partition(" ")[2]

    def _said(self, response: httpx.Response) -> str:
        """`` (what Influitive said)`` about an error answer, or ""."""
        detail = error_text(response, _ERROR_KEYS, self._token)
        return f" ({detail})" if detail else ""

    def __repr__(self) -> str:
        base = self._http.base_url
        port = f":{base.port}" if base.port else ""
        shown = f"{base.scheme}://{base.host}{port}{base.path.rstrip('/')}"
        return (f"InfluitiveClient(base_url={shown!r}, "
                f"refuse_verb={self._refuse_verb!r}, max_pages={self._max_pages})")

    def close(self) -> None:
        self._http.close()

    # --- poll -------------------------------------------------------------------------

    def poll(self) -> PollResult:
        """Every page read, then returned at once (``--dry-run``, ``check``)."""
        found: list[Redemption] = []
        result = self.poll_pages(found.extend)
        return replace(result, redemptions=tuple(found), streamed=0)

    def poll_pages(self, on_page: Callable[[Sequence[Redemption]], None]) -> PollResult:
        """``PagedSource.poll_pages``: a redemption seen earlier in this poll is not handed
        over again, and only ids are kept, so memory does not grow with the backlog."""
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
                body, page = self._read_page(url, pages + 1)
            except _PageFailed as exc:
                if pages == 0:  # the caller says so, once (the error names the page)
                    raise exc.unavailable() from exc
                incomplete = str(exc)
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
                incomplete = str(exc)
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
            redemptions=(), streamed=len(found), complete=incomplete is None, pages=pages,
            requests=self._requests - first_request, rejected=tuple(rejected),
        )
        log.info(
            "influitive.poll.done", pages=pages, requests=result.requests,
            redemptions=len(found), rejected=len(rejected),
            duplicates=duplicates, complete=result.complete,
        )
        return result

    def _read_page(self, url: httpx.URL, page: int) -> tuple[Any, PageItems]:
        """The decoded JSON body of one list page and its items, or _PageFailed /
        SourceAuthError / SourceBlocked."""
        reader = _CappedReader(self._http, self._max_page_bytes, page)
        try:
            response = send(cast(httpx.Client, reader), "GET", str(url), policy=self._policy,
                            sleep=self._sleep)
        except httpx.HTTPError as exc:  # e.g. an unusable next link
            raise _PageFailed(f"page {page}: {failure(exc)}") from exc
        status = response.status_code
        blocked = blocked_reason(response)
        if blocked is not None:
            # Not a page, and not a verdict on the token: the firewall stopped the request.
            log.warning("influitive.poll.blocked", page=page, answer=blocked)
            raise SourceBlocked(
                f"blocked by Influitive's firewall on page {page} ({blocked}); "
                "retrying after a backoff", retry_after_of(response),
            )
        _check_auth(status)
        if not 200 <= status < 300:
            raise _PageFailed(f"page {page}: HTTP {status}{self._said(response)}",
                              retry_after_of(response))
        try:
            body = response.json()
        except (ValueError, RecursionError) as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise _PageFailed(
                f"page {page} is not JSON (HTTP {status}, {scrub(kind, self._token)})"
            ) from exc
        try:
            return body, parse_items(body, page)
        except ValueError as exc:
            raise _PageFailed(f"page {page} has the wrong shape: {exc}") from exc

    def _link(self, body: Any, name: str, current: httpx.URL, page: int) -> httpx.URL | None:
        """``links.<name>`` resolved against the current page; None when absent or empty.
        Raises _PageFailed for a link that cannot or must not be followed (our token goes
        only to the configured host)."""
        links = body.get("links") if isinstance(body, dict) else None
        raw = links.get(name) if isinstance(links, dict) else None
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
            raise _PageFailed(f"page {page}: links.{name} leaves the API host "
                              f"({target.scheme}://{target.host}); not followed")
        return target

    # --- decisions ----------------------------------------------------------------------

    def fulfill(self, redemption_id: str, message: str) -> None:
        self._decide(redemption_id, "fulfill", message)

    def refuse(self, redemption_id: str, message: str) -> None:
        self._decide(redemption_id, self._refuse_verb, message)

    def _decide(self, redemption_id: str, verb: str, message: str) -> None:
        """POST a decision and classify the answer (the table in docs/influitive.md). Only
        a 2xx that is Influitive's own JSON counts as done."""
        if not redemption_id or redemption_id in {".", ".."}:
            raise ValueError(f"redemption id {redemption_id!r} cannot be decided")
        path = f"{self._decision_base}/{quote(redemption_id, safe='')}/decision/{verb}"
        what = f"Influitive {verb} of redemption {redemption_id}"
        try:
            response = send(self._http, "POST", path, policy=self._policy, sleep=self._sleep,
                            json={"message": message})
        except httpx.HTTPError as exc:
            log.warning("influitive.decision.unavailable", redemption_id=redemption_id,
                        verb=verb, error=failure(exc))
            raise SourceUnavailable(f"{what} failed: {failure(exc)}") from exc
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
        suffix = self._said(response)
        _check_auth(status)
        if status in ALREADY_DECIDED_STATUSES:
            log.info("influitive.decision.already_decided", redemption_id=redemption_id,
                     verb=verb, status=status)
            hint = ""
            if status == 404:
                hint = (f"; a 404 also answers a wrong decision route: check [influitive] "
                        f"refuse_verb (now {self._refuse_verb!r})")
            raise AlreadyDecided(f"{what}: perhaps already decided (HTTP {status}){suffix}; "
                                 f"only a complete poll without it confirms that{hint}")
        log.warning("influitive.decision.unavailable", redemption_id=redemption_id,
                    verb=verb, status=status)
        raise SourceUnavailable(f"{what} failed: HTTP {status}{suffix}", retry_after_of(response))
