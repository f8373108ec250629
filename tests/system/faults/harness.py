"""The fault-injection harness: the real worker as a subprocess (``python -m poller``), the
stand-ins served from the test process, a ledger on SQLite or PostgreSQL, and the delivery
guarantee checked from the stand-ins' own records.

A ``Stage`` knows what it seeded and what each redemption should end as:

* ``good``: routed by the ``[[rewards]]`` rule; exactly one vendor order, exactly one accepted
  ``fulfill`` at Influitive, ``fulfilled`` in the ledger;
* ``refused``: the vendor refuses the recipient (``@invalid.example``); no order, exactly one
  accepted ``refuse``, ``refused`` in the ledger;
* ``held``: an unmapped reward; never sent to the vendor, never decided, ``held``;
* ``guarded``: routed, under a spending limit: either ``good``, or ``held`` untouched;
* ``admin``: decided by an admin in the Influitive UI while the worker was at it (see
  ``admin_decide``); never ordered after that moment, and never decided by the worker.

``violations()`` is the end-of-run check; ``crash_violations()`` holds at any instant, right
after a ``kill -9`` too: it is the order of writes of the README's delivery guarantee.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from poller.domain.keys import idempotency_key
from poller.domain.model import LedgerEntry
from poller.domain.states import ACTIVE, TERMINAL, UNCONFIRMED, State
from poller.ledger import migrate
from poller.ledger.sql import SqlLedger, make_engine
from poller.sandbox import influitive as influitive_standin
from poller.sandbox import tremendous as tremendous_standin
from poller.sandbox.server import ServerThread, free_port

TOKEN = "faults-influitive-token-7c41e9b2d8"
ORG = "faults-org-5a0c"
KEY = "faults-tremendous-key-3f9a0d57e1"
SECRETS = (TOKEN, KEY)

PG_BASE = make_url(
    os.environ.get(
        "REWARD_POLLER_TEST_PG_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/reward_poller_test",
    )
).set(database="reward_poller_faults")
"""The fault suites' own database on the test server; each ledger is a schema inside it."""

Kind = Literal["good", "refused", "held", "admin", "guarded"]
LedgerKind = Literal["sqlite", "postgresql"]

# Warning/error lines about a whole cycle or poll, not about one redemption. Every other
# warning or error line must name its redemption.
CYCLE_EVENTS = frozenset({
    "influitive.poll.incomplete", "influitive.item.rejected",
    "influitive.item.unparseable", "influitive.poll.blocked", "influitive.budget.waited",
    "poll.incomplete", "redemption.unrecordable",
    # The daemon's own housekeeping (poller.daemon): about the process, not a redemption.
    "cycle.failed", "cycle.hook.failed", "daemon.exiting_now",
    "scheduler.run.skipped", "service.counts.failed", "alert.delivery.failed", "cycle.problem",
    "alert.state.unsaved", "alert.failed", "library.message",
    "config.file.readable_by_others", "service.webhooks.no_listener",
    "systemd.notify.failed", "metrics.ledger.unread", "metrics.textfile.failed",
    "server.accept.failed",
    # The command line's own last line (``run --run-once`` that could not do its job).
    "cli.failed", "config.invalid",
})


def key_of(rid: str) -> str:
    return idempotency_key(namespace=ORG, source="influitive", redemption_id=rid)


def item(rid: int | str, kind: Kind = "good") -> dict[str, Any]:
    """One Influitive redemption of the given kind, as the list endpoint serves it."""
    domain = "invalid.example" if kind == "refused" else "example.com"
    reward = 99 if kind == "held" else 37
    return {
        "id": rid, "reward_id": reward,
        "reward_name": "Swag box" if kind == "held" else "$25 gift card",
        "points": 2500, "quantity": 1, "stage": "requested",
        "contact": {"id": f"c{rid}", "email": f"adv{rid}@{domain}", "name": f"Advocate {rid}"},
    }


# --- processes ---------------------------------------------------------------------------


def cli_env(failpoint: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}
    env["PYTHONUNBUFFERED"] = "1"
    if failpoint:
        env["REWARD_POLLER_FAILPOINT"] = failpoint
    return env


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with suppress(ValueError):
                out.append(json.loads(line))
    return out


@dataclass
class Proc:
    """A worker process whose stdout/stderr go to files (a pipe would fill up and block a
    daemon that logs a lot)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int:
        """SIGKILL (if still running) and reap; the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        return self.popen.wait(timeout=10)

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.stderr)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.stderr)


def unnamed_failures(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Warning and error lines about a redemption that do not say which one."""
    return [
        ln for ln in lines
        if ln.get("level") in ("warning", "error") and ln.get("event") not in CYCLE_EVENTS
        and "redemption_id" not in ln
    ]


# --- a TCP proxy: a database that goes away and comes back --------------------------------


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``. ``cut()`` drops every connection and
    refuses new ones (the database is unreachable); ``restore()`` accepts again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


# --- ledgers -----------------------------------------------------------------------------

_MIGRATING = threading.Lock()


class Ledgers:
    """Fresh ledgers for one test: SQLite files under ``tmp``, PostgreSQL schemas in the
    ``reward_poller_faults`` database (created if missing, never dropped), each migrated to
    head. Schemas are dropped by ``close``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._schemas: list[str] = []
        self._n = 0
        self._lock = threading.Lock()

    def new(self, kind: LedgerKind) -> str:
        with self._lock:
            self._n += 1
            n = self._n
        if kind == "sqlite":
            url = f"sqlite:///{self.tmp / f'ledger-{n}.db'}"
        else:
            schema = f"faults_{os.getpid()}_{time.monotonic_ns() % 10**12}_{n}"
            _ensure_database()
            engine = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            finally:
                engine.dispose()
            with self._lock:
                self._schemas.append(schema)
            url = PG_BASE.update_query_dict(
                {"options": f"-csearch_path={schema}"}
            ).render_as_string(hide_password=False)
        with _MIGRATING:  # Alembic keeps its context in module globals: one at a time
            migrate.upgrade(url)
        return url

    def close(self) -> None:
        if not self._schemas:
            return
        engine = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for schema in self._schemas:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            engine.dispose()
        self._schemas.clear()


def _ensure_database() -> None:
    admin = create_engine(PG_BASE.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %(name)s",
                {"name": PG_BASE.database},
            ).first()
            if not found:
                conn.exec_driver_sql(f'CREATE DATABASE "{PG_BASE.database}"')
    finally:
        admin.dispose()


# --- the stage ---------------------------------------------------------------------------


@dataclass
class Stage:
    """Stand-ins, one ledger, a config for them, and what was seeded."""

    workdir: Path
    ledger_url: str
    influitive: influitive_standin.InfluitiveState
    tremendous: tremendous_standin.TremendousState
    influitive_url: str
    tremendous_url: str
    kinds: dict[str, Kind] = field(default_factory=dict)
    admin_at: dict[str, float] = field(default_factory=dict)
    lease_seconds: float = 0.5
    log_level: str = "info"
    procs: list[Proc] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    _n: int = 0

    # --- set-up ------------------------------------------------------------------------

    def config(
        self, *, name: str = "config.toml", ledger_url: str | None = None,
        influitive_url: str | None = None, tremendous_url: str | None = None,
        lease_seconds: float | None = None, interval_seconds: float = 0.3,
        concurrency: int | None = None, timeout_seconds: float = 3.0, http_attempts: int = 2,
        max_attempts: int = 8, rate_limit: float = 0, extra: str = "",
    ) -> Path:
        """A config for the stand-ins. ``rate_limit`` is the vendor's calls per second (0:
        no limit, so the suites stay fast; the default of the product is 10)."""
        if lease_seconds is not None:
            self.lease_seconds = lease_seconds
        schedule = f"concurrency = {concurrency}\n" if concurrency is not None else ""
        text = f"""\
[influitive]
base_url = "{influitive_url or self.influitive_url}"
api_token = "{TOKEN}"
org_id = "{ORG}"
timeout_seconds = {timeout_seconds}
# The stand-in has no firewall here: a budget that never binds keeps the suites fast.
max_requests_per_window = 1000000

[ledger]
url = "{ledger_url or self.ledger_url}"
lease_seconds = {self.lease_seconds}

[schedule]
interval_seconds = {interval_seconds}
{schedule}
[retry]
max_attempts = {max_attempts}
initial_backoff_seconds = 0.2
max_backoff_seconds = 0.5
http_attempts = {http_attempts}
max_retry_after_seconds = 1

[vendors.tremendous]
base_url = "{tremendous_url or self.tremendous_url}/api/v2"
api_key = "{KEY}"
rate_limit_per_second = {rate_limit}

[[rewards]]
reward_id = "37"
vendor = "tremendous"
product = "AMZN-US"
amount = "25.00"
currency = "USD"
{extra}"""
        path = self.workdir / name
        path.write_text(text)
        return path

    def seed(self, kinds: dict[int, Kind]) -> None:
        self.influitive.seed([item(rid, kind) for rid, kind in kinds.items()])
        for rid, kind in kinds.items():
            self.kinds[str(rid)] = kind

    def seed_raw(self, items: list[Any], kinds: dict[str, Kind]) -> None:
        self.influitive.seed(items)
        self.kinds.update(kinds)

    def admin_decide(self, rid: str, verb: str = "fulfill") -> int:
        """An admin decides in the Influitive UI. Returns the stand-in's status (200 when it
        took effect, 422 when the worker had decided it first)."""
        status, _, _ = self.influitive.decide(rid, verb, "decided in the UI", "admin")
        if status == 200:
            self.admin_at[rid] = time.time()
            self.kinds[rid] = "admin"
        return status

    def fresh(self, ledger_url: str) -> None:
        """Start over on a new ledger with empty stand-ins (the next random trial)."""
        self.influitive.reset()
        self.tremendous.reset()
        self.ledger_url = ledger_url
        self.kinds.clear()
        self.admin_at.clear()

    # --- running the worker ------------------------------------------------------------

    def popen(self, *args: str, config: Path, failpoint: str | None = None) -> Proc:
        self._n += 1
        out = self.workdir / f"proc-{self._n}.out"
        err = self.workdir / f"proc-{self._n}.err"
        cmd = [sys.executable, "-m", "poller", "--log-format", "json",
               "--log-level", self.log_level, "--config", str(config),
               *args]
        with out.open("wb") as o, err.open("wb") as e:
            popen = subprocess.Popen(cmd, stdout=o, stderr=e, env=cli_env(failpoint))
        proc = Proc(popen, out, err)
        self.procs.append(proc)
        return proc

    def run_once(self, config: Path, *, failpoint: str | None = None,
                 timeout: float = 60) -> Run:
        cmd = [sys.executable, "-m", "poller", "--log-format", "json",
               "--log-level", self.log_level, "--config", str(config),
               "run", "--run-once"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=cli_env(failpoint))
        run = Run(done.returncode, done.stdout, done.stderr)
        self.runs.append(run)
        return run

    def cli(self, *args: str, config: Path, timeout: float = 60) -> Run:
        cmd = [sys.executable, "-m", "poller", "--log-format", "json",
               "--log-level", self.log_level, "--config", str(config),
               *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=cli_env())
        run = Run(done.returncode, done.stdout, done.stderr)
        self.runs.append(run)
        return run

    def wait_lease(self) -> None:
        """Long enough for a dead worker's lease (and any backoff) to run out."""
        time.sleep(self.lease_seconds + 0.15)

    def settle(self, config: Path, *, max_runs: int = 12) -> list[Run]:
        """Clean ``--run-once`` restarts until nothing is open (or ``max_runs``)."""
        runs: list[Run] = []
        for _ in range(max_runs):
            if self.finished():
                break
            runs.append(self.run_once(config))
            if not self.finished():
                self.wait_lease()
        return runs

    # --- reading -----------------------------------------------------------------------

    def open_ledger(self) -> SqlLedger:
        """The ledger as the test reads it: no migration step (Alembic is not thread-safe,
        and the random trials read several ledgers at once)."""
        return SqlLedger(make_engine(self.ledger_url))

    def entries(self) -> dict[str, LedgerEntry]:
        ledger = self.open_ledger()
        try:
            return {e.redemption_id: e for e in ledger.list(limit=100_000)}
        finally:
            ledger.close()

    def finished(self) -> bool:
        """Nothing left to do: every seeded one recorded, none active or awaiting
        confirmation, and none finished in the ledger while Influitive still lists it."""
        entries = self.entries()
        listed = set(self.influitive.outstanding_ids())
        return all(rid in entries for rid in self.kinds) and not any(
            e.state in ACTIVE or e.state in UNCONFIRMED
            or (e.state in TERMINAL and rid in listed)
            for rid, e in entries.items()
        )

    def accepted(self, source: str = "api") -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for d in self.influitive.decisions():
            if d.accepted and d.source == source:
                out.setdefault(d.id, []).append(d.verb)
        return out

    def posts(self, rid: str) -> int:
        return self.tremendous.counts().get(key_of(rid), {}).get("received", 0)

    def created(self, rid: str) -> int:
        return self.tremendous.counts().get(key_of(rid), {}).get("created", 0)

    # --- the invariants ----------------------------------------------------------------

    def crash_violations(self, entries: dict[str, LedgerEntry] | None = None, *,
                         answers_trusted: bool = True) -> list[str]:
        """What must hold at any instant, even right after a kill -9: the order of writes.

        1. the vendor never got a request for a key the ledger had not saved (ORDERING
           committed before the vendor call);
        2. Influitive never accepted a decision the ledger had not prepared (the vendor's
           answer committed before Influitive is told);
        3. the ledger never says fulfilled/refused unless Influitive has the decision;
        4. a vendor order id in the ledger is the vendor's order for that redemption's key.

        ``answers_trusted=False`` leaves 3. out for a run where the list comes back empty at
        random: a decision answered "perhaps decided" and then missing from two glitched
        complete polls in a row is confirmed, as designed, until the next poll lists it
        again and reopens it. The end-of-run check (``violations``) still demands 3. (A
        firewall challenge alone never breaks 3.: the client reads it as blocked.)
        """
        entries = self.entries() if entries is None else entries
        by_key = {e.idempotency_key: e for e in entries.values() if e.idempotency_key}
        out: list[str] = []
        for rec in self.tremendous.snapshot()["received"]:
            ext = rec["external_id"]
            saved = by_key.get(ext)
            if saved is None or saved.state is State.NEW:
                out.append(f"vendor got POST /orders for key {ext} the ledger had not saved")
        for d in self.influitive.decisions():
            if not (d.accepted and d.source == "api"):
                continue
            e = entries.get(d.id)
            if e is None:
                out.append(f"{d.id}: Influitive accepted a decision for an unrecorded one")
            elif d.verb == "fulfill" and e.vendor_order_id is None:
                out.append(f"{d.id}: fulfilled at Influitive but the ledger has no order "
                           f"({e.state.value})")
            elif d.verb != "fulfill" and (e.vendor_order_id is not None or e.state not in (
                    State.REFUSING, State.REFUSED, State.PERHAPS_REFUSED, State.HELD)):
                out.append(f"{d.id}: refused at Influitive but the ledger is {e.state.value}, "
                           f"order {e.vendor_order_id}")
        decided = {d.id for d in self.influitive.decisions() if d.accepted}
        orders = {o["id"]: o for o in self.tremendous.snapshot()["orders"]}
        for rid, e in entries.items():
            if (answers_trusted and e.state in (State.FULFILLED, State.REFUSED)
                    and rid not in decided):
                out.append(f"{rid}: ledger says {e.state.value} but Influitive has no decision")
            if e.vendor_order_id is not None:
                order = orders.get(e.vendor_order_id)
                if order is None or order["external_id"] != e.idempotency_key:
                    out.append(f"{rid}: ledger order {e.vendor_order_id} is not the vendor's "
                               "order for its key")
        return out

    def violations(self) -> list[str]:
        """The delivery guarantee, at the end: each redemption ordered at most once (exactly
        once when routed), decided exactly once, and none left open or stuck."""
        entries = self.entries()
        out = self.crash_violations(entries)
        listed = set(self.influitive.outstanding_ids())
        for rid, e in sorted(entries.items()):
            if e.state in TERMINAL and rid in listed:
                out.append(f"{rid}: {e.state.value} in the ledger while Influitive still "
                           "lists it")
        counts = self.tremendous.counts()
        keys = {key_of(rid): rid for rid in self.kinds}
        for ext in counts:
            if ext not in keys:
                out.append(f"vendor has orders for an unknown key {ext}")
        api = self.accepted("api")
        admin = self.accepted("admin")
        received = self.tremendous.snapshot()["received"]
        orders = {o["external_id"]: o for o in self.tremendous.snapshot()["orders"]}
        for rid, kind in sorted(self.kinds.items()):
            e = entries.get(rid)
            c = counts.get(key_of(rid), {"received": 0, "created": 0})
            verbs = api.get(rid, [])
            if len(verbs) + len(admin.get(rid, [])) > 1:
                out.append(f"{rid}: decided {len(verbs)} + {len(admin.get(rid, []))} times")
            if c["created"] > 1:
                out.append(f"{rid}: {c['created']} vendor orders")
            if e is None:
                out.append(f"{rid}: never recorded")
                continue
            if e.state in ACTIVE or e.state in UNCONFIRMED:
                out.append(f"{rid}: stuck in {e.state.value}")
            if kind == "good":
                if e.state is not State.FULFILLED or c["created"] != 1 or verbs != ["fulfill"]:
                    out.append(f"{rid} (good): {e.state.value}, {c['created']} orders, "
                               f"decisions {verbs}")
                elif orders[key_of(rid)]["id"] != e.vendor_order_id:
                    out.append(f"{rid}: ledger order {e.vendor_order_id} is not the vendor's")
            elif kind == "refused":
                if e.state is not State.REFUSED or c["created"] != 0 or verbs != ["refuse"]:
                    out.append(f"{rid} (refused): {e.state.value}, {c['created']} orders, "
                               f"decisions {verbs}")
            elif kind == "guarded":  # routed, but the spending guard may hold it
                fulfilled = (e.state is State.FULFILLED and c["created"] == 1
                             and verbs == ["fulfill"])
                held = e.state is State.HELD and c["received"] == 0 and not verbs
                if not (fulfilled or held):
                    out.append(f"{rid} (guarded): {e.state.value}, {c['created']} orders, "
                               f"decisions {verbs}")
            elif kind == "held":
                if e.state is not State.HELD or c["received"] != 0 or verbs:
                    out.append(f"{rid} (held): {e.state.value}, {c['received']} vendor calls, "
                               f"decisions {verbs}")
            else:  # decided by an admin in the UI
                late = [r for r in received if r["external_id"] == key_of(rid)
                        and r["created"] and r["at"] > self.admin_at[rid]]
                if late:
                    out.append(f"{rid}: ordered after an admin decided it in the UI")
                if verbs:
                    out.append(f"{rid}: the worker decided it after the admin ({verbs})")
                if not e.state.terminal:
                    out.append(f"{rid} (admin): left {e.state.value}")
        return out


@contextmanager
def standins(
    workdir: Path, ledger_url: str, *, influitive_port: int = 0, tremendous_port: int = 0,
    page_size: int = 5,
) -> Iterator[Stage]:
    i_state = influitive_standin.InfluitiveState(page_size=page_size)
    t_state = tremendous_standin.TremendousState()
    i_app = influitive_standin.create_app(i_state, api_token=TOKEN, org_id=ORG)
    t_app = tremendous_standin.create_app(t_state, api_key=KEY)
    servers = [ServerThread(i_app, port=influitive_port),
               ServerThread(t_app, port=tremendous_port)]
    try:
        iu, tu = (server.start() for server in servers)
        stage = Stage(workdir, ledger_url, i_state, t_state, iu, tu)
        try:
            yield stage
        finally:
            for proc in stage.procs:
                proc.kill()
    finally:
        for server in servers:  # both told first: they wind down together
            server._server.should_exit = True
        for server in servers:
            server.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0,
             what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
