"""Child process of figure 5: run N real cycles against the stand-ins, print RSS readings.

``python -m bench.rss CONFIG N`` prints one JSON object: VmRSS in KiB after cycles 1, 10,
100 and N, and the median time of a cycle.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import product_logs


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    from poller.compose import App
    from poller.config import load_config

    config, cycles = Path(sys.argv[1]), int(sys.argv[2])
    product_logs(Path(tempfile.gettempdir()) / "reward-poller-bench-rss.log")
    marks = {1, 10, 100, cycles}
    readings: dict[str, int] = {}
    times = []
    with App(load_config(config)) as app:
        for n in range(1, cycles + 1):
            began = time.perf_counter()
            report = app.worker.run_cycle()
            times.append(time.perf_counter() - began)
            if not report.ok:
                raise SystemExit(f"cycle {n} failed: {report.errors}")
            if n in marks:
                readings[str(n)] = rss_kib()
    print(json.dumps({"rss_kib": readings, "cycle_ms": statistics.median(times) * 1000}))


if __name__ == "__main__":
    main()
