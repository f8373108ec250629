"""What every measurement needs: the stand-ins in their own process, ledgers on SQLite and
PostgreSQL, a config pointing at them, bulk-seeded history, the machine's description."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.serve import KEY, ORG, TOKEN

PG_SERVER = os.environ.get("REWARD_POLLER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_DATABASE = "reward_poller_bench"
"""The benchmarks' own database: created if missing, never dropped; each run works in
schemas of its own inside it and drops them afterwards."""

PRODUCT_PAYLOAD_PAD = "x" * 180
"""Padding so a stored payload is about the size of a real one (~450 bytes of JSON)."""


# --- timing ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --- the stand-ins --------------------------------------------------------------------------


class Standins:
    """The Influitive and Tremendous stand-ins in a child process, driven over their admin
    HTTP APIs."""

    def __init__(self) -> None:
        self._procs = [self._start("influitive"), self._start("tremendous")]
        self.influitive_url, self.tremendous_url = (self._url(p) for p in self._procs)
        self._http = httpx.Client(timeout=60)

    @staticmethod
    def _start(which: str) -> subprocess.Popen[str]:
        root = Path(__file__).resolve().parent.parent
        return subprocess.Popen(
            [sys.executable, "-m", "bench.serve", which], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=root,
        )

    @staticmethod
    def _url(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("a stand-in did not start (python -m bench.serve)")
        url: str = json.loads(line)["url"]
        return url

    def close(self) -> None:
        self._http.close()
        for proc in self._procs:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> Standins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, url: str, body: Any = None) -> Any:
        response = self._http.post(url, json=body if body is not None else {})
        response.raise_for_status()
        return response.json()

    def _get(self, url: str) -> Any:
        response = self._http.get(url)
        response.raise_for_status()
        return response.json()

    # Influitive
    def reset(self, *, page_size: int = 25, vendor_delay: float = 0.0,
              vendor_rate: int | None = None) -> None:
        self._post(f"{self.influitive_url}/_standin/reset")
        self._post(f"{self.influitive_url}/_bench/reset")
        self._post(f"{self.influitive_url}/_standin/faults", {"page_size": page_size})
        t = f"{self.tremendous_url}/_standin"
        self._post(f"{t}/reset")
        self._post(f"{t}/balance", {"cents": 10**12})
        self._post(f"{t}/delay", {"seconds": vendor_delay})
        self._post(f"{t}/rate_limit", {"per_second": vendor_rate})

    def seed(self, ids: Sequence[int], reward_id: int = 37) -> None:
        items = [redemption_item(i, reward_id) for i in ids]
        for start in range(0, len(items), 1000):
            self._post(f"{self.influitive_url}/_standin/redemptions", items[start:start + 1000])

    def influitive_budget(self, requests: int | None, window: float = 300.0) -> None:
        """A rolling-window request budget at the Influitive stand-in (``bench.serve``):
        beyond ``requests`` in any ``window`` seconds, a 403 block page."""
        self._post(f"{self.influitive_url}/_bench/budget",
                   {"requests": requests, "window": window})

    def influitive_log(self) -> list[tuple[float, str, str, int]]:
        """Every Influitive API request since the last reset: (time, method, path, status),
        blocked ones included."""
        rows = self._get(f"{self.influitive_url}/_bench/requests")["requests"]
        return [(float(t), str(m), str(p), int(s)) for t, m, p, s in rows]

    def influitive_requests(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._get(f"{self.influitive_url}/_standin/requests")[
            "requests"]
        return found

    def decisions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._get(f"{self.influitive_url}/_standin/decisions")[
            "decisions"]
        return found

    def outstanding(self) -> int:
        return len(self._get(f"{self.influitive_url}/_standin/redemptions")["reward_redemptions"])

    def vendor_snapshot(self) -> dict[str, Any]:
        found: dict[str, Any] = self._get(f"{self.tremendous_url}/_standin/orders")
        return found


def redemption_item(rid: int, reward_id: int = 37) -> dict[str, Any]:
    return {
        "id": rid, "reward_id": reward_id, "reward_name": "$25 Amazon gift card",
        "points": 2500, "quantity": 1, "stage": "requested",
        "contact": {"id": 100_000 + rid, "email": f"advocate{rid}@example.com",
                    "first_name": "Advocate", "last_name": str(rid)},
    }


# --- ledgers --------------------------------------------------------------------------------


@dataclass
class Ledgers:
    """Where the ledgers of one bench run live; cleaned up at the end."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rp-bench-")))
    schemas: list[str] = field(default_factory=list)

    def sqlite(self, name: str) -> str:
        return f"sqlite:///{self.workdir / (name + '.db')}"

    def postgres(self, name: str) -> str:
        """A new, migrated schema in the bench database."""
        from sqlalchemy import create_engine, text

        from poller.ledger import migrate

        _ensure_pg_database()
        schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        engine = create_engine(f"{PG_SERVER}/{PG_DATABASE}", isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        finally:
            engine.dispose()
        self.schemas.append(schema)
        url = f"{PG_SERVER}/{PG_DATABASE}?options=-csearch_path%3D{schema}"
        migrate.upgrade(url)
        return url

    def cleanup(self) -> None:
        import shutil

        if self.schemas:
            from sqlalchemy import create_engine, text

            engine = create_engine(f"{PG_SERVER}/{PG_DATABASE}", isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    for schema in self.schemas:
                        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            finally:
                engine.dispose()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _ensure_pg_database() -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                               {"n": PG_DATABASE}):
                conn.execute(text(f'CREATE DATABASE "{PG_DATABASE}"'))
    finally:
        admin.dispose()


def open_migrated(url: str) -> Any:
    from poller.ledger import open_ledger

    return open_ledger(url, migrate=True)


def seed_history(url: str, n: int, *, batch: int = 10_000) -> float:
    """Insert ``n`` closed redemptions (fulfilled, refused, closed upstream), their events
    and their polls straight through the ledger's tables, a few transactions in all: what
    a year of a busy hub leaves behind. Returns the seconds it took."""
    import time

    from sqlalchemy import insert, text

    from poller.ledger.sql import make_engine, write_transaction
    from poller.ledger.tables import events, polls, redemptions

    began = time.perf_counter()
    engine = make_engine(url)
    now = datetime.now(UTC)
    start = now - timedelta(minutes=n)  # one a minute, ending now: the newest are today's
    n_polls = max(1, n // 20)
    try:
        with write_transaction(engine) as conn:
            poll_base = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM polls")).scalar_one()
            pk_base = conn.execute(
                text("SELECT COALESCE(MAX(pk), 0) FROM redemptions")).scalar_one()
            conn.execute(insert(polls), [
                {"id": poll_base + p + 1, "started_at": start + timedelta(minutes=20 * p),
                 "finished_at": start + timedelta(minutes=20 * p, seconds=1), "ok": True,
                 "complete": True, "seen": 20}
                for p in range(n_polls)
            ])
        for lo in range(0, n, batch):
            rows, evs = [], []
            for i in range(lo, min(n, lo + batch)):
                pk = pk_base + i + 1
                at = start + timedelta(minutes=i)
                kind = i % 20
                state = ("refused" if kind == 0 else "closed_upstream" if kind == 1
                         else "fulfilled")
                ordered = state == "fulfilled"
                payload = json.dumps({**redemption_item(10_000_000 + i),
                                      "notes": PRODUCT_PAYLOAD_PAD})
                rows.append({
                    "pk": pk, "source": "influitive", "redemption_id": f"h{i}",
                    "state": state, "payload": payload, "reward_id": "37",
                    "reward_name": "$25 Amazon gift card",
                    "email": f"advocate{10_000_000 + i}@example.com",
                    "vendor": "tremendous" if ordered else None,
                    "product": "AMZN-US" if ordered else None,
                    "amount": Decimal("25.00") if state != "closed_upstream" else None,
                    "currency": "USD" if state != "closed_upstream" else None,
                    "idempotency_key": f"rphist{i:012d}" if ordered else None,
                    "vendor_order_id": f"HIST{i:09d}" if ordered else None,
                    "attempts": 0, "next_attempt_at": None, "hold_reason": None,
                    "last_error": None,
                    "message": "Your $25 Amazon gift card is on its way." if ordered else None,
                    "lease_owner": None, "lease_until": None, "created_at": at,
                    "updated_at": at + timedelta(seconds=2),
                    "last_seen_poll": poll_base + min(n_polls, i // 20 + 1),
                })
                story = (["new", "ordering", "ordered", "fulfilled"] if ordered
                         else ["new", "refusing", "refused"] if state == "refused"
                         else ["new", "closed_upstream"])
                for k, to in enumerate(story):
                    evs.append({"redemption_pk": pk, "at": at + timedelta(seconds=k),
                                "from_state": story[k - 1] if k else None, "to_state": to,
                                "detail": f"history {to}"})
            if "ordered_at" in redemptions.c:  # the spend guard's column (migration 0002)
                for row in rows:
                    row["ordered_at"] = row["created_at"] if row["vendor"] else None
            with write_transaction(engine) as conn:
                conn.execute(insert(redemptions), rows)
                conn.execute(insert(events), evs)
        if engine.dialect.name == "postgresql":
            with write_transaction(engine) as conn:
                # Ids were given explicitly: move the sequences past them.
                conn.execute(text("SELECT setval(pg_get_serial_sequence('redemptions', 'pk'), "
                                  "(SELECT MAX(pk) FROM redemptions))"))
                conn.execute(text("SELECT setval(pg_get_serial_sequence('polls', 'id'), "
                                  "(SELECT MAX(id) FROM polls))"))
            # What autovacuum does on its own after a bulk change this size.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - began


# --- config ---------------------------------------------------------------------------------


def write_config(
    path: Path, standins: Standins, ledger_url: str, *, interval: float = 60,
    concurrency: int = 4, batch_size: int = 500, rate: float | None = None, extra: str = "",
    influitive_extra: str = "",
) -> Path:
    """``influitive_extra``: more ``key = value`` lines for the ``[influitive]`` section.
    Unless they set the Influitive request budget, it is set out of reach: a figure that
    is not about the budget measures the work, not the budget's pace (its default, 180
    requests per 5 minutes, would stretch most figures over hours)."""
    rate_line = "" if rate is None else f"rate_limit_per_second = {rate}\n"
    if "max_requests_per_window" not in influitive_extra:
        influitive_extra += "max_requests_per_window = 1000000\nwindow_seconds = 60\n"
    path.write_text(f"""
[influitive]
base_url = "{standins.influitive_url}"
api_token = "{TOKEN}"
org_id = "{ORG}"
{influitive_extra}
[ledger]
url = "{ledger_url}"
lease_seconds = 120

[schedule]
interval_seconds = {interval}
batch_size = {batch_size}
concurrency = {concurrency}

[retry]
initial_backoff_seconds = 5

[vendors.tremendous]
base_url = "{standins.tremendous_url}/api/v2"
api_key = "{KEY}"
{rate_line}
[[rewards]]
reward_id = "37"
vendor = "tremendous"
product = "AMZN-US"
amount = "25.00"
currency = "USD"
""" + extra)
    return path


# --- the machine ----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = "unavailable"
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(f"{PG_SERVER}/postgres")
        with engine.connect() as conn:
            pg = str(conn.scalar(text("SHOW server_version")))
        engine.dispose()
    except Exception as exc:  # reported, not fatal
        pg = f"unavailable ({type(exc).__name__})"
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": pg,
    }


def product_logs(path: Path) -> None:
    """Log as ``reward-poller run`` does (JSON lines, info level), into ``path`` instead of
    the terminal: the cost of logging is part of a cycle, the scrolling is not."""
    from poller import logs

    real = sys.stderr
    sys.stderr = path.open("a", buffering=1 << 16)
    try:
        logs.configure("json", "info")
    finally:
        sys.stderr = real
