"""``reward-poller check`` tests the ledger: it connects, reads the schema's revision (and
agrees with ``db current`` on what to do and on the exit code) and proves a write, rolled
back; a SQLite folder the user cannot write fails ``check`` and ``run`` alike, naming the
folder and the user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from poller.cli.main import cli
from poller.ledger import migrate, open_ledger
from poller.sandbox import influitive as influitive_standin
from poller.sandbox.server import ServerThread, free_port

TOKEN = "ledger-check-influitive-token-31"
ORG = "check-org"


@pytest.fixture(scope="module")
def influitive_url() -> Iterator[str]:
    """An Influitive stand-in that accepts the config's credentials: only the ledger can
    fail these checks."""
    app = influitive_standin.create_app(influitive_standin.InfluitiveState(),
                                        api_token=TOKEN, org_id=ORG)
    with ServerThread(app) as url:
        yield url


def write_config(folder: Path, influitive_url: str, url: str, *, schema: str | None = None
                 ) -> Path:
    path = folder / "config.toml"
    path.write_text(f"""
[influitive]
base_url = "{influitive_url}"
api_token = "{TOKEN}"
org_id = "{ORG}"

[ledger]
url = "{url}"
{f'schema = "{schema}"' if schema else ""}
""")
    return path


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def ledger_row(output: str) -> str:
    """The ledger's line of the table ``check`` prints."""
    return next(line for line in output.splitlines() if line.startswith("ledger "))


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_closed_postgresql_port_fails_the_check_naming_the_ledger(
    tmp_path: Path, influitive_url: str
) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/reward_poller_test"
    result = invoke(write_config(tmp_path, influitive_url, url), "check")
    assert result.exit_code == 1
    assert "FAIL" in ledger_row(result.output) and "unavailable" in ledger_row(result.output)
    assert "all checks passed" not in result.output
    assert "check found 1 problem: ledger" in result.stderr

    as_json = invoke(write_config(tmp_path, influitive_url, url), "check", "--json")
    assert as_json.exit_code == 1
    found = json.loads(as_json.stdout)
    assert found["ledger"]["ok"] is False and found["influitive"]["ok"] is True


@pytest.mark.postgres
def test_an_unmigrated_postgresql_ledger_check_and_db_current_agree(
    tmp_path: Path, influitive_url: str, empty_pg_url: str
) -> None:
    config = write_config(tmp_path, influitive_url, empty_pg_url)
    check = invoke(config, "check")
    current = invoke(config, "db", "current")
    run = invoke(config, "run", "--run-once")
    assert check.exit_code == current.exit_code == run.exit_code == 1
    for result in (check, current, run):
        assert "no reward-poller tables yet" in result.output
        assert "run `reward-poller db upgrade`" in result.output
    assert "FAIL" in ledger_row(check.output)

    migrate.upgrade(empty_pg_url, "0004")
    check, current = invoke(config, "check"), invoke(config, "db", "current")
    assert check.exit_code == current.exit_code == 1
    assert "at revision 0004" in check.output and "at revision 0004" in current.output
    assert "db upgrade" in check.output and "db upgrade" in current.output

    migrate.upgrade(empty_pg_url)
    check, current = invoke(config, "check"), invoke(config, "db", "current")
    assert check.exit_code == current.exit_code == 0, check.output
    assert "writable" in ledger_row(check.output) and "all checks passed" in check.output
    # The write that proved it was rolled back.
    engine = create_engine(empty_pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM request_log "
                                     "WHERE scope = 'reward-poller check'")).scalar_one() == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_check_reports_on_the_configured_schema(
    tmp_path: Path, influitive_url: str, empty_pg_url: str
) -> None:
    base = make_url(empty_pg_url)
    schema = f"{base.query['options']}".split("=", 1)[1] + "_keyed"
    plain = base.difference_update_query(["options"]).render_as_string(hide_password=False)
    config = write_config(tmp_path, influitive_url, plain, schema=schema)
    try:
        before = invoke(config, "check")
        assert before.exit_code == 1
        assert f"(schema {schema}) has no reward-poller tables yet" in before.output
        assert invoke(config, "db", "upgrade").exit_code == 0
        after = invoke(config, "check")
        assert after.exit_code == 0, after.output
        assert f"(schema {schema}): revision {migrate.head()}" in ledger_row(after.output)
    finally:
        engine = create_engine(plain, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


@pytest.mark.postgres
def test_a_server_that_refuses_writes_fails_the_check(
    tmp_path: Path, influitive_url: str, pg_url: str
) -> None:
    base = make_url(pg_url)
    read_only = base.update_query_dict({
        "options": f"{base.query['options']} -cdefault_transaction_read_only=on"})
    url = read_only.render_as_string(hide_password=False)
    result = invoke(write_config(tmp_path, influitive_url, url), "check")
    assert result.exit_code == 1
    row = ledger_row(result.output)
    assert "FAIL" in row and "refuses a write" in row and "read-only transaction" in row


# --- SQLite -----------------------------------------------------------------------------


def test_a_writable_sqlite_ledger_passes_and_a_missing_one_is_fine(
    tmp_path: Path, influitive_url: str
) -> None:
    config = write_config(tmp_path, influitive_url, f"sqlite:///{tmp_path / 'ledger.db'}")
    missing = invoke(config, "check")
    assert missing.exit_code == 0, missing.output
    assert "no ledger yet: the first `run` creates" in ledger_row(missing.output)
    assert not (tmp_path / "ledger.db").exists()  # a check creates nothing

    migrate.upgrade(f"sqlite:///{tmp_path / 'ledger.db'}", "0003")
    behind = invoke(config, "check")
    assert behind.exit_code == 0  # SQLite migrates itself at the next run
    assert "at revision 0003; the next `run` migrates it" in ledger_row(behind.output)

    open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}").close()
    ready = invoke(config, "check")
    assert ready.exit_code == 0
    assert "writable" in ledger_row(ready.output)


UNPRIVILEGED = 65534  # nobody, on every Linux distribution


def _unprivileged() -> tuple[list[str], str]:
    """The command prefix that runs a command as a user without write access to a folder
    made read-only by chmod, and that user's name. Root passes every permission check, so
    as root (CI) the command runs as ``nobody`` (setpriv, or runuser); otherwise as the
    current user, whom chmod does stop."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid()).pw_name
    try:
        name = pwd.getpwuid(UNPRIVILEGED).pw_name
    except KeyError:
        name = f"uid {UNPRIVILEGED}"
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}",
                "--clear-groups"], name
    assert shutil.which("runuser"), "running as root needs setpriv or runuser to drop it"
    return ["runuser", "-u", name, "--"], name


@pytest.fixture
def read_only_folder() -> Iterator[Path]:
    """A folder in /tmp that an unprivileged user can reach (pytest's tmp_path is private
    to root when the tests run as root), with a ``ledger`` folder inside nobody but root may
    write."""
    top = Path(tempfile.mkdtemp(prefix="rp-ro-", dir="/tmp"))
    try:
        top.chmod(0o755)
        (top / "ledger").mkdir(mode=0o755)
        yield top
    finally:
        (top / "ledger").chmod(0o755)
        shutil.rmtree(top)


def _run_as_unprivileged(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    prefix, _ = _unprivileged()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}
    env["HOME"] = str(config.parent)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "poller", "--log-format", "json", "--config",
         str(config), *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=config.parent,
    )


@pytest.mark.parametrize("existing", [False, True], ids=["no-ledger-yet", "existing-ledger"])
def test_a_read_only_sqlite_folder_fails_check_and_run_naming_it(
    read_only_folder: Path, influitive_url: str, existing: bool
) -> None:
    folder = read_only_folder / "ledger"
    path = folder / "ledger.db"
    if existing:
        open_ledger(f"sqlite:///{path}").close()
        path.chmod(0o666)  # the file itself may be written: the folder is what stops it
    folder.chmod(0o555)
    config = write_config(read_only_folder, influitive_url, f"sqlite:///{path}")
    config.chmod(0o644)
    _, user = _unprivileged()
    cause = f"the folder {folder} is not writable by user {user}"

    check = _run_as_unprivileged(config, "check")
    assert check.returncode == 1, check.stderr
    assert "FAIL" in ledger_row(check.stdout) and cause in check.stdout
    assert "check found 1 problem: ledger" in check.stderr

    run = _run_as_unprivileged(config, "run", "--run-once")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert cause in last, run.stderr
    assert "unable to open database file" not in run.stderr
    assert sorted(p.name for p in folder.iterdir()) == (["ledger.db"] if existing else [])
