"""The files shipped inside the package: the example configuration, the systemd units and the
Prometheus alert rules. They live once in the repository, at the top level, and the build
(``setup.py``) copies them into ``poller/release/data/`` of the wheel; an editable install
has no such copy and reads them from the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from poller.domain.errors import PollerError

EXAMPLE_CONFIG = "config.example.toml"
UNITS = ("reward-poller.service", "reward-poller-once.service", "reward-poller-once.timer",
         "reward-poller-audit.service", "reward-poller-audit.timer")  # as deploy prints them
PROMETHEUS_RULES = "prometheus/alerts.yml"

SOURCES: dict[str, str] = {
    EXAMPLE_CONFIG: "config.example.toml",
    **{f"systemd/{unit}": f"deploy/systemd/{unit}" for unit in UNITS},
    PROMETHEUS_RULES: "deploy/prometheus/alerts.yml",
}
"""Package data name -> the file in the repository it is copied from (``setup.py``)."""


class MissingPackageData(PollerError):
    """A shipped file is missing: the install is broken."""


def read(name: str) -> str:
    """The text of a shipped file, by its package data name (``systemd/<unit>`` for a unit)."""
    packaged = resources.files("poller.release").joinpath("data", *name.split("/"))
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / SOURCES[name]
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise MissingPackageData(
        f"{name} is not in this install of reward-poller (looked in {packaged} and "
        f"{checkout}): reinstall it"
    )


def example_config() -> str:
    return read(EXAMPLE_CONFIG)
