"""What every measurement needs: the stand-ins in their own processes, ledgers on SQLite and
PostgreSQL, a config pointing at them, a busy machine on demand, the machine's description."""

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.serve import KEY, ORG, TOKEN

PG_SERVER = os.environ.get("REWARD_POLLER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_DATABASE = "reward_poller_bench"
"""The benchmarks' own database: created if missing, never dropped; each run works in
schemas of its own inside it and drops them afterwards."""

# --- timing ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@contextmanager
def cpu_hog(processes: int | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """A busy machine: one process spinning in a loop per core (or ``processes``), at the
    same priority as everything else, until the block ends. Yields the processes."""
    n = processes or os.cpu_count() or 1
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


# --- the stand-ins --------------------------------------------------------------------------


class Standins:
    """The Influitive and Tremendous stand-ins in a child process, driven over their admin
    HTTP APIs."""

    def __init__(self) -> None:
        self._procs = [self._start("influitive"), self._start("tremendous"),
                       self._start("tango")]
        self.influitive_url, self.tremendous_url, self.tango_url = (
            self._url(p) for p in self._procs)
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
        for url, balance in ((self.tremendous_url, {"cents": 10**12}),
                             (self.tango_url, {"amount": 10**10})):
            t = f"{url}/_standin"
            self._post(f"{t}/reset")
            self._post(f"{t}/balance", balance)
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

    def vendor_snapshot(self, vendor: str = "tremendous") -> dict[str, Any]:
        url = self.tango_url if vendor == "tango" else self.tremendous_url
        found: dict[str, Any] = self._get(f"{url}/_standin/orders")
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


TANGO_REWARD = 38
"""The reward id ``tango_section`` maps to Tango Card."""


def tango_section(standins: Standins, rate: float | None = None) -> str:
    """``extra`` for ``write_config``: the Tango Card stand-in as a vendor, and reward
    ``TANGO_REWARD`` ordered from it. Only the configs that use it have it (a configured
    vendor's module is imported at start-up)."""
    from poller.sandbox import tango

    rate_line = "" if rate is None else f"rate_limit_per_second = {rate}\n"
    return f"""
[vendors.tango]
base_url = "{standins.tango_url}{tango.API_PREFIX}"
platform_name = "{tango.PLATFORM_NAME}"
platform_key = "{KEY}"
customer_identifier = "{tango.CUSTOMER}"
account_identifier = "{tango.ACCOUNT}"
{rate_line}
[[rewards]]
reward_id = "{TANGO_REWARD}"
vendor = "tango"
product = "U561593"
amount = "25.00"
currency = "USD"
"""


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
