"""Telling Influitive's firewall (AWS WAF) from Influitive: a block, a challenge or a
CAPTCHA is not an answer about the credentials or the request, and is reported as such."""

from __future__ import annotations

import re

import httpx

WAF_ACTION_HEADER = "x-amzn-waf-action"
"""AWS WAF marks its own answers with this header: ``challenge`` (202), ``captcha`` (405)."""
AUTH_REALM = "token realm=api"
"""Influitive's own 401 carries ``WWW-Authenticate: Token realm=Api``; a 403 without it is
the firewall's block page, not a verdict on the credentials."""


def waf_action(response: httpx.Response) -> str | None:
    """The AWS WAF action named by the answer (``challenge``, ``captcha``, ...), if any."""
    value = response.headers.get(WAF_ACTION_HEADER)
    if value is None:
        return None
    # Server text that ends up in messages: only the characters an action name has.
    return re.sub(r"[^a-z0-9_-]", "", value.lower())[:32] or "present"


def has_token_realm(response: httpx.Response) -> bool:
    """``WWW-Authenticate: Token realm=Api`` (quotes, case and spacing tolerated)."""
    for value in response.headers.get_list("WWW-Authenticate"):
        normalised = re.sub(r"\s*=\s*", "=", value.replace('"', "").lower()).strip()
        if normalised.startswith("token") and re.search(r"\brealm=api\b", normalised):
            return True
    return False


def looks_like_html(response: httpx.Response) -> bool:
    kind = response.headers.get("Content-Type", "").lower()
    if "html" in kind:
        return True
    return response.content[:64].lstrip().lower().startswith((b"<!doctype", b"<html"))


def blocked_reason(response: httpx.Response) -> str | None:
    """Why this answer is Influitive's firewall and not Influitive, or None.

    AWS WAF answers a block with 403 and an HTML page (no ``WWW-Authenticate: Token
    realm=Api``), a challenge with 202 and ``x-amzn-waf-action: challenge``, a CAPTCHA with
    405 and ``x-amzn-waf-action: captcha``. None of these applied anything.
    """
    status = response.status_code
    action = waf_action(response)
    if action is not None:
        return f"HTTP {status}, x-amzn-waf-action: {action}"
    if status == 403 and (not has_token_realm(response) or looks_like_html(response)):
        detail = "an HTML page" if looks_like_html(response) else "no Token realm"
        return f"HTTP 403 with {detail}"
    return None
