"""Known secret values never leak: the whole demo, and a fault scenario (crash, errors that
echo the token back, wrong credentials, lost answers), at debug level. None of the secrets
appears in any log line, stdout or stderr, exception text, cassette, or any column of any
table of the ledger. (The config file, where the user put them, is the one place they are.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select

import poller.sandbox.services as standins
from poller.sandbox.influitive import Fault
from poller.worker.failpoints import EXIT_CODE
from tests.system.faults.harness import SECRETS, TOKEN, Stage, cli_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
WRONG_TOKEN = "faults-wrong-token-0e6c1d9a4b"

# The demo runs on the sandbox's stand-ins and their credentials.
DEMO_SECRETS = [value for name, value in vars(standins).items()
                if isinstance(value, str) and re.search(r"TOKEN|KEY|SECRET|PASSWORD", name)]


def dump_ledger(url: str) -> str:
    """Every column of every row of every table, as text."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        out = []
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)):
                    out.append(f"{table.name}: " + " | ".join(map(str, row)))
        return "\n".join(out)
    finally:
        engine.dispose()


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def test_the_demo_leaks_no_secret(tmp_path: Path) -> None:
    assert len(DEMO_SECRETS) >= 2  # the Influitive token and the Tremendous key at least
    done = subprocess.run(
        [sys.executable, "-m", "poller", "--log-format", "json", "--log-level", "debug",
         "demo", "--keep"],
        capture_output=True, text=True, timeout=120, env=cli_env(), cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert leaks(done.stdout + done.stderr, DEMO_SECRETS) == []
    kept = re.search(r"kept: (\S+)", done.stdout)
    assert kept, done.stdout
    workdir = Path(kept.group(1))
    try:
        ledger = dump_ledger(f"sqlite:///{workdir / 'ledger.db'}")
        assert "4812" in ledger  # the dump really has the redemptions
        assert leaks(ledger, DEMO_SECRETS) == []
        for path in workdir.rglob("*"):
            if path.is_file() and path.name != "config.toml" and not path.name.startswith(
                    "ledger.db"):
                assert leaks(path.read_text(errors="replace"), DEMO_SECRETS) == [], path
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_fault_scenario_leaks_no_secret(sqlite_stage: Stage) -> None:
    stage = sqlite_stage
    stage.log_level = "debug"
    stage.seed({1: "good", 2: "refused", 3: "held", 4: "good", 5: "good"})
    echo = json.dumps({"error": f"bad header: Authorization: Token {TOKEN}"})
    config = stage.config(concurrency=1)
    # Error pages that echo our token back, on the poll (both tries) and on decisions.
    stage.influitive.add_faults(*[Fault(status=500, body=echo, match="GET")] * 2)
    echoed = stage.run_once(config)
    assert echoed.returncode == 1 and "Token [redacted]" in echoed.stderr
    stage.influitive.add_faults(*[Fault(status=503, body=echo, match="/decision/")] * 2)
    stage.tremendous.fail(401, 1, path="/orders")
    stage.tremendous.lose_answers(1, mode="drop")
    stage.tremendous.garbage(1)
    crashed = stage.run_once(config, failpoint="after_ordered:2")
    assert crashed.returncode == EXIT_CODE
    stage.wait_lease()
    stage.settle(config)
    assert stage.violations() == []
    # Influitive rejects a wrong token: the error names the status, never the token.
    wrong = stage.config(name="wrong.toml")
    wrong.write_text(wrong.read_text().replace(TOKEN, WRONG_TOKEN))
    rejected = stage.run_once(wrong)
    assert rejected.returncode == 1 and "401" in rejected.stderr
    stage.cli("ledger", "list", "--json", config=config)
    stage.cli("ledger", "show", "1", "--json", config=config)
    stage.cli("status", config=config)

    secrets = [*SECRETS, WRONG_TOKEN]
    for run in stage.runs:
        assert leaks(run.stdout + run.stderr, secrets) == [], run.stderr[-2000:]
    ledger = dump_ledger(stage.ledger_url)
    assert "Tremendous rejected the API key" in ledger  # the 401 is in the story
    assert "Token [redacted]" in ledger  # so is the echoing error page, scrubbed
    assert leaks(ledger, secrets) == []


def test_no_cassette_holds_a_known_secret() -> None:
    """Every secret-looking constant of the test suite (the keys cassettes were recorded
    with), the demo's and the fault suite's: none is in any cassette."""
    found: set[str] = {*SECRETS, WRONG_TOKEN, *DEMO_SECRETS}
    pattern = re.compile(r'^\s*[A-Z_]*(?:TOKEN|KEY|SECRET)[A-Z_]*\s*=\s*"([^"]{10,})"',
                         re.MULTILINE)
    for source in (ROOT / "tests").rglob("*.py"):
        found.update(pattern.findall(source.read_text()))
    cassettes = list((ROOT / "tests").rglob("cassettes/**/*.yaml"))
    assert len(found) > 10 and len(cassettes) > 10
    for cassette in cassettes:
        assert leaks(cassette.read_text(errors="replace"), sorted(found)) == [], cassette
