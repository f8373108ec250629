"""Run one command as a child and report what it cost: ``python -m bench.peak CMD ...``
prints one JSON line with the child's peak RSS (``ru_maxrss``), its CPU seconds (user +
system) and its wall time, then exits with the child's exit status.

A process of its own per measurement: ``RUSAGE_CHILDREN`` keeps the largest peak of every
child ever waited for, so only a fresh parent gives one command's peak.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    began = time.perf_counter()
    done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"peak_rss_kib": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "wall_s": wall, "returncode": done.returncode}), flush=True)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
