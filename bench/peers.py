"""The worker against its peers, each figure a ratio measured in one run: the ledger's path
per redemption against a job queue's (pgqueuer) on the same PostgreSQL (figure 3), peak
memory against the number outstanding (4), the cold start against the import floor (6), and
the worker against a plain sequential script doing the same job (a note)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import ledger_path as lp
from bench.harness import (
    PG_DATABASE,
    PG_SERVER,
    Ledgers,
    Standins,
    median,
    open_migrated,
    write_config,
)
from bench.report import Figure
from bench.serve import KEY, ORG, TOKEN

ROOT = Path(__file__).resolve().parent.parent

def _env() -> dict[str, str]:
    """The environment of a child worker: none of the caller's REWARD_POLLER_ overrides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}


def _exe() -> str:
    return str(Path(sys.executable).parent / "reward-poller")


def _run_once_cmd(config: Path) -> list[str]:
    return [_exe(), "--log-format", "json", "--config", str(config), "run", "--run-once"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], log: Path) -> tuple[float, float, str]:
    """Run ``cmd`` to the end: wall seconds, CPU seconds (user + system, from the kernel's
    account of waited-for children), stdout. stderr goes to ``log``."""
    cpu = _children_cpu()
    began = time.perf_counter()
    with log.open("w") as err:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                              env=_env(), cwd=ROOT, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {done.returncode}; see {log}")
    return wall, _children_cpu() - cpu, done.stdout


def _max_pages(n: int, page: int = 25) -> str:
    return f"max_pages = {n // page + 10}\n"


# --- 3. the ledger's path against a job queue's ------------------------------------------------


def ledger_path(ledgers: Ledgers, reps: int = 5, n: int = 100) -> Figure:
    """Per redemption, new -> fulfilled through the ledger API, against pgqueuer's
    enqueue -> dequeue -> complete per job on the same PostgreSQL, rounds alternating."""
    details: list[tuple[str, str]] = []
    results: dict[str, dict[str, float]] = {}
    calls: dict[str, dict[str, list[str]]] = {}
    peer: dict[str, float] | None = None
    peer_note = ""
    next_id = 1
    for backend in ("SQLite", "PostgreSQL"):
        url = ledgers.sqlite("path") if backend == "SQLite" else ledgers.postgres("path")
        ledger = open_migrated(url)
        queue = None
        if backend == "PostgreSQL":
            if lp.pgqueuer_available():
                schema = f"bench_pgqueuer_{os.getpid()}"
                ledgers.schemas.append(schema)
                queue = lp.PgQueuerPeer(lp.psycopg_dsn(f"{PG_SERVER}/{PG_DATABASE}"), schema)
            else:
                peer_note = ("pgqueuer is not installed in this environment (`pip install "
                             "-e '.[bench]'`): the ratio is not measured.")
        rows: dict[str, list[float]] = {}
        peer_rows: dict[str, list[float]] = {}
        try:
            for rep in range(reps + 1):  # round 0 warms both up
                per_call: dict[str, list[str]] | None = {} if rep == 1 else None
                r = lp.ledger_path(ledger, n, next_id, per_call=per_call)
                next_id += n
                if per_call is not None:
                    calls[backend] = per_call
                q = None
                if queue is not None:
                    q = queue.round(n)  # enqueue per job: the peer the target was set with
                    batched = queue.round(n, lp.PAGE)
                    q["batched_seconds"] = batched["seconds"]
                    q["batched_statements"] = batched["statements"]
                if rep == 0:
                    continue
                for k, v in r.items():
                    if isinstance(v, float):
                        rows.setdefault(k, []).append(v)
                for k, v in (q or {}).items():
                    peer_rows.setdefault(k, []).append(v)
        finally:
            ledger.close()
            if queue is not None:
                queue.close()
        res = results[backend] = {k: median(v) for k, v in rows.items()}
        kinds = r["kinds"]
        ms = 1000
        details += [
            (f"{backend}: ledger time per redemption (median of {reps} rounds of {n})",
             f"{res['seconds'] * ms:.2f} ms"),
            (f"{backend}: server statements per redemption",
             f"{res['statements']:.1f} ({res['own_statements']:.1f} in the 3 guarded moves; "
             f"{res['paged_statements']:.2f} as the share of record and due)"),
            (f"{backend}: ... by kind",
             ", ".join(f"{k} {v:.2f}" for k, v in sorted(kinds.items(), key=lambda x: -x[1]))),
            (f"{backend}: commits per redemption",
             f"{res['own_commits']:.2f} (+ {res['commits'] - res['own_commits']:.2f} as the "
             "share of record)"),
        ]
        if peer_rows:
            peer = {k: median(v) for k, v in peer_rows.items()}
            res["ratio"] = res["seconds"] / peer["seconds"]
            details += [
                (f"pgqueuer {lp.pgqueuer_version()}: time per job, enqueued one by one, same "
                 "database, rounds alternating", f"{peer['seconds'] * ms:.2f} ms"),
                ("pgqueuer: server statements (each its own transaction) per job",
                 f"{peer['statements']:.2f}"),
                ("ratio ledger / pgqueuer", f"{res['ratio']:.2f}x"),
                (f"pgqueuer, enqueued {lp.PAGE} at a time (its batch form): time, statements "
                 "per job", f"{peer['batched_seconds'] * ms:.2f} ms, "
                 f"{peer['batched_statements']:.2f}; ratio ledger / it "
                 f"{res['seconds'] / peer['batched_seconds']:.2f}x"),
            ]
    pg = results["PostgreSQL"]
    commits_ok = all(r["own_commits"] <= 3.0 for r in results.values())
    ratio_ok = "ratio" in pg and pg["ratio"] <= 1.5
    measured = (f"PostgreSQL {pg['ratio']:.2f}x pgqueuer; " if "ratio" in pg else "") + "; ".join(
        f"{b} {r['statements']:.1f} statements, {r['own_commits']:.1f} commits"
        for b, r in results.items())
    appendix = ["The statements each ledger call sends, as captured for one redemption "
                "(text cut at 110 characters):"]
    for backend, per_call in calls.items():
        appendix.append(f"\n{backend}:\n\n```")
        for call, texts in per_call.items():
            appendix.append(f"{call}:")
            appendix += [f"    {t}" for t in texts]
        appendix.append("```")
    notes = [
        "The ledger takes its intake a page (25) at a time, as the poll reads it (`record` "
        "and `due`); pgqueuer is measured as the target was set, enqueueing one job at a "
        "time (three statements a job), and in its batch form, a page at a time, for "
        "reference. Everything after the intake is per redemption (per job). The poll's "
        "own `start_poll`/`finish_poll` (once a cycle) are left out. The three commits the "
        "target allows are the delivery guarantee's minimum: the key saved before the "
        "vendor call, the vendor's answer saved before Influitive is told, the decision "
        "saved after Influitive accepted."]
    if peer_note:
        notes.append(peer_note)
    return Figure(
        number=3, title="Ledger path per redemption vs pgqueuer (new -> fulfilled)",
        measured=measured,
        target="<= 1.5x pgqueuer on PostgreSQL; 3 commits per redemption on SQLite and "
               "PostgreSQL",
        met=ratio_ok and commits_ok,
        method=(
            f"{n} redemptions per round taken from new to fulfilled through the real "
            "`Ledger` API with the worker's calls and arguments on the happy path (`record` "
            "and `due` per page of 25; per redemption `claim_transition` to ORDERING with "
            "the idempotency key, `transition` to ORDERED with the vendor's order id and "
            "message, to FULFILLED with the lease given back), each call on a pooled "
            "connection as a worker thread makes it, no HTTP. The peer: pgqueuer's "
            "`enqueue` (one job at a time), then per job `dequeue` (batch of one) and "
            "`log_jobs` (complete), on an autocommit psycopg connection to its own schema of "
            f"the same database. Rounds alternate ledger, pgqueuer (one by one), pgqueuer "
            f"(batched); median of {reps} after a "
            "warm-up round. Statements are counted where they leave the client: every "
            "cursor execute, every BEGIN (psycopg sends one before a transaction's first "
            "statement), COMMIT, ROLLBACK of an open transaction and pool pre-ping."),
        details=details, notes=notes, appendix="\n".join(appendix),
    )


# --- note: the worker against a plain sequential script -----------------------------------------


def _script_cmd(standins: Standins, db: Path) -> list[str]:
    return [sys.executable, "-m", "bench.baseline_script", "--influitive",
            standins.influitive_url, "--token", TOKEN, "--org", ORG, "--vendor",
            standins.tremendous_url, "--key", KEY, "--db", str(db)]


def _vendor_statuses(standins: Standins) -> Counter[int]:
    return Counter(int(r["status"]) for r in standins.vendor_snapshot()["received"])


def _accepted(standins: Standins) -> int:
    return sum(1 for d in standins.decisions() if d["accepted"])


def _one_run(ledgers: Ledgers, standins: Standins, workdir: Path, ids: Any, who: str,
             n: int, delay: float, vendor_rate: int | None, name: str) -> dict[str, Any]:
    standins.reset(vendor_delay=delay, vendor_rate=vendor_rate)
    standins.seed(ids.take(n))
    log = workdir / f"{name}-{who}.log"
    if who == "script":
        cmd = _script_cmd(standins, workdir / f"{name}-script-{time.monotonic_ns()}.db")
    else:
        url = ledgers.sqlite(f"{name}-{time.monotonic_ns()}")
        open_migrated(url).close()  # migrated beforehand: the run is the work alone
        # Without a vendor limit the worker runs without its client-side limiter, as the
        # script does; with one, with its limiter set to the limit the vendor enforces.
        # The stand-in here enforces no Influitive budget, and the script keeps to none: the
        # worker's own budget is set out of reach (its default would pace 2,000 decisions
        # over most of an hour), so the figure compares the work, not the budget.
        config = write_config(workdir / f"{name}-worker.toml", standins, url, batch_size=n,
                              rate=vendor_rate or 0,
                              influitive_extra=_max_pages(n) + _budget_lines(10 * n, 60.0))
        cmd = _run_once_cmd(config)
    wall, cpu, _ = _timed(cmd, log)
    statuses = _vendor_statuses(standins)
    return {"wall": wall, "cpu": cpu, "429": statuses.get(429, 0),
            "created": statuses.get(200, 0) + statuses.get(201, 0),
            "accepted": _accepted(standins)}


def script(ledgers: Ledgers, standins: Standins, workdir: Path, ids: Any,
           n: int = 2000, n_slow: int = 2000, n_limited: int = 300, reps: int = 3) -> Figure:
    """``reward-poller run --run-once`` against ``bench/baseline_script.py``, alternating,
    at a vendor answering at once (``reps`` pairs: its ratios are the closest to their
    targets and a run takes seconds), at 50 ms, and enforcing 10 requests a second."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    cases = (("0 ms", n, 0.0, None), ("50 ms", n_slow, 0.05, None),
             ("10/s", n_limited, 0.0, 10))
    for case, size, delay, rate in cases:
        for _ in range(reps if delay == 0 and rate is None else 1):
            for who in ("worker", "script"):
                run = _one_run(ledgers, standins, workdir, ids, who, size, delay, rate,
                               case.replace(" ", "").replace("/", "per"))
                runs.setdefault(case, {}).setdefault(who, []).append(run)

    def med(case: str, who: str, key: str) -> float:
        return median([r[key] for r in runs[case][who]])

    wall0 = med("0 ms", "worker", "wall") / med("0 ms", "script", "wall")
    cpu0 = med("0 ms", "worker", "cpu") / med("0 ms", "script", "cpu")
    faster50 = med("50 ms", "script", "wall") / med("50 ms", "worker", "wall")
    w429 = int(med("10/s", "worker", "429"))
    s429 = int(med("10/s", "script", "429"))
    complete = all(r["accepted"] == size for (case, size, _, _) in cases
                   for r in runs[case]["worker"])
    details = []
    for case, size, _, _ in cases:
        for who in ("worker", "script"):
            details.append((
                f"vendor {case}, {size} redemptions: {who}",
                f"wall {med(case, who, 'wall'):.1f} s, CPU {med(case, who, 'cpu'):.1f} s "
                f"({med(case, who, 'cpu') / size * 1000:.1f} ms a redemption), "
                f"{int(med(case, who, 'created'))} orders, {int(med(case, who, '429'))} x 429, "
                f"{int(med(case, who, 'accepted'))} decisions accepted"))
    return Figure(
        number=7, title="Note: the worker vs a plain sequential script doing the same job",
        measured=f"0 ms: wall {wall0:.2f}x, CPU {cpu0:.2f}x; 50 ms: {faster50:.2f}x faster; "
                 f"10/s: worker {w429} x 429, script {s429} x 429",
        target="none (note)", met=None,
        method=(
            "Both as processes of their own against the same stand-ins, alternating "
            "(worker, script) with fresh redemptions each run: `reward-poller run --run-once` "
            "(defaults: `concurrency = 4` threads; `batch_size` = the backlog; a fresh "
            "SQLite ledger, migrated beforehand) "
            "and `bench/baseline_script.py`: sequential, httpx, durable SQLite (WAL, "
            "`synchronous = FULL`, as the ledger), three commits per redemption "
            "(the key before the order, the answer before the decision, the decision after), "
            "one `POST /orders` per redemption, one decision POST, no retries. Wall and CPU "
            "(user + system) of each process, start-up included, from the kernel's account "
            "of the child; at 0 ms the median of three alternating pairs, one pair "
            "otherwise. "
            "Vendor at 0 ms and 50 ms: no vendor limit, the worker's client-side limiter "
            "off (`rate_limit_per_second = 0`), as the script has none. Vendor enforcing "
            "10 requests a second: the worker with `rate_limit_per_second = 10`, the limit "
            "the stand-in enforces (the worker's own default for Tremendous is lower, 2/s, "
            "after the limit Tremendous documents for 30-second windows); the script's 429s "
            "are orders it did not place."),
        details=details,
        notes=[] if complete else ["Not every redemption the worker was given was "
                                   "fulfilled in its run: see the rows above."],
    )


# --- 4. peak memory against the number outstanding ----------------------------------------------


def outstanding_rss(ledgers: Ledgers, standins: Standins, workdir: Path, ids: Any,
                    sizes: tuple[int, ...] = (1000, 10_000, 50_000)) -> Figure:
    """Peak RSS of ``run --run-once`` whose poll reads N outstanding, a fresh process each."""
    rows: list[tuple[str, str]] = []
    peaks: dict[int, int] = {}
    for size in sizes:
        standins.reset()
        standins.seed(ids.take(size), reward_id=99)  # no rule: held, one a cycle here
        url = ledgers.sqlite(f"rss{size}")
        open_migrated(url).close()
        # The poll alone is measured: the worker's own request budget is set out of reach
        # (its default would pace the 2,000 pages of 50,000 over most of an hour).
        config = write_config(workdir / f"rss{size}.toml", standins, url, batch_size=1,
                              influitive_extra=_max_pages(size)
                              + _budget_lines(10 * size, 60.0))
        log = workdir / f"rss{size}.log"
        with log.open("w") as err:
            done = subprocess.run([sys.executable, "-m", "bench.peak", *_run_once_cmd(config)],
                                  stdout=subprocess.PIPE, stderr=err, text=True, env=_env(),
                                  cwd=ROOT, check=False)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["returncode"] != 0:
            raise RuntimeError(f"run --run-once exited {result['returncode']}; see {log}")
        ledger = open_migrated(url)
        try:
            recorded = sum(ledger.counts().values())
        finally:
            ledger.close()
        peaks[size] = result["peak_rss_kib"]
        rows.append((f"{size:,} outstanding",
                     f"peak RSS {peaks[size] / 1024:.1f} MiB, {recorded:,} recorded, "
                     f"wall {result['wall_s']:.1f} s"))
    first, last = sizes[0], sizes[-1]
    growth = (peaks[last] - peaks[first]) / 1024
    return Figure(
        number=4, title="RSS at " + " / ".join(f"{s:,}" for s in sizes)
                        + " outstanding (one poll)",
        measured=", ".join(f"{s:,}: {peaks[s] / 1024:.0f} MiB" for s in sizes)
                 + f" (growth {growth:+.1f} MiB)",
        target=f"growth <= 20 MiB from {first:,} to {last:,}", met=growth <= 20,
        method=(
            "`reward-poller run --run-once` as a fresh process per size, on a fresh SQLite "
            "ledger, with the Influitive stand-in listing that many outstanding redemptions "
            "(25 a page; `max_pages` set high enough to read them all). The redemptions map "
            "to no reward rule and `batch_size = 1`, so the cycle is the poll and its "
            "recording, and one redemption held. Peak RSS is the child's `ru_maxrss`, read "
            "by a parent of its own (`bench/peak.py`)."),
        details=rows,
    )


# --- Influitive's request budget (figure 1) ------------------------------------------------


def budget_use(log: list[tuple[float, str, str, int]], requests: int,
               window: float) -> dict[str, float]:
    """From the stand-in's request log: the share of the budget used over the whole
    windows from the first request to the last accepted one, the most accepted in any one
    rolling window, and the requests blocked."""
    admitted = sorted(t for t, _, _, status in log if status != 403)
    blocked = sum(1 for *_, status in log if status == 403)
    if not admitted:
        return {"share": 0.0, "peak": 0, "blocked": blocked, "windows": 0}
    t0, t1 = admitted[0], admitted[-1]
    whole = int((t1 - t0) // window)
    if whole >= 1:
        inside = sum(1 for t in admitted if t < t0 + whole * window)
        share = inside / (whole * requests)
    else:
        share = len(admitted) / requests
    peak, lo = 0, 0
    for hi, t in enumerate(admitted):
        while admitted[lo] <= t - window:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return {"share": share, "peak": peak, "blocked": blocked, "windows": whole}


def _budget_lines(requests: int, window: float) -> str:
    """``[influitive]`` lines of the worker's own request budget."""
    return f"max_requests_per_window = {requests}\nwindow_seconds = {window}\n"


# --- 6. cold start ---------------------------------------------------------------------------


def cold_start(ledgers: Ledgers, standins: Standins, workdir: Path, ids: Any,
               starts: int = 11) -> Figure:
    url = ledgers.sqlite("coldstart")
    open_migrated(url).close()
    config = write_config(workdir / "coldstart.toml", standins, url)
    standins.reset()
    run = _run_once_cmd(config)
    floor = [sys.executable, "-c", "import httpx, sqlalchemy"]
    subprocess.run(run, check=True, capture_output=True, env=_env())  # warms the file cache
    times: dict[str, list[float]] = {"run": [], "floor": []}
    for _ in range(starts):  # alternating, so drift on the machine hits both alike
        for name, cmd in (("run", run), ("floor", floor)):
            began = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=_env())
            times[name].append(time.perf_counter() - began)
    r, f = statistics.median(times["run"]), statistics.median(times["floor"])
    ratio = r / f
    return Figure(
        number=6, title="Cold start of run --run-once with nothing to do vs the import floor",
        measured=f"{ratio:.2f}x ({r * 1000:.0f} ms vs {f * 1000:.0f} ms)",
        target="<= 1.6x `python -c \"import httpx, sqlalchemy\"`", met=ratio <= 1.6,
        method=(
            f"`reward-poller run --run-once` (nothing outstanding, the SQLite ledger migrated "
            "beforehand) and `python -c \"import httpx, sqlalchemy\"` on the same "
            f"interpreter, each started {starts} times, alternating; medians."),
        details=[
            ("run --run-once, median (min-max)",
             f"{r * 1000:.0f} ms ({min(times['run']) * 1000:.0f}-"
             f"{max(times['run']) * 1000:.0f})"),
            ("import httpx, sqlalchemy, median (min-max)",
             f"{f * 1000:.0f} ms ({min(times['floor']) * 1000:.0f}-"
             f"{max(times['floor']) * 1000:.0f})"),
        ],
    )
