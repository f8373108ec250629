"""What a start loads: a worker's start pays for every module it imports, every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from poller.ledger import open_ledger


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def test_structlog_is_imported_without_rich_even_where_rich_is_installed() -> None:
    out = _fresh("import poller, structlog.dev, sys; "
                 "print(structlog.dev.rich is None, 'rich' in sys.modules)")
    assert out == "True False"


def test_rich_stays_importable_for_whoever_wants_it() -> None:
    out = _fresh("import poller, importlib.util; "
                 "print(importlib.util.find_spec('rich') is None or "
                 "__import__('rich') is not None)")
    assert out == "True"


def test_a_sqlite_ledger_does_not_load_the_postgresql_dialect(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_ledger(url, migrate=True).close()  # as `db upgrade` leaves it; a run only checks
    out = _fresh("import sys; from poller.ledger import open_ledger; "
                 f"ledger = open_ledger({url!r}); ledger.ping(); "
                 "print(any(m.startswith('sqlalchemy.dialects.postgresql') "
                 "for m in sys.modules))")
    assert out == "False"


COMMAND_MODULES = ("poller.cli.run", "poller.cli.report", "poller.cli.ledger", "poller.cli.check",
                   "poller.cli.release_cmds", "poller.cli.sandbox_cmd", "poller.cli.demo",
                   "poller.cli.audit")


def test_run_imports_no_other_command_module() -> None:
    out = _fresh("import sys, click; from poller.cli.main import cli; "
                 "ctx = click.Context(cli); cli.get_command(ctx, 'run'); "
                 f"print(sorted(m for m in {COMMAND_MODULES!r} if m in sys.modules))")
    assert out == "['poller.cli.run']"


def test_help_lists_every_command_without_importing_one_and_as_each_would_itself() -> None:
    # The listing from the static map, then from the commands themselves once loaded: the
    # same at any terminal width (click shortens both alike).
    out = _fresh(
        "import json, sys, click\n"
        "from poller.cli.main import cli, LAZY_COMMANDS\n"
        "def helps():\n"
        "    out = []\n"
        "    for width in (40, 80, 200):\n"
        "        with click.Context(cli, info_name='reward-poller', terminal_width=width,\n"
        "                           max_content_width=width) as ctx:\n"
        "            out.append(cli.get_help(ctx))\n"
        "    return out\n"
        "lazy = helps()\n"
        f"imported = [m for m in {COMMAND_MODULES!r} if m in sys.modules]\n"
        "with click.Context(cli) as ctx:\n"
        "    COMMANDS = [cli.get_command(ctx, name) for name in LAZY_COMMANDS]\n"
        "def first(text):\n"
        "    return ' '.join(text.split('\\n\\n')[0].split())\n"
        "drift = [c.name for c in COMMANDS if first(c.help) != first(LAZY_COMMANDS[c.name].help)]\n"
        "print(json.dumps([lazy == helps(), imported, drift, sorted(c.name for c in COMMANDS)]))\n"
    )
    same, imported, drift, names = json.loads(out)
    assert imported == [] and drift == []
    assert same
    assert names == ["audit", "check", "console", "db", "demo", "deploy", "init", "ledger",
                     "report", "run",
                     "sandbox", "status"]


def test_a_command_runs_with_the_cyclic_collector_as_python_left_it() -> None:
    # ``reward-poller`` neither pauses the collector during start-up nor freezes what
    # start-up built: the command runs, and the process ends, with collection as usual.
    out = _fresh(
        "import gc, sys\n"
        "from poller.cli import main as m\n"
        "seen = []\n"
        "command = m.run_command\n"
        "def spy(args=None):\n"
        "    seen.append(gc.isenabled())\n"
        "    return command(args)\n"
        "m.run_command = spy\n"
        "sys.argv = ['reward-poller', '--config', '/nonexistent/config.toml', 'status']\n"
        "try:\n"
        "    m.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(seen, gc.isenabled(), gc.get_freeze_count())\n"
    )
    assert out == "[True] True 0"


DAEMON_ONLY = ("apscheduler", "starlette", "uvicorn", "prometheus_client", "poller.compose.daemon",
               "poller.daemon.scheduler", "poller.daemon.runner", "poller.daemon.metrics")


def test_a_run_once_loads_none_of_the_daemons_parts() -> None:
    # What `run --run-once` imports (without [metrics] textfile): the composition root and
    # the one-cycle path, never the scheduler, the listener, its HTTP server or metrics.
    out = _fresh("import sys; import poller.cli.run, poller.compose; "
                 "from poller.compose import Runtime, run_once; "
                 f"print(sorted(m for m in {DAEMON_ONLY!r} if m in sys.modules))")
    assert out == "[]"


def test_the_configuration_imports_no_daemon_module() -> None:
    out = _fresh("import sys; from poller.config import load_config, Config; "
                 "print(sorted(m for m in sys.modules if m.startswith(('poller.daemon', "
                 "'poller.compose'))))")
    assert out == "[]"
