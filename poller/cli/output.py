"""What commands print on stdout, and how: the one table renderer every command uses, JSON
with ``--json``, CSV cells that no spreadsheet runs, the ``ledger show`` timeline and the
progress shown on a terminal.

Rules (docs/cli.md, "Output"):

* stdout carries what a command prints (tables, JSON, CSV, summaries); logs, notes such as
  "showing N of M" and progress go to stderr, so a pipe sees only the data.
* A table is plain aligned text. On a terminal it is fitted to the width (``COLUMNS`` when
  set, else the terminal's): the widest columns are narrowed and their cells wrapped under
  themselves at spaces; a column of ids is never wrapped (see ``_floors``); piped, every row
  is one whole line, never cut, so ``grep`` and ``cut`` see it entire.
* Colour only on a terminal and never when ``NO_COLOR`` is set (https://no-color.org).
* Text from outside (reward names, e-mails, vendors' and Influitive's error text) is shown
  with its control characters removed: an escape sequence cannot drive the terminal and a
  CR or LF cannot break a row.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import click

from poller.logs import clean_line, stderr_line

if TYPE_CHECKING:
    from poller.domain.model import Event, LedgerEntry

T = TypeVar("T")

MIN_COLUMN = 8
"""The narrowest a column is made on a terminal; a terminal narrower than that for every
column wraps the lines itself."""


def colour_on(stream: Any = None) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set to anything non-empty."""
    stream = stream if stream is not None else sys.stdout
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def terminal_width() -> int | None:
    """The width to wrap to on a terminal (``COLUMNS`` wins), None when piped."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def cell(value: object) -> str:
    """A table cell: ``-`` for nothing, UTC times to the second, text made safe."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return clean_line(str(value))


def fit(widths: Sequence[int], room: int, floor: int = MIN_COLUMN,
        floors: Sequence[int] | None = None) -> list[int]:
    """Column widths that fit ``room`` characters (gaps excluded): the widest columns are
    narrowed to a common cap, never below ``floor`` nor below the column's own ``floors``
    entry (its longest word), so no id or other token is ever cut; when even that does not
    fit, the terminal wraps the rest."""
    if sum(widths) <= room:
        return list(widths)
    least = [min(w, max(floor, f)) for w, f in zip(widths, floors or [0] * len(widths),
                                                   strict=True)]

    def sized(cap: int) -> list[int]:
        return [max(min(w, cap), f) for w, f in zip(widths, least, strict=True)]

    low, high = floor, max(widths)
    while low < high:  # the largest cap that fits
        cap = (low + high + 1) // 2
        if sum(sized(cap)) <= room:
            low = cap
        else:
            high = cap - 1
    return sized(low)


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


def _floors(names: Sequence[str], cells: Sequence[Sequence[str]], natural: Sequence[int],
            room: int) -> list[int]:
    """How narrow each column may be made. A column of single words (ids, order numbers,
    e-mail addresses, states) is never wrapped at all: a copied "ORD00000" + "0020" finds
    nothing. Text columns (reasons, names) wrap at spaces, never narrower than their longest
    word while the table can fit that way; when it cannot, a text column's long word (a
    quoted escape sequence, a URL) is what gets cut, never an id column."""
    solid = [all(" " not in row[i] for row in cells) for i in range(len(names))]
    words = [max([_longest_word(h), *(_longest_word(r[i]) for r in cells)])
             for i, h in enumerate(names)]
    floors = [n if s else w for n, s, w in zip(natural, solid, words, strict=True)]
    if sum(min(n, max(MIN_COLUMN, f)) for n, f in zip(natural, floors, strict=True)) > room:
        floors = [f if s else 0 for f, s in zip(floors, solid, strict=True)]
    return floors


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
          emphasise: dict[str, str] | None = None) -> str:
    """Aligned columns. On a terminal a table wider than it is narrowed, the widest columns
    first, and their cells wrapped under themselves; piped, every row is one whole line.
    ``emphasise`` colours cells equal to a key (e.g. ``FAIL``) when colour is on."""
    cells = [[cell(v) for v in row] for row in rows]
    names = [h.upper() for h in headers]
    natural = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(names)]
    width = terminal_width()
    widths = natural
    if width:
        widths = fit(natural, width - 2 * (len(names) - 1),
                     floors=_floors(names, cells, natural, width - 2 * (len(names) - 1)))
    colour = colour_on()
    marks = emphasise or {}

    def lines(row: Sequence[str], header: bool = False) -> list[str]:
        if not width:
            parts = [[c] for c in row]
        else:
            # A word is cut only when it is longer than its column (see _floors).
            parts = [textwrap.wrap(c, w, break_on_hyphens=False) or [""] if len(c) > w
                     else [c] for c, w in zip(row, widths, strict=True)]
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

    result = lines(names, header=True)
    for row in cells:
        result += lines(row)
    return "\n".join(result)


def shown_of(shown: int, total: int, hint: str = "--limit") -> None:
    """Say on stderr that a listing stopped before the end (stdout stays pure data)."""
    if shown < total:
        stderr_line("cli.rows.limited", f"showing {shown} of {total} (raise {hint} to see more)",
                    level="info", shown=shown, total=total)


# --- JSON and CSV ------------------------------------------------------------------------


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, default=_json_default, indent=2, sort_keys=False))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection")."""


def csv_cell(value: object) -> object:
    """A CSV value a spreadsheet shows as text: a cell that starts like a formula gets a
    leading apostrophe (amounts are positive, so no number is changed)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


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
        "message": entry.message,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
    }
    if payload:
        out["payload"] = dict(entry.payload)
    return out


# --- ledger show: the timeline ------------------------------------------------------------


def elapsed(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"+{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"+{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"+{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"+{days}d{hours:02d}h"


def timeline(events: Sequence[Event]) -> str:
    """The events as a story: when, how long after the step before, the state it reached
    (``from -> to`` when it did not simply follow on), who moved it (a person's name for an
    operator command, the worker's id otherwise) and what happened (an operator's message
    included)."""
    rows: list[list[object]] = []
    previous: Event | None = None
    for ev in events:
        after = "" if previous is None else elapsed(ev.at - previous.at)
        to = ev.to_state.value
        follows = previous is None or ev.from_state in (None, previous.to_state)
        moved = to if follows or ev.from_state is None else f"{ev.from_state.value} -> {to}"
        # Events written before a route without a product was described without one read
        # "(product None, ...)": shown as they are written now.
        detail = ev.detail.replace("(product None, ", "(")
        rows.append([f"{ev.at:%Y-%m-%d %H:%M:%S}", after, moved, ev.actor, detail])
        previous = ev
    text = table(["at (utc)", "after", "state", "by", "what happened"], rows)
    if len(events) > 1:
        took = elapsed(events[-1].at - events[0].at)[1:]
        text += (f"\n\n{len(events)} events over {took}, from {events[0].to_state.value} "
                 f"to {events[-1].to_state.value}")
    return text


# --- progress -----------------------------------------------------------------------------


PROGRESS_FROM = 20
"""A backlog this long or longer gets a progress line on a terminal."""


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
    worker's cycle). Only on a terminal and only for a backlog."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.total = 0
        self.done = 0
        self.on = sys.stderr.isatty()
        self._shown = False

    def start(self, total: int) -> None:
        self.total, self.done = total, 0

    def step(self) -> None:
        self.done += 1
        if self.on and self.total >= PROGRESS_FROM:
            sys.stderr.write(f"\r{self.label} {self.done} of {self.total}")
            sys.stderr.flush()
            self._shown = True

    def finish(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._shown = False
