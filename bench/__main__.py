"""``python -m bench [--only NAME ...] [--output BENCHMARKS.md] [--quick]``."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from bench import figures
from bench.harness import Ledgers, Standins, machine, product_logs
from bench.report import Figure, markdown, table

PREAMBLE = """
How to read this: the six figures users feel, each beside its target (what the project
promises) with met / NOT MET, in this order: 1. drain rate against the binding limit
(Influitive's request budget, each vendor's limit), idle and with every core busy;
2. webhook-to-order latency; 3. the ledger's path per redemption against pgqueuer, with its
statements and commits; 4. RSS against the number outstanding; 5. the idle daemon's CPU;
6. cold start. Then two notes, measured and printed without a target: the worker against a
plain sequential script, and the ledger against the bare-commit floor. Each section says how
it was measured and, for a target not met, the measured cause. The stand-ins
(`poller/sandbox`) run in processes of their own (`bench/serve.py`), as the real services
would be elsewhere; the worker is the real one, built from a config file by
`poller.compose.Runtime` exactly as `reward-poller run` builds it, or run as `reward-poller`
itself. Re-run with `make bench` (under half an hour on two cores; it installs the bench's
own extras, pgqueuer among them); `python -m bench --only drain` runs one figure, and
`python -m bench --quick` runs every figure at small sizes to check that it runs. Every
module is compiled to bytecode before the first figure, as a regular install has it.
"""


def compile_bytecode() -> None:
    """Compile the interpreter's packages and the product to bytecode if they are not yet
    (an environment with PYTHONDONTWRITEBYTECODE never writes it on import): every process
    started would otherwise compile what it imports, and starts would measure the compiler."""
    import compileall
    import sysconfig

    root = Path(__file__).resolve().parent.parent
    for folder in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                   str(root / "poller"), str(root / "bench")}:
        compileall.compile_dir(folder, quiet=1, workers=0)


def main() -> int:
    names = [name for name, _ in figures.all_figures()]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=names, help="run only these figures")
    parser.add_argument("--output", default=None,
                        help="where to write the report (default BENCHMARKS.md; with "
                             "--quick, nowhere unless given)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repetitions: checks in a few minutes that "
                             "every figure runs and prints; its numbers are not the figures")
    args = parser.parse_args()
    output = args.output or (None if args.quick else "BENCHMARKS.md")
    wanted = set(args.only or names)
    compile_bytecode()
    load_before = os.getloadavg()
    began = time.monotonic()
    ledgers = Ledgers()
    product_logs(ledgers.workdir / "worker.log")
    results: list[Figure] = []
    failed = False
    ids = figures.Ids()
    with Standins() as standins:
        try:
            for name, measure in figures.all_figures():
                if name not in wanted:
                    continue
                print(f"[{time.monotonic() - began:5.0f} s] {name} ...", flush=True)
                sizes = figures.QUICK.get(name, {}) if args.quick else {}
                try:
                    if name in figures.LEDGER_ONLY:
                        result = measure(ledgers, **sizes)
                    else:
                        result = measure(ledgers, standins, ledgers.workdir, ids, **sizes)
                except Exception:
                    failed = True
                    traceback.print_exc()
                    continue
                results.append(result)
                print(f"        {result.measured} -> {result.verdict}", flush=True)
        finally:
            ledgers.cleanup()
    elapsed = time.monotonic() - began
    results.sort(key=lambda f: f.number)
    print()
    print(table(results))
    about = machine()
    # The machine may be shared (other test runs): the load shows how quiet it was.
    about["load average (1, 5, 15 min), start / end"] = " / ".join(
        ", ".join(f"{x:.2f}" for x in load) for load in (load_before, os.getloadavg()))
    if output is None:
        print(f"\n(quick run, {elapsed:.0f} s: small sizes to check that every figure runs; "
              "its numbers are not the figures, and no report is written)")
    else:
        Path(output).write_text(markdown(results, about, elapsed, PREAMBLE))
        print(f"\nwrote {output} ({elapsed:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
