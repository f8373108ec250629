"""What commands print on stdout: the one table renderer, JSON, CSV cells no spreadsheet
runs, the ``ledger show`` timeline, and progress on a terminal (stderr). The rules (stdout
for data only, tables fitted to a terminal and whole lines when piped, colour, text from
outside made safe): docs/cli.md, "Output".
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import click

from poller.logs import clean_line, stderr_line

if TYPE_CHECKING:
    from poller.domain.model import Event, LedgerEntry

T = TypeVar("T")

MIN_COLUMN = 8  # the narrowest a column is made on a terminal
PROGRESS_FROM = 20  # a backlog this long or longer gets a progress line on a terminal
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")


def colour_on(stream: Any = None) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    return bool((stream or sys.stdout).isatty()) and not os.environ.get("NO_COLOR")


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return clean_line(str(value))


def fit(widths: Sequence[int], room: int, floors: Sequence[int] | None = None) -> list[int]:
    """Column widths that fit ``room`` characters (gaps excluded): the widest columns are
    narrowed to a common cap, never below ``MIN_COLUMN`` nor below the column's own
    ``floors`` entry (its longest word); when even that does not fit, the terminal wraps
    the rest."""
    if sum(widths) <= room:
        return list(widths)
    least = [min(w, max(MIN_COLUMN, f))
             for w, f in zip(widths, floors or [0] * len(widths), strict=True)]

    def sized(cap: int) -> list[int]:
        return [max(min(w, cap), f) for w, f in zip(widths, least, strict=True)]

    low, high = MIN_COLUMN, max(widths)
    while low < high:  # the largest cap that fits
        cap = (low + high + 1) // 2
        if sum(sized(cap)) <= room:
            low = cap
        else:
            high = cap - 1
    return sized(low)


def _floors(names: Sequence[str], cells: Sequence[Sequence[str]], natural: Sequence[int],
            room: int) -> list[int]:
    """How narrow each column may be made. A column of single words (ids, order numbers,
    e-mails) is never wrapped: a copied "ORD00000" + "0020" finds nothing. Text columns
    wrap at spaces, never narrower than their longest word while the table can fit that
    way; when it cannot, a text column's long word is what gets cut, never an id column."""
    solid = [all(" " not in row[i] for row in cells) for i in range(len(names))]
    words = [max(len(word) for text in (h, *(r[i] for r in cells)) for word in text.split() or [""])
             for i, h in enumerate(names)]
    floors = [n if s else w for n, s, w in zip(natural, solid, words, strict=True)]
    if sum(min(n, max(MIN_COLUMN, f)) for n, f in zip(natural, floors, strict=True)) > room:
        floors = [f if s else 0 for f, s in zip(floors, solid, strict=True)]
    return floors


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
          emphasise: dict[str, str] | None = None) -> str:
    """Aligned columns, fitted to a terminal (``COLUMNS`` wins) with cells wrapped under
    themselves; piped, every row is one whole line. ``emphasise`` colours cells equal to a
    key (e.g. ``FAIL``) when colour is on."""
    cells = [[cell(v) for v in row] for row in rows]
    names = [h.upper() for h in headers]
    widths = natural = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(names)]
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    if width:
        room = width - 2 * (len(names) - 1)
        widths = fit(natural, room, floors=_floors(names, cells, natural, room))
    colour = colour_on()
    marks = emphasise or {}

    def lines(row: Sequence[str], header: bool = False) -> list[str]:
        # A word is cut only when it is longer than its column (see _floors).
        parts = [textwrap.wrap(c, w, break_on_hyphens=False) or [""]
                 if width and len(c) > w else [c] for c, w in zip(row, widths, strict=True)]
        out = []
        for n in range(max(len(p) for p in parts)):
            shown = []
            for i, (part, w) in enumerate(zip(parts, widths, strict=True)):
                text = part[n] if n < len(part) else ""
                padded = text if i == len(parts) - 1 else text.ljust(w)
                shown.append(click.style(padded, fg=marks[text], bold=True)
                             if colour and text in marks and not header else padded)
            line = "  ".join(shown).rstrip()
            out.append(click.style(line, bold=True) if header and colour else line)
        return out

    return "\n".join([*lines(names, header=True), *(line for r in cells for line in lines(r))])


def shown_of(shown: int, total: int) -> None:
    """Say on stderr that a listing stopped before the end (stdout stays pure data)."""
    if shown < total:
        stderr_line("cli.rows.limited", f"showing {shown} of {total} (raise --limit to see "
                    "more)", level="info", shown=shown, total=total)


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, default=_json_default, indent=2))


def iso(value: datetime) -> str:
    """A moment in UTC to the second, as ``2026-11-21T08:30:00Z``."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def csv_cell(value: object) -> object:
    """A CSV value a spreadsheet shows as text: a cell that starts like a formula (OWASP,
    "CSV Injection") gets a leading apostrophe (amounts are positive: no number changes)."""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def emit_csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)


ENTRY_FIELDS = ("redemption_id", "source", "state", "reward_id", "reward_name", "email",
                "vendor", "product", "amount", "currency", "vendor_order_id",
                "idempotency_key", "attempts", "next_attempt_at", "hold_reason", "last_error",
                "message", "created_at", "updated_at")


def entry_dict(entry: LedgerEntry, *, payload: bool = False) -> dict[str, Any]:
    out = {name: getattr(entry, name) for name in ENTRY_FIELDS}
    out["state"] = entry.state.value
    if payload:
        out["payload"] = dict(entry.payload)
    return out


def elapsed(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if not (minutes or hours):
        return f"+{seconds}s"
    if not hours:
        return f"+{minutes}m{seconds:02d}s"
    if hours < 48:
        return f"+{hours}h{minutes:02d}m"
    return f"+{hours // 24}d{hours % 24:02d}h"


def timeline(events: Sequence[Event]) -> str:
    """The events as a story: when, how long after the step before, the state reached
    (``from -> to`` when it did not follow on), who moved it and what happened."""
    rows: list[list[object]] = []
    for n, ev in enumerate(events):
        previous = events[n - 1] if n else None
        to = ev.to_state.value
        follows = previous is None or ev.from_state in (None, previous.to_state)
        moved = to if follows or ev.from_state is None else f"{ev.from_state.value} -> {to}"
        # Events written before a route without a product was described without one read
        # "(product None, ...)": shown as they are written now.
        rows.append([f"{ev.at:%Y-%m-%d %H:%M:%S}", elapsed(ev.at - previous.at) if previous else "",
                     moved, ev.actor, ev.detail.replace("(product None, ", "(")])
    text = table(["at (utc)", "after", "state", "by", "what happened"], rows)
    if len(events) > 1:
        took = elapsed(events[-1].at - events[0].at)[1:]
        text += (f"\n\n{len(events)} events over {took}, from {events[0].to_state.value} "
                 f"to {events[-1].to_state.value}")
    return text


@contextmanager
def progress(items: Sequence[T], label: str) -> Iterator[Iterable[T]]:
    """``label: N of M`` on stderr when it is a terminal and there is a backlog; else the
    items as they are (no escape codes in a log file or a pipe)."""
    if sys.stderr.isatty() and len(items) >= PROGRESS_FROM:
        with click.progressbar(items, label=label, file=sys.stderr, show_pos=True,
                               color=colour_on(sys.stderr)) as bar:
            yield bar
    else:
        yield items


class Counter:
    """``label N of M`` on stderr, rewritten in place, for work counted by callbacks (the
    worker's ``on_progress``). Only on a terminal and only for a backlog."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if total >= PROGRESS_FROM and sys.stderr.isatty():
            sys.stderr.write(f"\r{self.label} {done} of {total}")
            sys.stderr.flush()
            self.shown = True

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
