"""Build step beyond pyproject.toml: ship the example configuration, the systemd units and the
Prometheus alert rules inside the package (``poller/release/data/``), copied from the one
place they live in the repository (``poller.release.files.SOURCES`` names them)."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
UNITS = sorted(p.name for p in (ROOT / "deploy" / "systemd").iterdir() if p.is_file())
SHIPPED = {"config.example.toml": "config.example.toml",
           **{f"systemd/{u}": f"deploy/systemd/{u}" for u in UNITS},
           "prometheus/alerts.yml": "deploy/prometheus/alerts.yml"}


class BuildWithReleaseFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the checkout
        data = Path(self.build_lib) / "poller" / "release" / "data"
        for name, source in SHIPPED.items():
            target = data / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / source, target)


setup(cmdclass={"build_py": BuildWithReleaseFiles})
