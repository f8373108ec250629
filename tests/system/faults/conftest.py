"""Fixtures for the fault-injection suites (see ``harness.py``).

``ledger_kind`` runs a test once on SQLite and once on PostgreSQL (the server at
``REWARD_POLLER_TEST_PG_URL``'s host, database ``reward_poller_faults``). A PostgreSQL server
that is down fails those tests; nothing here is ever skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.faults.harness import LedgerKind, Ledgers, Stage, standins

SUMMARY: list[str] = []
"""Lines for the end of the pytest run: trial counts and violations (for the README)."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("fault injection")
        for line in SUMMARY:
            terminalreporter.write_line(line)


@pytest.fixture
def ledgers(tmp_path: Path) -> Iterator[Ledgers]:
    made = Ledgers(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_kind(request: pytest.FixtureRequest) -> LedgerKind:
    kind: LedgerKind = request.param
    return kind


@pytest.fixture
def stage(tmp_path: Path, ledgers: Ledgers, ledger_kind: LedgerKind) -> Iterator[Stage]:
    with standins(tmp_path, ledgers.new(ledger_kind)) as s:
        yield s


@pytest.fixture
def sqlite_stage(tmp_path: Path, ledgers: Ledgers) -> Iterator[Stage]:
    with standins(tmp_path, ledgers.new("sqlite")) as s:
        yield s
