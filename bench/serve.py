"""Serve one stand-in (``influitive`` or ``tremendous``) from its own process until stdin
closes: ``python -m bench.serve tremendous``.

The benchmarks run the worker in one process and each stand-in in another, as the real
services are on other machines: a stand-in sharing an interpreter with the worker (or with
the other stand-in, paging 2,000 redemptions as JSON) would share its GIL, and its timings
(the 200 ms vendor delay, the rate-limit window) would drift with their load. Prints one
JSON line with the base URL.
"""

from __future__ import annotations

import json
import logging
import sys

import structlog

from poller.standins import influitive, tremendous
from poller.standins.server import ServerThread

TOKEN = "bench-influitive-token"
ORG = "bench-org"
KEY = "bench-tremendous-key"


def main() -> None:
    # Warnings only, and to stderr: stdout is a pipe the parent reads one line from, and a
    # full pipe would block the servers.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    which = sys.argv[1]
    if which == "influitive":
        app = influitive.create_app(influitive.InfluitiveState(), api_token=TOKEN, org_id=ORG)
    else:
        app = tremendous.create_app(tremendous.TremendousState(), api_key=KEY)
    with ServerThread(app) as url:
        print(json.dumps({"url": url}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)


if __name__ == "__main__":
    main()
