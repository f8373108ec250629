"""Whether this user can write a SQLite ledger's file and folder, and if not, why.

A SQLite ledger is a file plus, while it is open, its journal next to it (``-wal`` and
``-shm`` in WAL mode): a folder this user cannot write makes every write, and in WAL mode
even a read, fail with SQLite's "unable to open database file", which names neither the
folder nor the user. ``sqlite_write_problem`` names both, before SQLite is asked. Only the
standard library: ``poller.ledger.sql`` asks it before opening a file, and
``poller.ledger.access`` builds ``reward-poller check`` on it.
"""

from __future__ import annotations

import os
from pathlib import Path


def user() -> str:
    """The user this process runs as (effective uid), by name where it has one."""
    if not hasattr(os, "geteuid"):  # pragma: no cover - POSIX only in practice
        return "this user"
    uid = os.geteuid()
    try:
        import pwd  # here, not at the top: POSIX only, absent on Windows

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # a container's uid without a passwd entry
        return f"uid {uid}"


def _writable(path: Path) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0),
                     effective_ids=effective)


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def sqlite_write_problem(path: Path) -> str | None:
    """Why this process could not write the SQLite ledger at ``path`` (creating it when it
    does not exist), or None. Root passes the permission checks, as it does in SQLite."""
    folder = path.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if _read_only_mount(folder):
        return (f"the folder {folder} is on a read-only file system: the ledger needs a "
                "writable place (move ledger.url, or mount it read-write)")
    fix = "(chown or chmod it, or point ledger.url elsewhere)"
    if path.exists() and not _writable(path):
        return f"the ledger file {path} is not writable by user {user()} {fix}"
    if _writable(folder):
        return None
    journal = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
    if path.exists() and all(j.exists() and _writable(j) for j in journal):
        return None  # the journal files exist already and can be written: enough for SQLite
    what = ("create the ledger file" if not path.exists()
            else "create its journal files (-wal, -shm) next to the ledger")
    return f"the folder {folder} is not writable by user {user()}: SQLite must {what} {fix}"
