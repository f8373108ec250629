"""Named crash points for the fault-injection tests (tests/system/faults).

``REWARD_POLLER_FAILPOINT=after_key_saved`` makes the worker die at that point the way
``kill -9`` or a power cut would: ``os._exit`` skips every ``finally``, lease release and
flush. ``name:N`` dies at the N-th time the point is reached (1-based). Unset (always, in
production), a failpoint is one dictionary lookup.

Points, in the order a redemption meets them:
``after_record`` (recorded, nothing else), ``after_key_saved`` (ORDERING committed, vendor not
called), ``after_vendor_answer`` (the vendor answered, nothing saved), ``after_ordered``
(ORDERED committed, Influitive not told), ``after_decision`` (Influitive accepted the
decision, FULFILLED/REFUSED not saved).
"""

from __future__ import annotations

import os
import threading

POINTS = ("after_record", "after_key_saved", "after_vendor_answer", "after_ordered",
          "after_decision")
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL

_spec = os.environ.get("REWARD_POLLER_FAILPOINT", "")
_name, _, _nth = _spec.partition(":")
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
