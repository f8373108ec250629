"""The node_exporter textfile of ``run --run-once``: counters that continue from run to run.

Each run is a new process whose counters start at 0. If each run wrote only its own counts,
two runs that each met the same two errors would both write 2: Prometheus sees one series
across the runs, never sees it grow, and ``increase()`` (what the alert rules read) stays 0.
So every write adds what this process counted since its previous write to the values the
file already holds: counters and histograms only grow from run to run, as a long-lived
process's would, and a series an earlier run counted stays in the file. Gauges are this
run's own.

Read, merge and replace happen under an exclusive lock on the file's folder, so two runs
ending together (the timer's and a ``ledger fulfill``) each add their own counts instead of
one overwriting the other's. A previous file that cannot be read is logged, and the counters
start again from 0: Prometheus reads that as a counter reset, which ``increase()`` allows for.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import prometheus_client
import structlog
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = structlog.get_logger("poller.metrics")

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
"""A sample's name and its sorted labels: one line of the exposition."""

CUMULATIVE = frozenset({"counter", "histogram"})
"""Family types whose samples only grow (a histogram's buckets, count and sum included)."""


def sample_key(name: str, labels: Mapping[str, str]) -> SampleKey:
    return name, tuple(sorted(labels.items()))


def read_counts(path: Path) -> dict[str, dict[SampleKey, float]]:
    """The counter and histogram samples of the textfile at ``path``, by family name; empty
    when there is no file yet, or it cannot be read (logged)."""
    try:
        text = path.read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("metrics.textfile.unreadable", path=str(path), error=type(exc).__name__,
                    consequence="counters start again from 0")
        return {}
    counts: dict[str, dict[SampleKey, float]] = {}
    for family in families:
        if family.type in CUMULATIVE:
            found = counts.setdefault(family.name, {})
            for sample in family.samples:
                found[sample_key(sample.name, sample.labels)] = sample.value
    return counts


def continued(
    families: Iterable[Metric], previous: Mapping[str, Mapping[SampleKey, float]],
    written: Mapping[SampleKey, float],
) -> tuple[list[Metric], dict[SampleKey, float]]:
    """``families`` with each counter and histogram sample raised by what the file held
    (``previous``) less what this process already wrote of it (``written``), and the series
    of earlier runs this process has not counted carried over. Also returns what this process
    will have written of each sample."""
    out: list[Metric] = []
    now_written: dict[SampleKey, float] = {}
    for family in families:
        if family.type not in CUMULATIVE:
            out.append(family)
            continue
        before = previous.get(family.name, {})
        merged = Metric(family.name, family.documentation, family.type, family.unit)
        for sample in family.samples:
            key = sample_key(sample.name, sample.labels)
            merged.add_sample(sample.name, dict(sample.labels),
                              before.get(key, 0.0) + sample.value - written.get(key, 0.0))
            now_written[key] = sample.value
        for key, value in before.items():
            if key not in now_written:
                merged.add_sample(key[0], dict(key[1]), value)
        out.append(merged)
    return out, now_written


class _Families:
    """Fixed families, as ``generate_latest`` reads a registry (``collect``)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class Textfile:
    """One process's writes of one textfile: remembers what it wrote, so that writing again
    adds only what was counted since."""

    def __init__(self) -> None:
        self._written: dict[SampleKey, float] = {}
        self._lock = threading.Lock()

    def write(self, path: str | os.PathLike[str], families: Iterable[Metric]) -> None:
        target = Path(path)
        with self._lock, _folder_locked(target.parent):
            merged, written = continued(families, read_counts(target), self._written)
            replace_atomically(target, prometheus_client.generate_latest(_Families(merged)))
            self._written = written


@contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (flock on the directory itself, so no lock file is
    left beside the textfiles). Raises OSError when the folder does not exist."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def replace_atomically(target: Path, data: bytes) -> None:
    """``data`` into ``target``: written to a temporary file beside it, then renamed over it,
    so a scrape never reads half a file. World-readable: node_exporter runs as another
    user."""
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                     dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
