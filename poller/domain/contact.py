"""Checks on an advocate's contact details that every source applies alike."""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: in an e-mail address
# they can only be an injection (an extra header, a split CSV row, a terminal escape).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _stripped(value: Any) -> str | None:
    """``value`` as non-empty text (a number as its digits), or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return str(value)
    return None


def email_problem(value: Any, who: str = "advocate") -> str | None:
    """Why the e-mail address ``value`` (as received, before any stripping) cannot be used,
    or None. Missing, without ``@``, or with a control character (CR/LF included)."""
    email = _stripped(value)
    if email is None:
        return f"{who} has no email address"
    if isinstance(value, str) and _CONTROL.search(value):
        return f"{who} email address contains control characters (CR/LF or similar)"
    if "@" not in email:
        return f"{who} email address is malformed"
    return None
