"""Named crash points for the fault-injection tests (tests/system/faults, docs/delivery.md).

``REWARD_POLLER_FAILPOINT=after_key_saved`` makes the worker die there as ``kill -9`` would
(``os._exit`` skips every ``finally``); ``name:N`` dies the N-th time the point is reached.
"""

from __future__ import annotations

import os
import threading

POINTS = ("after_record", "after_key_saved", "after_vendor_answer", "after_ordered",
          "after_decision")
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL

_name, _, _nth = os.environ.get("REWARD_POLLER_FAILPOINT", "").partition(":")
_target = int(_nth) if _nth.isdigit() else 1
_hits = 0
_lock = threading.Lock()


def failpoint(name: str) -> None:
    global _hits
    if name != _name:
        return
    with _lock:
        _hits += 1
        if _hits == _target:
            os._exit(EXIT_CODE)
