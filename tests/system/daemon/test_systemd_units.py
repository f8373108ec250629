"""The systemd units: the keys the README promises (read by a small parser, runs anywhere),
and ``systemd-analyze verify``/``security`` where systemd-analyze is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[3] / "deploy" / "systemd"
DAEMON = UNITS / "reward-poller.service"
ONCE = UNITS / "reward-poller-once.service"
TIMER = UNITS / "reward-poller-once.timer"
AUDIT = UNITS / "reward-poller-audit.service"
AUDIT_TIMER = UNITS / "reward-poller-audit.timer"
INSTALLED_BINARY = "/opt/reward-poller/bin/reward-poller"

Unit = dict[str, dict[str, list[str]]]


def parse(path: Path) -> Unit:
    """systemd.syntax(7), the parts these files use: [Section], Key=Value, repeated keys
    accumulate, '#'/';' comments, backslash continuation."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not Key=Value: {line}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def seconds(value: str) -> float:
    """systemd.time(7) spans such as 15min, 30s, 1h 30min, 90."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes", "LockPersonality": "yes", "SystemCallArchitectures": "native",
}


@pytest.mark.parametrize("path", [DAEMON, ONCE, AUDIT], ids=lambda p: p.name)
def test_every_service_is_locked_down_and_shares_the_state(path: Path) -> None:
    unit = parse(path)
    service = unit["Service"]
    for key, value in HARDENING.items():
        assert one(unit, "Service", key) == value, key
    assert "@system-service" in service["SystemCallFilter"]
    assert set(one(unit, "Service", "RestrictAddressFamilies").split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6"}
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert one(unit, "Service", "DynamicUser") == "yes"
    assert one(unit, "Service", "User") == "reward-poller"
    assert one(unit, "Service", "StateDirectory") == "reward-poller"
    assert one(unit, "Service", "WorkingDirectory") == "/var/lib/reward-poller"
    credentials = dict(v.split(":", 1) for v in service["LoadCredential"])
    assert credentials["influitive-token"].startswith("/etc/reward-poller/credentials/")
    assert "network-online.target" in one(unit, "Unit", "After")


def test_the_daemon_unit() -> None:
    unit = parse(DAEMON)
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "RestartPreventExitStatus") == "2"  # bad config: no loop
    assert one(unit, "Service", "ExecStart").endswith(" run")
    watchdog = seconds(one(unit, "Service", "WatchdogSec"))
    stop = seconds(one(unit, "Service", "TimeoutStopSec"))
    # Longer than a cycle may take: the watchdog only bites a cycle that hangs, and a stop
    # lets the one in hand end.
    assert watchdog >= 600 and stop > watchdog
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_timer_and_its_oneshot_never_overlap() -> None:
    service, timer = parse(ONCE), parse(TIMER)
    assert one(service, "Service", "Type") == "oneshot"
    assert one(service, "Service", "ExecStart").endswith(" run --run-once")
    assert "Restart" not in service["Service"]
    assert "Install" not in service  # started by the timer only
    # Counted from the end of the last run: a run that takes long delays the next one.
    assert one(timer, "Timer", "OnUnitInactiveSec")
    assert "OnCalendar" not in timer["Timer"]
    assert one(timer, "Timer", "Unit") == ONCE.name
    assert one(timer, "Install", "WantedBy") == "timers.target"
    assert seconds(one(service, "Service", "TimeoutStartSec")) > 0  # a hung run ends


def test_the_audit_timer_runs_the_books_audit_once_a_day() -> None:
    service, timer = parse(AUDIT), parse(AUDIT_TIMER)
    assert one(service, "Service", "Type") == "oneshot"
    assert one(service, "Service", "ExecStart").endswith(" audit")
    assert "Restart" not in service["Service"]  # a discrepancy (exit 1) is shown, not retried
    assert "Install" not in service  # started by the timer only
    # The same secrets as the timer's cycles: the vendors' keys read their order lists.
    assert parse(ONCE)["Service"]["LoadCredential"] == service["Service"]["LoadCredential"]
    assert one(timer, "Timer", "OnCalendar") == "daily"
    assert one(timer, "Timer", "Persistent") == "true"
    assert one(timer, "Timer", "Unit") == AUDIT.name
    assert one(timer, "Install", "WantedBy") == "timers.target"
    assert seconds(one(service, "Service", "TimeoutStartSec")) >= 3600  # slow lists end too


def _installed_copies(tmp_path: Path) -> list[Path]:
    """The units with ExecStart= pointing at this checkout's entry point, so verify finds an
    executable (it checks that the binary exists)."""
    binary = Path(sys.executable).parent / "reward-poller"
    # `make test` installs the package, so the entry point is always there in the test run.
    assert binary.exists(), f"{binary} missing: install the package (make install)"
    copies = []
    for path in (DAEMON, ONCE, TIMER, AUDIT, AUDIT_TIMER):
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace(INSTALLED_BINARY, str(binary)))
        copies.append(copy)
    return copies


needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    copies = _installed_copies(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", *map(str, copies)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # verify prints warnings without failing; the units should have none.
    assert result.stderr.strip() == "", result.stderr


@needs_analyze
@pytest.mark.parametrize("name", [DAEMON.name, ONCE.name, AUDIT.name])
def test_systemd_analyze_security_rates_the_units_ok(tmp_path: Path, name: str) -> None:
    copies = {p.name: p for p in _installed_copies(tmp_path)}
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(copies[name])],
        capture_output=True, text=True, timeout=60,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline mode")
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0  # "OK" on systemd's scale of 0 (safe) to 10
