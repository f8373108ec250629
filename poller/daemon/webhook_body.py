"""Strict JSON for webhook bodies: every way a body can fail to parse is a 400 with a reason.

Python's ``json`` takes ``NaN``, ``Infinity`` and ``1e400`` (which becomes ``inf``), and raises
``RecursionError``, not ``ValueError``, on a body nested thousands deep. Left alone either
ends in a 500 with a traceback, which the sender retries for ever; a 400 tells it the body
itself is wrong.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays taken: an Influence.io event is three deep, and a
bound well under the interpreter's recursion limit keeps storing and re-reading the body
(``json.dumps`` recurses too) safe."""


class BadBody(ValueError):
    """The body is not acceptable JSON; the message says why (it is returned to the sender,
    so it never quotes the body)."""


def _no_constant(name: str) -> NoReturn:
    raise BadBody(f"body has {name}, which is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadBody("body has a number too large to represent")
    return value


def _too_deep(value: Any) -> bool:
    # Iterative, so a wide or deep value cannot exhaust the stack while being measured.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or BadBody: not JSON, NaN/Infinity, a number that overflows a float,
    or nesting deeper than ``MAX_DEPTH``."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except BadBody:
        raise
    except RecursionError:
        raise BadBody(f"body is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # also UnicodeDecodeError and integers past the digit limit
        raise BadBody("body is not valid JSON") from None
    if _too_deep(value):
        raise BadBody(f"body is nested more than {MAX_DEPTH} levels deep")
    return value
