"""Config mistakes are named: the environment variable, the file, the nearest key."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from poller.config import Config, check_environment, load_config
from poller.domain.errors import ConfigError

BASE = """
[influitive]
api_token = "tok-file-123456"
org_id = "org"
[vendors.tremendous]
api_key = "key-123456"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("REWARD_POLLER_"):
            monkeypatch.delenv(key)


def config(tmp_path: Path, text: str = BASE) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_a_missing_file_is_an_error_whatever_the_environment_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWARD_POLLER_INFLUITIVE__ORG_ID", "org")
    monkeypatch.setenv("REWARD_POLLER_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=f"config file {tmp_path}/gone.toml not found"):
        load_config()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("REWARD_POLLER_FULFILMENT__MAX_ORDER_AMOUNT",
         "no such configuration key (did you mean REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT?)"),
        ("REWARD_POLLER_FULFILLMENT_MAX_ORDER_AMOUNT",
         "no such configuration key (did you mean REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT?)"),
        ("REWARD_POLLER_SCHEDULE__INTERVALSECONDS",
         "[schedule] has no key 'intervalseconds' (did you mean "
         "REWARD_POLLER_SCHEDULE__INTERVAL_SECONDS?)"),
        ("REWARD_POLLER_VENDORS__TREMENDOUS__APIKEY",
         "vendor tremendous has no key 'apikey' (did you mean "
         "REWARD_POLLER_VENDORS__TREMENDOUS__API_KEY?)"),
        ("REWARD_POLLER_VENDORS__NOPE__API_KEY", "no vendor named 'nope'"),
    ],
)
def test_unknown_variables_are_named_with_the_nearest(name: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_environment({name: "1"})
    assert f"{name}: {says}" in str(err.value)


def test_known_variables_pass() -> None:
    origin = check_environment({
        "REWARD_POLLER_CONFIG": "x", "REWARD_POLLER_FAILPOINT": "",
        "REWARD_POLLER_INFLUITIVE__API_TOKEN_FILE": "/run/token",
        "REWARD_POLLER_VENDORS__TREMENDOUS__RATE_LIMIT_PER_SECOND": "2",
        "REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT": '{"USD": "5"}',
        "REWARD_POLLER_REWARDS": "[]",
    })
    assert origin["fulfillment.max_order_amount"] == "REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT"


def test_malformed_json_and_bad_values_name_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(tmp_path)
    monkeypatch.setenv("REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT", '{"USD": ')
    with pytest.raises(ConfigError, match="REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT: not "
                                          "valid JSON"):
        load_config(path)
    monkeypatch.delenv("REWARD_POLLER_FULFILLMENT__MAX_ORDER_AMOUNT")
    monkeypatch.setenv("REWARD_POLLER_INFLUITIVE__MAX_PAGES", "many")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "influitive.max_pages" in str(err.value)
    assert "(from REWARD_POLLER_INFLUITIVE__MAX_PAGES)" in str(err.value)


def test_file_errors_name_the_file_and_the_nearest_key(tmp_path: Path) -> None:
    path = config(tmp_path, BASE.replace('org_id = "org"', 'org_id = "org"\nmax_page = 3'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"invalid configuration ({path})" in str(err.value)
    assert "influitive.max_page: unknown key (did you mean max_pages?)" in str(err.value)
    path = config(tmp_path, BASE + 'api_kye = "x"\n')
    with pytest.raises(ConfigError, match=r"vendors\.tremendous\.api_kye: unknown key "
                                          r"\(did you mean api_key\?\)"):
        load_config(path)


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder other users can enter (pytest's own are private to the user)."""
    folder = Path(tempfile.mkdtemp(prefix="reward-poller-test-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_a_file_others_can_read_with_secrets_is_warned_about(
    tmp_path: Path, shared_dir: Path
) -> None:
    path = config(shared_dir)
    with structlog.testing.capture_logs() as quiet:
        load_config(path)
    assert quiet == []
    path.chmod(0o644)
    with structlog.testing.capture_logs() as logs:
        load_config(path)
    assert logs == [{
        "event": "config.file.readable_by_others", "log_level": "warning",
        "file": str(path), "mode": "0644",
        "secret_keys": ["influitive.api_token", "vendors.tremendous.api_key"],
        "fix": f"chmod 600 {path}, or move the secrets to *_file keys or the environment",
    }]
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    hidden = config(private)
    hidden.chmod(0o644)
    with structlog.testing.capture_logs() as unreachable:
        load_config(hidden)
    assert unreachable == []  # in a folder others cannot enter: not exposed


def test_a_section_as_json_then_single_keys_over_it_then_the_file_beneath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = config(tmp_path, BASE + '[ledger]\nurl = "sqlite:///file.db"\nlease_seconds = 100\n'
                  "gone_after_polls = 5\n")
    monkeypatch.setenv("REWARD_POLLER_LEDGER", '{"url": "sqlite:///json.db", "lease_seconds": 50}')
    monkeypatch.setenv("REWARD_POLLER_LEDGER__LEASE_SECONDS", "7")
    ledger = load_config(path).ledger
    assert (ledger.url, ledger.lease_seconds, ledger.gone_after_polls) == (
        "sqlite:///json.db", 7, 5)


def test_variable_names_are_read_in_any_case_and_vendor_keys_merge_with_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = config(tmp_path, BASE + "rate_limit_per_second = 3\n")
    monkeypatch.setenv("reward_poller_Vendors__TREMENDOUS__api_key", "env-key-777")
    monkeypatch.setenv("REWARD_POLLER_FULFILLMENT__DAILY_SPEND_LIMIT", '{"usd": 100}')
    loaded = load_config(path)
    assert "env-key-777" in loaded.secrets() and "key-123456" not in loaded.secrets()
    assert loaded.vendor_rate_limit("tremendous") == 3
    assert loaded.fulfillment.daily_spend_limit == {"USD": 100}


def test_a_config_made_from_data_reads_the_environment_and_names_bad_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REWARD_POLLER_SCHEDULE__CONCURRENCY", "3")
    assert Config(influitive={"api_token": "t", "org_id": "o"}).schedule.concurrency == 3
    monkeypatch.setenv("REWARD_POLLER_SECURITY__SECRET_URL_KEYS", "[not json-secret-value")
    with pytest.raises(ConfigError) as caught:
        Config(influitive={"api_token": "t", "org_id": "o"})
    assert "REWARD_POLLER_SECURITY__SECRET_URL_KEYS: not valid JSON" in str(caught.value)
    assert "secret-value" not in str(caught.value)
