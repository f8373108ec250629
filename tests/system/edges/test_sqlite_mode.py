"""A new SQLite ledger holds e-mail and postal addresses: it and its -wal/-shm files are
readable by their owner only, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from poller.domain.model import INFLUITIVE, Contact, Redemption
from poller.ledger import open_ledger


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_ledger_and_its_wal_and_shm_are_0600(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "ledger.db"
    ledger = open_ledger(f"sqlite:///{db}")
    try:
        ledger.record(1, [Redemption(source=INFLUITIVE, id="1", reward_id="1",
                                     reward_name="Card", contact=Contact(email="a@example.com"),
                                     raw={"id": "1"})], datetime.now(UTC))
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        for f in files:
            assert f.exists(), f
            assert _mode(f) == 0o600, f"{f.name}: {oct(_mode(f))}"
    finally:
        ledger.close()


def test_an_existing_ledger_keeps_the_mode_its_owner_chose(
    tmp_path: Path, open_umask: None
) -> None:
    db = tmp_path / "ledger.db"
    open_ledger(f"sqlite:///{db}").close()
    db.chmod(0o640)
    open_ledger(f"sqlite:///{db}").close()
    assert _mode(db) == 0o640
