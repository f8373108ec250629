"""tests/unit: the rooms on their own, in seconds (``make unit``). No network, no subprocess,
no database: each of those fails a test here. Tests that need them belong in tests/adapters
(stand-ins and cassettes), tests/ledger (SQLite and PostgreSQL) or tests/system (processes),
so this folder stays fast as it grows."""

from __future__ import annotations

import socket
import sqlite3
import sqlite3.dbapi2
import subprocess
from typing import Any

import pytest


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"tests/unit does no I/O, and this test opened {what}")
    return refuse


@pytest.fixture(autouse=True)
def _no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse("a network connection"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("a listening socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("a subprocess"))
    monkeypatch.setattr(sqlite3, "connect", _refuse("a SQLite database"))
    monkeypatch.setattr(sqlite3.dbapi2, "connect", _refuse("a SQLite database"))
