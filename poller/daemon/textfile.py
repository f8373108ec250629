"""The node_exporter textfiles, whose counters continue from run to run (docs/metrics.md).

Each run is a new process whose counters start at 0; were it to write only its own counts,
``increase()`` (what the alert rules read) would never see a counter grow across runs. So a
write adds what this process counted since its previous write to the values the file holds,
and keeps the series of earlier runs. Gauges are this run's own. Read, merge and replace
happen under a lock on the folder, so two runs ending together each add their own counts.
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

# A sample's name and its sorted labels: one line of the exposition.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]

CUMULATIVE = frozenset({"counter", "histogram"})


def sample_key(name: str, labels: Mapping[str, str]) -> SampleKey:
    return name, tuple(sorted(labels.items()))


def read_counts(path: Path) -> dict[str, dict[SampleKey, float]]:
    """The counter and histogram samples of the textfile at ``path``, by family name; empty
    when there is no file yet, or it cannot be read (logged: Prometheus reads the counters
    starting again from 0 as a reset, which ``increase()`` allows for)."""
    try:
        families = list(text_string_to_metric_families(path.read_text(encoding="utf-8")))
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
    """``families`` with each cumulative sample raised by what the file held (``previous``)
    less what this process already wrote of it (``written``), plus the series of earlier
    runs; and what this process will have written of each sample."""
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


class Collected:
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
            replace_atomically(target, prometheus_client.generate_latest(Collected(merged)))
            self._written = written


@contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    # flock on the directory itself, so no lock file is left beside the textfiles.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def replace_atomically(target: Path, data: bytes) -> None:
    """A temporary file beside ``target`` renamed over it, so a scrape never reads half a
    file; world-readable, as node_exporter runs as another user."""
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
