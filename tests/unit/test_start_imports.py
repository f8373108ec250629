"""What a start loads: a worker's start pays for every module it imports, every run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from poller.ledger import open_ledger


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def test_structlog_is_imported_without_rich_even_where_rich_is_installed() -> None:
    out = _fresh("import poller, structlog.dev, sys; "
                 "print(structlog.dev.rich is None, 'rich' in sys.modules)")
    assert out == "True False"


def test_rich_stays_importable_for_whoever_wants_it() -> None:
    out = _fresh("import poller, importlib.util; "
                 "print(importlib.util.find_spec('rich') is None or "
                 "__import__('rich') is not None)")
    assert out == "True"


def test_a_sqlite_ledger_does_not_load_the_postgresql_dialect(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_ledger(url, migrate=True).close()  # as `db upgrade` leaves it; a run only checks
    out = _fresh("import sys; from poller.ledger import open_ledger; "
                 f"ledger = open_ledger({url!r}); ledger.ping(); "
                 "print(any(m.startswith('sqlalchemy.dialects.postgresql') "
                 "for m in sys.modules))")
    assert out == "False"
