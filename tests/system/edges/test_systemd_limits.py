"""The systemd units give the process room for the listener's connection limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from poller.config.sections import ServerLimits
from tests.system.daemon.test_systemd_units import DAEMON, ONCE, parse


@pytest.mark.parametrize("unit", [DAEMON, ONCE], ids=lambda p: p.name)
def test_limit_nofile_is_well_above_the_connection_limit(unit: Path) -> None:
    service = parse(unit)["Service"]
    [value] = service["LimitNOFILE"]
    soft = int(value.split(":")[0])
    assert soft >= 4 * ServerLimits().max_connections
