"""Terminal or pipe: wrapped on a terminal, whole lines when piped; progress bars only on a
terminal; dates on the command line."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import click
import pytest

from poller.cli import context, output
from poller.domain.model import Event
from poller.domain.states import State

LONG = "word " * 40


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tables_wrap_on_a_terminal_and_not_in_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [["1", "order", LONG.strip()]]
    piped = output.table(["id", "would", "detail"], rows)
    assert piped.splitlines()[1].endswith(LONG.strip())
    assert len(piped.splitlines()) == 2

    monkeypatch.setattr("sys.stdout", FakeTty())
    monkeypatch.setattr("shutil.get_terminal_size", lambda: __import__("os").terminal_size(
        (60, 24)))
    wrapped = output.table(["id", "would", "detail"], rows).splitlines()
    assert len(wrapped) > 2
    assert all(len(line) <= 60 for line in wrapped)
    assert wrapped[2].startswith(" " * len("ID  WOULD  "))  # under its own column


def test_the_timeline() -> None:
    t0 = datetime(2026, 11, 21, 22, 4, 46, tzinfo=UTC)
    events = [
        Event(at=t0, from_state=None, to_state=State.NEW, detail="recorded"),
        Event(at=t0 + timedelta(seconds=5), from_state=State.NEW, to_state=State.ORDERING,
              detail="ordering", actor="ana"),
        Event(at=t0 + timedelta(minutes=3, seconds=7), from_state=State.ORDERING,
              to_state=State.WAITING, detail="transient: 503"),
        Event(at=t0 + timedelta(hours=26), from_state=State.HELD, to_state=State.NEW,
              detail="an event that does not follow on"),
    ]
    lines = output.timeline(events).splitlines()
    assert lines[0].split() == ["AT", "(UTC)", "AFTER", "STATE", "BY", "WHAT", "HAPPENED"]
    assert lines[1].split() == ["2026-11-21", "22:04:46", "new", "-", "recorded"]
    assert lines[2].split()[2:5] == ["+5s", "ordering", "ana"]
    assert lines[3].split()[2:4] == ["+3m02s", "waiting"]
    assert lines[4].split()[2:5] == ["+25h56m", "held", "->"]
    assert lines[-1] == "4 events over 26h00m, from new to new"


def test_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    items = list(range(50))
    with output.progress(items, "x") as bar:
        assert bar is items
    monkeypatch.setattr("sys.stderr", FakeTty())
    with output.progress(items, "x") as bar:
        assert list(bar) == items
        assert bar is not items
    with output.progress(items[:3], "x") as bar:  # a short list needs no bar
        assert bar == items[:3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21", datetime(2026, 11, 21, tzinfo=UTC)),
        ("2026-11-21T08:30", datetime(2026, 11, 21, 8, 30, tzinfo=UTC)),
        ("2026-11-21T08:30:00Z", datetime(2026, 11, 21, 8, 30, tzinfo=UTC)),
        ("2026-11-21 10:30+02:00", datetime(2026, 11, 21, 8, 30, tzinfo=UTC)),
    ],
)
def test_dates(text: str, expected: datetime) -> None:
    assert context.UTC_DATE.convert(text, None, None) == expected


def test_bad_dates_are_usage_errors() -> None:
    with pytest.raises(click.BadParameter, match="is not a date"):
        context.UTC_DATE.convert("next week", None, None)


def test_text_from_outside_cannot_drive_the_terminal() -> None:
    from poller.logs import clean_line

    assert clean_line("Swag\x1b[31m red\x1b[0m\r\nrow\tx\x07\u202e") == "Swag red row x"
    assert clean_line("title \x1b]0;pwned\x07ok") == "title ok"
    table = output.table(["id", "reward"], [["1", "Mug\r\nINJECTED  ROW"]])
    assert table.splitlines() == ["ID  REWARD", "1   Mug INJECTED  ROW"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
     ("\tx", "'\tx"), ("\rx", "'\rx"), ("ada@example.com", "ada@example.com"),
     ("25.00", "25.00"), (None, None)],
)
def test_csv_cells_never_start_a_formula(value: str | None, shown: str | None) -> None:
    assert output.csv_cell(value) == shown


def test_wide_tables_are_fitted_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert output.fit([10, 50, 80], 200) == [10, 50, 80]
    assert output.fit([10, 50, 80], 100) == [10, 45, 45]
    assert output.fit([10, 50, 80], 10) == [8, 8, 8]  # never narrower than a few characters
    monkeypatch.setattr("sys.stdout", FakeTty())
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr("shutil.get_terminal_size", lambda: __import__("os").terminal_size(
        (40, 24)))
    lines = output.table(["id", "reward", "reason"], [["1", "xx " * 10, LONG.strip()]])
    assert all(len(line) <= 40 for line in lines.splitlines())
    assert "\x1b" not in lines


def test_a_column_is_never_narrower_than_its_longest_word() -> None:
    assert output.fit([10, 50, 80], 100, floors=[4, 50, 6]) == [10, 50, 40]
    assert output.fit([10, 50, 80], 10, floors=[4, 12, 6]) == [8, 12, 8]


def test_ids_are_never_split_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", FakeTty())
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")
    ids = [f"ORD0000000{n:02d}" for n in range(15, 25)]
    rows = [[str(4800 + n), "influitive", "fulfilled", "$25 gift card",
             f"advocate{n}@example.com", "tremendous", "25.00 USD", order,
             datetime(2026, 11, 30, 15, 44, n, tzinfo=UTC), LONG.strip()]
            for n, order in enumerate(ids)]
    text = output.table(["redemption", "source", "state", "reward", "email", "vendor",
                         "amount", "order", "updated", "reason"], rows)
    lines = text.splitlines()
    assert len(lines) > len(rows) + 1  # it was fitted (wrapped), not printed whole
    tokens = {t for line in lines for t in line.split()}
    assert set(ids) <= tokens  # every order id whole on one line
    assert {f"advocate{n}@example.com" for n in range(10)} <= tokens
    assert not any(t.startswith("ORD0") and t not in ids for t in tokens)


def test_an_event_written_with_no_product_is_shown_without_one() -> None:
    t0 = datetime(2026, 11, 21, 22, 4, 46, tzinfo=UTC)
    events = [Event(at=t0, from_state=State.NEW, to_state=State.ORDERING, actor="w",
                    detail="ordering 40 USD from manual (product None, route config:x=1)")]
    shown = output.timeline(events)
    assert "ordering 40 USD from manual (route config:x=1)" in shown
    assert "None" not in shown

