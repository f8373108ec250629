"""The deployment rehearsal: docs/deployment.md followed step by step on this machine, with
nothing from the repository but the built wheel, and ``reward-poller sandbox`` standing in
for Influitive and the vendors (as the page's "Rehearse it first" section does).

* Install: the wheel into a virtualenv of the system's python3 under /opt (conftest.py).
* ``sudo reward-poller init`` of a config under /etc (``/etc/reward-poller-rehearsal-<random>``
  standing in for /etc/reward-poller): root's, mode 0600.
* ``sandbox --write-config`` fills it in; the secrets move into ``credentials/`` files named
  by ``*_file`` keys; ``[server] listen`` is set.
* ``deploy systemd --prefix`` writes the units; they are parsed, and their ``ExecStart=`` run
  the way systemd runs it (tests/system/units.py): as an unprivileged user, with the unit's
  environment, state directory and credentials.
* The daemon: READY=1, ``/healthz``, a redemption fulfilled, SIGTERM, a clean exit. The timer's
  one-shot unit: one run that fulfils. ``check`` as the docs' ``rp`` runs it.
* The books audit's unit (step 7): after that run the books balance (exit 0); with an orphan
  injected at the Tremendous stand-in it exits 1 naming it; its textfile says each.

The tests after "Beyond the first start" check what the product promises of a running
deployment (metrics across timer runs and the alert they fire, signals in a run, JSON logs,
advocate messages): each is its own test, so the first start's tests say on their own whether
the documented set-up works.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from poller.release.files import UNITS
from poller.sandbox.services import SERVICES
from tests.system.conftest import SERVICE_USER, require_tool, scratch_dir
from tests.system.release.conftest import clean_env, free_port_base, read_until, start, stop
from tests.system.units import Running, ServiceManager, Unit, load_unit

pytestmark = [pytest.mark.install, pytest.mark.e2e, pytest.mark.system,
              pytest.mark.timeout(900)]

DAEMON = "reward-poller.service"
ONCE = "reward-poller-once.service"
AUDIT = "reward-poller-audit.service"
READY = "ready; Ctrl-C stops the stand-ins"
REWARD_37 = {"reward_id": 37, "reward_name": "$25 Amazon gift card"}


@dataclass(repr=False)
class Deployment:
    """The deployed install: its paths, the steps' results, and the parsed units."""

    venv: Path
    etc: Path
    scratch: Path
    port_base: int
    listen: str
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)

    @property
    def exe(self) -> str:
        return str(self.venv / "bin" / "reward-poller")

    @property
    def config(self) -> Path:
        return self.etc / "config.toml"

    @property
    def credentials(self) -> Path:
        return self.etc / "credentials"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command as the docs run it with sudo: as root, from a folder of no account."""
        return subprocess.run([self.exe, *args], cwd="/", capture_output=True, text=True,
                              timeout=timeout, env=clean_env())

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port_base + SERVICES.index(service)}"

    def manager(self, name: str) -> ServiceManager:
        """A service manager of its own (own state directory): each test starts afresh."""
        return ServiceManager(self.scratch / name, SERVICE_USER)

    @contextmanager
    def sandbox(self, *, empty: bool = False) -> Iterator[None]:
        """``reward-poller sandbox`` on the deployment's ports, for one test."""
        process = start("--config", str(self.config), "sandbox", "--port-base",
                        str(self.port_base), *(["--empty"] if empty else []), cwd=Path("/"),
                        command=[self.exe])
        try:
            read_until(process, lambda line: READY in line, timeout=120)
            yield
        finally:
            stop(process)

    @contextmanager
    def edited(self, path: Path, edit: Callable[[str], str]) -> Iterator[None]:
        """A root-only file edited for one test (as an operator edits it), then restored."""
        before = path.read_text()
        path.write_text(edit(before))
        try:
            yield
        finally:
            path.write_text(before)

    def rejected_key(self) -> AbstractContextManager[None]:
        """Tremendous's API key replaced by one it rejects (401: an operator-facing error)."""
        return self.edited(self.credentials / "tremendous-api-key",
                           lambda _: "a-key-tremendous-rejects\n")

    def add_redemption(self, ident: int, **extra: Any) -> None:
        item = {"id": ident, **REWARD_37, "contact": {
            "id": ident + 100000, "email": f"advocate{ident}@example.com",
            "name": "New Advocate"}, **extra}
        answer = httpx.post(f"{self.url('influitive')}/_standin/redemptions", json=item)
        assert answer.status_code == 201, answer.text

    def decisions(self) -> dict[str, dict[str, Any]]:
        answer = httpx.get(f"{self.url('influitive')}/_standin/decisions").json()
        return {str(d["id"]): d for d in answer["decisions"]}

    def rp(self, manager: ServiceManager, *args: str) -> tuple[int, Running]:
        """docs/deployment.md's ``rp``: a command with the daemon unit's user, state directory
        and credentials (``systemd-run -p DynamicUser=yes -p LoadCredential=...``)."""
        return manager.run(self.units[DAEMON], argv=[
            self.exe, "--config", "${CREDENTIALS_DIRECTORY}/config.toml", *args])


def set_key(text: str, section: str, line_pattern: str, new_line: str) -> str:
    """Replace the first line matching ``line_pattern`` within ``[section]``."""
    start_at = text.index(f"[{section}]\n")
    end_at = text.find("\n[", start_at + 1)
    end_at = len(text) if end_at < 0 else end_at
    body, count = re.subn(line_pattern, new_line, text[start_at:end_at], count=1,
                          flags=re.MULTILINE)
    assert count == 1, f"no line {line_pattern!r} in [{section}]"
    return text[:start_at] + body + text[end_at:]


def write_secret(path: Path, value: str) -> None:
    """``sudo sh -c 'umask 077; cat > PATH'``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")


def quiet_port_base(count: int) -> int:
    """Like ``free_port_base``, below the kernel's ephemeral range: the rehearsal's ports stay
    bound for minutes, and an outgoing connection of any process on the machine could take a
    port of that range in the meantime."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(50):
        base = free_port_base(count)
        if base + count <= low:
            return base
    return free_port_base(count)


@pytest.fixture(scope="module")
def deployment(installed: Path) -> Iterator[Deployment]:
    base = quiet_port_base(len(SERVICES) + 1)
    done = Deployment(venv=installed, etc=scratch_dir("/etc"), scratch=scratch_dir("/tmp"),
                      port_base=base, listen=f"127.0.0.1:{base + len(SERVICES)}")
    try:
        _deploy(done)
        yield done
    finally:
        shutil.rmtree(done.etc, ignore_errors=True)
        shutil.rmtree(done.scratch, ignore_errors=True)


def _deploy(d: Deployment) -> None:
    # "init": sudo install -d -m 0755 /etc/reward-poller (scratch_dir); sudo reward-poller init
    d.results["init"] = d.cli("init", str(d.config))
    assert d.results["init"].returncode == 0, d.results["init"].stderr

    # "Rehearse it first": the sandbox fills the config in for its stand-ins.
    process = start("--config", str(d.config), "sandbox", "--write-config", "--port-base",
                    str(d.port_base), cwd=Path("/"), command=[d.exe])
    try:
        read_until(process, lambda line: READY in line, timeout=120)
    finally:
        stop(process)

    # "Secrets": into root-only files of credentials/, named by *_file keys.
    d.credentials.mkdir(mode=0o700)
    filled = tomllib.loads(d.config.read_text())
    write_secret(d.credentials / "influitive-token", filled["influitive"]["api_token"])
    write_secret(d.credentials / "tremendous-api-key",
                 filled["vendors"]["tremendous"]["api_key"])
    text = d.config.read_text()
    text = set_key(text, "influitive", r"^api_token = .*$", 'api_token_file = "influitive-token"')
    text = set_key(text, "vendors.tremendous", r"^api_key = .*$",
                   'api_key_file = "tremendous-api-key"')
    # "[server] listen" for /healthz and /metrics.
    text = set_key(text, "server", r"^# listen = .*$", f'listen = "{d.listen}"')
    d.config.write_text(text)

    # "deploy systemd": into the folder systemd reads (a scratch one standing in for it).
    units = d.etc / "systemd"
    units.mkdir()
    d.results["deploy"] = d.cli("--config", str(d.config), "deploy", "systemd", "--prefix",
                                str(units))
    for name in UNITS:
        if (units / name).is_file():
            d.units[name] = load_unit(units / name)


# --- the first start -------------------------------------------------------------------------


def test_init_as_root_writes_a_config_only_root_can_read(deployment: Deployment) -> None:
    init = deployment.results["init"]
    assert init.returncode == 0, init.stderr
    state = deployment.config.stat()
    assert (state.st_uid, oct(state.st_mode & 0o777)) == (0, "0o600")


def test_deploy_systemd_hands_the_config_and_secrets_over_as_credentials(
    deployment: Deployment,
) -> None:
    deploy = deployment.results["deploy"]
    assert deploy.returncode == 0, deploy.stderr
    assert "warning" not in deploy.stderr, deploy.stderr  # /opt and /etc hide nothing
    assert sorted(deployment.units) == sorted(UNITS)
    creds = deployment.credentials
    for name in (DAEMON, ONCE):
        unit = deployment.units[name]
        assert unit.value("DynamicUser") == "yes"
        assert unit.credentials() == [
            ("config.toml", str(deployment.config)),
            ("influitive-token", str(creds / "influitive-token")),
            ("tremendous-api-key", str(creds / "tremendous-api-key")),
        ]
        words = (unit.value("ExecStart") or "").split()
        assert words[:3] == [deployment.exe, "--config", "${CREDENTIALS_DIRECTORY}/config.toml"]


def test_the_service_user_reading_the_config_itself_is_told_the_fix(
    deployment: Deployment,
) -> None:
    """The set-up that failed: the unprivileged user given the root-only file's path."""
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", deployment.exe,
         "--config", str(deployment.config), "check"],
        cwd="/", capture_output=True, text=True, timeout=120, env=clean_env())
    assert result.returncode == 2
    assert f"{deployment.config}: cannot be read by user {SERVICE_USER}" in result.stderr
    assert f"LoadCredential=config.toml:{deployment.config}" in result.stderr


def test_check_as_the_service_user_with_its_credentials(deployment: Deployment) -> None:
    manager = deployment.manager("check")
    with deployment.sandbox():
        code, run = deployment.rp(manager, "check")
    assert code == 0, run.stdout + run.stderr
    assert "all checks passed" in run.stdout


@dataclass
class DaemonRun:
    ready: bool = False
    healthz: tuple[int, str] | None = None
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    exit_code: int | None = None
    stopping: bool = False
    ledger: dict[str, str] = field(default_factory=dict)
    stdout: str = ""
    stderr_lines: list[str] = field(default_factory=list)


def _until(what: Callable[[], Any], timeout: float) -> Any:
    """``what()`` once it returns something true, else its last answer after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = what()
        except httpx.HTTPError:
            answer = None
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


@pytest.fixture(scope="module")
def daemon(deployment: Deployment) -> DaemonRun:
    """reward-poller.service started against a seeded sandbox, watched, then stopped as
    ``systemctl stop`` does. Records what happened; the tests below judge it."""
    manager = deployment.manager("daemon")
    unit = deployment.units[DAEMON]
    seen = DaemonRun()
    with deployment.sandbox():
        running = manager.start(unit)
        alive = lambda: running.process.poll() is None  # noqa: E731
        try:
            seen.ready = running.notified("READY=1", timeout=60)

            def healthy() -> tuple[int, str] | None:
                answer = httpx.get(f"http://{deployment.listen}/healthz", timeout=5)
                seen.healthz = (answer.status_code, answer.text)
                return seen.healthz if answer.status_code == 200 else None

            if alive():
                _until(healthy, timeout=60)

            def fulfilled() -> dict[str, dict[str, Any]] | None:
                seen.decisions = deployment.decisions()
                return seen.decisions if "4812" in seen.decisions else None

            if alive():
                _until(fulfilled, timeout=60)
        finally:
            seen.exit_code = manager.stop(running, unit, at_most=60)  # systemctl stop
    seen.stopping = any("STOPPING=1" in m.splitlines() for m in running.notifications)
    seen.stdout = running.stdout
    seen.stderr_lines = list(running.stderr_lines)
    code, listed = deployment.rp(manager, "ledger", "list", "--json")  # step 6's `rp`
    if code == 0:
        seen.ledger = {r["redemption_id"]: r["state"] for r in json.loads(listed.stdout)}
    return seen


def test_daemon_tells_systemd_it_is_ready(daemon: DaemonRun) -> None:
    assert daemon.ready, "".join(daemon.stderr_lines)


def test_daemon_serves_healthz(daemon: DaemonRun) -> None:
    assert daemon.healthz is not None and daemon.healthz[0] == 200, daemon.healthz


def test_daemon_fulfils_a_redemption(daemon: DaemonRun) -> None:
    assert daemon.decisions.get("4812", {}).get("verb") == "fulfill", daemon.decisions
    assert daemon.ledger.get("4812") == "fulfilled", daemon.ledger  # `rp ledger list`


def test_daemon_stops_cleanly_on_sigterm(daemon: DaemonRun) -> None:
    assert daemon.exit_code == 0, "".join(daemon.stderr_lines[-20:])
    assert daemon.stopping


def test_timer_unit_runs_one_cycle_that_fulfils(deployment: Deployment) -> None:
    manager = deployment.manager("once")
    with deployment.sandbox():
        code, run = manager.run(deployment.units[ONCE])
        decisions = deployment.decisions()
    assert code == 0, run.stdout + run.stderr
    assert run.stdout.startswith("run: polled "), run.stdout
    assert decisions["4812"]["verb"] == "fulfill"
    # The ledger is where StateDirectory= and WorkingDirectory= put it, the user's own.
    ledger = manager.state_directory(deployment.units[ONCE]) / "reward-poller.db"
    assert ledger.stat().st_uid == manager.user.pw_uid


ORPHANS_AT_TREMENDOUS = 'reward_poller_audit_discrepancies{kind="orphan",vendor="tremendous"}'


def test_audit_unit_balances_the_books_then_finds_an_injected_orphan(
    deployment: Deployment,
) -> None:
    """docs/deployment.md step 7: reward-poller-audit.service's ExecStart, as its user, with
    its credentials and the state directory it shares with the timer's unit (the ledger)."""
    manager = deployment.manager("audit")
    textdir = manager.scratch / "textfile_collector"  # node_exporter's, ReadWritePaths=
    textdir.mkdir()
    os.chown(textdir, manager.user.pw_uid, manager.user.pw_gid)
    with_textfile = lambda text: set_key(  # noqa: E731
        text, "metrics", r"^# textfile = .*$", f'textfile = "{textdir / "reward-poller.prom"}"')
    audit_file = textdir / "reward-poller-audit.prom"
    with deployment.edited(deployment.config, with_textfile), deployment.sandbox():
        code, once = manager.run(deployment.units[ONCE])
        assert code == 0, once.stderr
        balanced_code, balanced = manager.run(deployment.units[AUDIT])
        balanced_metrics = _textfile_samples(audit_file.read_text())
        injected = deployment.cli("sandbox", "--port-base", str(deployment.port_base),
                                  "--inject", "tremendous:orphan")
        assert injected.returncode == 0, injected.stdout + injected.stderr
        found = re.search(r"injected: order (\S+) ", injected.stdout)
        assert found, injected.stdout
        orphan_code, orphan = manager.run(deployment.units[AUDIT])
        orphan_metrics = _textfile_samples(audit_file.read_text())
    assert manager.state_directory(deployment.units[AUDIT]) == manager.state_directory(
        deployment.units[ONCE])  # one ledger

    assert balanced_code == 0, balanced.stdout + balanced.stderr
    assert "The books balance." in balanced.stdout
    assert re.search(r"(?m)^tremendous +3 +3 ", balanced.stdout), balanced.stdout
    assert re.search(r"(?m)^manual .*cannot be audited: ", balanced.stdout)
    assert balanced_metrics["reward_poller_audit_last_run_balanced{}"] == 1.0
    assert balanced_metrics["reward_poller_audit_last_run_timestamp_seconds{}"] > 0
    assert balanced_metrics[ORPHANS_AT_TREMENDOUS] == 0.0

    assert orphan_code == 1, orphan.stdout + orphan.stderr
    assert re.search(rf"(?m)^tremendous +orphan +- +{re.escape(found[1])} ", orphan.stdout), (
        orphan.stdout)
    assert "The books do not balance: 1 discrepancy." in orphan.stdout
    assert orphan_metrics["reward_poller_audit_last_run_balanced{}"] == 0.0
    assert orphan_metrics[ORPHANS_AT_TREMENDOUS] == 1.0
    assert sum(v for k, v in orphan_metrics.items()
               if k.startswith("reward_poller_audit_discrepancies{")) == 1.0
    assert (orphan_metrics["reward_poller_audit_last_run_timestamp_seconds{}"]
            >= balanced_metrics["reward_poller_audit_last_run_timestamp_seconds{}"])
    _json_lines(orphan.stderr_lines)  # the journal's stream: JSON lines, as every unit's


# --- beyond the first start ------------------------------------------------------------------


PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
"""sd-daemon's levels: journald reads a line's ``<N>`` prefix as its priority and strips it."""


def _json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Each line as journald stores it: its ``<N>`` priority (stderr is the journal stream,
    ``JOURNAL_STREAM``) matching the line's level, then one JSON object."""
    parsed = []
    for line in lines:
        match = re.fullmatch(r"<(\d)>(.*)", line.rstrip("\n"), flags=re.S)
        assert match, f"no journald priority: {line!r}"
        try:
            item = json.loads(match.group(2))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(item, dict), line
        assert int(match.group(1)) == PRIORITIES[item["level"]], line
        parsed.append(item)
    return parsed


def test_service_logs_are_json_lines_off_a_terminal(
    deployment: Deployment, daemon: DaemonRun,
) -> None:
    """stderr is the journal's stream, no terminal: every line a JSON object, from the first
    line to the last: the daemon's, and a one-shot run's that meets a rejected vendor key
    (exit 1, its last line naming the fix)."""
    assert daemon.stderr_lines
    _json_lines(daemon.stderr_lines)
    manager = deployment.manager("json")
    with deployment.rejected_key(), deployment.sandbox(empty=True):
        deployment.add_redemption(9001)
        code, run = manager.run(deployment.units[ONCE])
    assert code == 1, run.stderr
    assert run.stderr_lines
    _json_lines(run.stderr_lines)


def _in_flight(port: int) -> bool:
    """Whether a TCP connection to 127.0.0.1:``port`` is established (the run's request)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_a_timer_run_exits_128_plus_it_with_one_json_line(
    deployment: Deployment, signum: int, code: int,
) -> None:
    """``systemctl stop`` (SIGTERM) or Ctrl-C (SIGINT) while the run waits on Influitive:
    the shell's convention for a death by signal, and one log line saying so."""
    manager = deployment.manager(f"signal-{signum}")
    port = deployment.port_base + SERVICES.index("influitive")
    with deployment.sandbox(empty=True):
        slow = httpx.post(f"{deployment.url('influitive')}/_standin/faults", json={"delay": 20})
        assert slow.status_code == 200, slow.text
        running = manager.start(deployment.units[ONCE])
        assert _until(lambda: _in_flight(port), timeout=60), running.stderr
        time.sleep(0.5)
        before = len(running.stderr_lines)
        running.signal(signum)
        exit_code = running.wait(timeout=30)
    after = _json_lines(running.stderr_lines[before:])
    assert exit_code == code, running.stderr
    # The poll in hand is finished and recorded; then one line says the run was stopped, and
    # nothing after the signal reads as a failure.
    stops = [line for line in after if line["event"] == "run.interrupted"]
    assert len(stops) == 1, after
    assert after[-1] is stops[0], after
    assert stops[0]["exit_code"] == code
    assert not [line for line in after if line["level"] in ("error", "critical")], after
    _json_lines(running.stderr_lines)


def _textfile_samples(text: str) -> dict[str, float]:
    """A Prometheus textfile's samples as ``name{labels}`` -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


NODE_LABELS = {"job": "node", "instance": "reward-poller-host:9100"}
"""What node_exporter's scrape adds to every textfile series."""


def _promtool_test(rules: Path, textfiles: list[str], alert: str, tmp: Path) -> str:
    """A ``promtool test rules`` file: the textfiles' samples 5 minutes apart (the timer's
    interval), evaluated after the last one, expecting ``alert`` on vendor tremendous."""
    import yaml

    runs = [_textfile_samples(text) for text in textfiles]
    extra = ",".join(f'{k}="{v}"' for k, v in NODE_LABELS.items())
    series = []
    for key in sorted(set().union(*runs)):
        values = [run.get(key) for run in runs]
        if any(v is not None and v != v for v in values):  # NaN: not an input series value
            continue
        name, labels = key.split("{", 1)
        labels = labels[:-1]
        series.append({
            "series": f"{name}{{{labels + ',' if labels else ''}{extra}}}",
            "values": " ".join("_" if v is None else repr(float(v)) for v in values),
        })
    rule = next(r for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == alert)
    labels = {"vendor": "tremendous", **NODE_LABELS, **rule.get("labels", {})}

    def render(template: str) -> str:
        out = re.sub(r"{{\s*\$labels\.(\w+)\s*}}", lambda m: labels.get(m.group(1), ""),
                     template)
        assert "{{" not in out, f"{alert}: template not rendered here: {template}"
        return out

    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "5m",
            "input_series": series,
            "alert_rule_test": [{
                "eval_time": f"{5 * (len(textfiles) - 1)}m",
                "alertname": alert,
                "exp_alerts": [{
                    "exp_labels": labels,
                    "exp_annotations": {k: render(v) for k, v in
                                        rule.get("annotations", {}).items()},
                }],
            }],
        }],
    }
    path = tmp / "rehearsal.test.yml"
    path.write_text(json.dumps(test, indent=1))  # JSON is YAML
    return str(path)


def test_timer_runs_with_a_rejected_vendor_key_fire_the_operator_alert(
    deployment: Deployment, tmp_path: Path,
) -> None:
    """Two timer runs, each meeting Tremendous rejecting the API key once: the textfile's
    counters add up across runs, so Prometheus sees them grow and the rule fires."""
    promtool = require_tool("promtool", "prometheus")
    manager = deployment.manager("alert")
    textdir = manager.scratch / "textfile_collector"  # node_exporter's, ReadWritePaths=
    textdir.mkdir()
    os.chown(textdir, manager.user.pw_uid, manager.user.pw_gid)
    textfile = textdir / "reward-poller.prom"
    with_textfile = lambda text: set_key(  # noqa: E731
        text, "metrics", r"^# textfile = .*$", f'textfile = "{textfile}"')
    textfiles, codes = [], []
    with (deployment.edited(deployment.config, with_textfile), deployment.rejected_key(),
          deployment.sandbox(empty=True)):
        for ident in (7001, 7002):
            deployment.add_redemption(ident)
            code, run = manager.run(deployment.units[ONCE])
            codes.append((code, run.stderr))
            textfiles.append(textfile.read_text())
    assert [c for c, _ in codes] == [1, 1], codes  # an operator-facing error: exit 1

    # The rules as the install ships them (docs/metrics.md, "Alert rules").
    rules = tmp_path / "rules" / "reward-poller.yml"
    written = deployment.cli("deploy", "prometheus", "--output", str(rules))
    assert written.returncode == 0, written.stdout + written.stderr
    test_file = _promtool_test(rules, textfiles, "RewardPollerOperatorFacingErrors", tmp_path)
    result = subprocess.run([promtool, "test", "rules", test_file], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr + "\n".join(textfiles)


def test_advocate_messages_are_the_configured_templates_whatever_the_urls(
    deployment: Deployment,
) -> None:
    """A URL's user name (here the alerts webhook's, ``advocate@``) is kept out of logs, but
    never out of what the advocate reads: the message Influitive receives is the template."""
    template = "Your {reward_name} is on its way. Thank you for being an advocate!"

    def configure(text: str) -> str:
        text = set_key(text, "alerts", r"^# webhook_url = .*$",
                       'webhook_url = "http://advocate@127.0.0.1:9/hooks/reward-poller"')
        return set_key(text, "fulfillment", r"^fulfilled_message = .*$",
                       f"fulfilled_message = {json.dumps(template)}")

    manager = deployment.manager("messages")
    with deployment.edited(deployment.config, configure), deployment.sandbox(empty=True):
        deployment.add_redemption(8001)
        code, run = manager.run(deployment.units[ONCE])
        decisions = deployment.decisions()
    assert code == 0, run.stderr
    assert decisions["8001"]["verb"] == "fulfill"
    expected = template.format(reward_name=REWARD_37["reward_name"])
    assert decisions["8001"]["message"].encode() == expected.encode()
