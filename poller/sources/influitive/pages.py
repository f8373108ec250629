"""One list page: read with a cap on its size, then split into redemptions (each read
by ``wire``) and the reasons items were rejected."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from poller.domain.model import Redemption
from poller.sources.influitive.wire import Unkeyable, parse_page, parse_redemption, redemption_key

log = structlog.get_logger(__name__)

DEFAULT_MAX_PAGE_BYTES = 4 * 1024 * 1024
"""One list page larger than this is not read (``[influitive] max_page_bytes``)."""


class PageTooLarge(Exception):
    """A list page's body passed ``max_page_bytes`` while it was read."""


class CappedReader:
    """What the retry loop calls for a list page: the GET, with the body read in chunks and
    abandoned at the cap, so a huge page never sits in memory whole."""

    def __init__(self, client: httpx.Client, cap: int) -> None:
        self._client = client
        self._cap = cap

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        request = self._client.build_request(method, url, **kwargs)
        response = self._client.send(request, stream=True)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():  # decoded: the size that reaches memory
                size += len(chunk)
                if size > self._cap:
                    raise PageTooLarge()
                chunks.append(chunk)
        finally:
            response.close()
        # The body is already decoded: drop the headers that would make httpx decode again.
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length",
                                        "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks),
                              request=request)



@dataclass(frozen=True, kw_only=True)
class PageItems:
    """The items of one list page, parsed: every item is either a redemption or a reason."""

    redemptions: tuple[Redemption, ...]
    rejected: tuple[str, ...]


def parse_items(body: Any, page: int = 1) -> PageItems:
    """Parse one list page body into redemptions and rejection reasons.

    Raises ValueError only when the page as a whole has the wrong shape. A single item never
    raises: an item that is not an object, or has no usable id, becomes a rejection reason;
    an item with a usable id is always kept (held with a problem if it cannot be parsed), so
    a keyable redemption is never silently lost.
    """
    raw_items, contacts = parse_page(body)
    # parse_page drops non-objects from a bare array; report them like any other bad item.
    items: list[Any] = list(body) if isinstance(body, list) else raw_items
    redemptions: list[Redemption] = []
    rejected: list[str] = []
    for index, item in enumerate(items):
        where = f"page {page} item {index}"
        if not isinstance(item, Mapping):
            rejected.append(f"{where}: item is a {type(item).__name__}, not an object")
            continue
        try:
            redemptions.append(parse_redemption(item, contacts))
        except Unkeyable as exc:
            rejected.append(f"{where}: {exc}")
        except (ValueError, TypeError, RecursionError) as exc:
            # Keyable but unparseable (parse_redemption may raise on odd numbers): record
            # it and hold it for a person rather than lose it.
            try:
                key = redemption_key(item)
            except Unkeyable as unkeyable:
                rejected.append(f"{where}: {unkeyable}")
                continue
            log.warning("influitive.item.unparseable", redemption_id=key,
                        error=type(exc).__name__)
            problem = f"payload could not be parsed ({type(exc).__name__}); check it by hand"
            redemptions.append(Redemption(id=key, raw=dict(item), problems=(problem,)))
    return PageItems(redemptions=tuple(redemptions), rejected=tuple(rejected))
