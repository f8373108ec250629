"""What commands print on stdout: aligned tables on a terminal and when piped alike (plain
text, no colour, no box drawing, so `grep`/`cut` work), or JSON with ``--json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import click

from poller.core.model import LedgerEntry


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, default=_json_default, indent=2, sort_keys=False))


def entry_dict(entry: LedgerEntry, *, payload: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "redemption_id": entry.redemption_id,
        "source": entry.source,
        "state": entry.state.value,
        "reward_id": entry.reward_id,
        "reward_name": entry.reward_name,
        "email": entry.email,
        "vendor": entry.vendor,
        "product": entry.product,
        "amount": entry.amount,
        "currency": entry.currency,
        "vendor_order_id": entry.vendor_order_id,
        "idempotency_key": entry.idempotency_key,
        "attempts": entry.attempts,
        "next_attempt_at": entry.next_attempt_at,
        "hold_reason": entry.hold_reason,
        "last_error": entry.last_error,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
    }
    if payload:
        out["payload"] = dict(entry.payload)
    return out
