"""Checks on an advocate's contact details that every source applies alike."""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: in an e-mail address
# they can only be an injection (an extra header, a split CSV row, a terminal escape).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def email_problem(value: Any, who: str = "advocate") -> str | None:
    """Why the e-mail address ``value`` (as received, before any stripping) cannot be used,
    or None."""
    if isinstance(value, str) and value.strip():
        if _CONTROL.search(value):
            return f"{who} email address contains control characters (CR/LF or similar)"
        return None if "@" in value else f"{who} email address is malformed"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{who} email address is malformed"  # a number has no "@"
    return f"{who} has no email address"
