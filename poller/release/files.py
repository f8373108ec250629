"""The files shipped inside the package: the example configuration, the systemd units and the
Prometheus alert rules.

They live once in the repository, at the top level (``config.example.toml``,
``deploy/systemd/``, ``deploy/prometheus/alerts.yml``), where a reader of the source finds
them; the build (``setup.py``) copies them into ``poller/release/data/`` of the wheel. A
source checkout installed in editable mode has no such copy, so the files are then read from
the checkout itself.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from poller.domain.errors import PollerError

EXAMPLE_CONFIG = "config.example.toml"
UNITS = ("reward-poller.service", "reward-poller-once.service", "reward-poller-once.timer",
         "reward-poller-audit.service", "reward-poller-audit.timer")
"""The systemd units, in the order ``deploy systemd`` prints them."""

PROMETHEUS_RULES = "prometheus/alerts.yml"
"""The alert rules ``deploy prometheus`` prints (docs/metrics.md)."""

SOURCES: dict[str, str] = {
    EXAMPLE_CONFIG: "config.example.toml",
    **{f"systemd/{unit}": f"deploy/systemd/{unit}" for unit in UNITS},
    PROMETHEUS_RULES: "deploy/prometheus/alerts.yml",
}
"""Package data name -> the file in the repository it is copied from (``setup.py``)."""


class MissingPackageData(PollerError):
    """A shipped file is missing: the install is broken."""


def source_root() -> Path:
    """The repository a source checkout of the package sits in."""
    return Path(__file__).resolve().parents[2]


def read(name: str) -> str:
    """The text of a shipped file, by its package data name (``systemd/<unit>`` for a unit)."""
    if name not in SOURCES:
        raise KeyError(name)
    packaged = resources.files("poller.release").joinpath("data", *name.split("/"))
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = source_root() / SOURCES[name]
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise MissingPackageData(
        f"{name} is not in this install of reward-poller (looked in {packaged} and "
        f"{checkout}): reinstall it"
    )


def example_config() -> str:
    return read(EXAMPLE_CONFIG)


def unit(name: str) -> str:
    return read(f"systemd/{name}")


def prometheus_rules() -> str:
    return read(PROMETHEUS_RULES)
