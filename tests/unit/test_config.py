"""Config: every error names its key; the environment overrides the file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from poller.config import load_config
from poller.domain.errors import ConfigError

BASE = """
[influitive]
api_token = "tok-file-123456"
org_id = "org"
[vendors.tremendous]
api_key = "key-123456"
[[rewards]]
reward_id = 37
vendor = "tremendous"
product = "P"
amount = "25.00"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("REWARD_POLLER_"):
            monkeypatch.delenv(key)


def test_the_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config.example.toml")
    assert config.rewards[0].reward_id == "37"
    assert config.retry.max_attempts == 8


def test_defaults_and_coercions(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.ledger.url == "sqlite:///reward-poller.db"
    assert config.schedule.interval_seconds == 300
    assert config.rewards[0].reward_id == "37"
    assert config.rewards[0].amount == Decimal("25.00")
    assert config.rewards[0].currency == "USD"
    assert set(config.secrets()) == {"tok-file-123456", "key-123456"}


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARD_POLLER_INFLUITIVE__API_TOKEN", "tok-from-env-99")
    monkeypatch.setenv("REWARD_POLLER_LEDGER__URL", "sqlite:///other.db")
    monkeypatch.setenv("REWARD_POLLER_VENDORS__TREMENDOUS__API_KEY", "env-key-777")
    config = load_config(write(tmp_path, BASE))
    assert config.influitive.api_token.get_secret_value() == "tok-from-env-99"
    assert config.influitive.org_id == "org"
    assert config.ledger.url == "sqlite:///other.db"
    assert "env-key-777" in config.secrets()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (BASE.replace('api_token = "tok-file-123456"\n', ""), "influitive.api_token"),
        (BASE + "[schedule]\ninterval_seconds = \"soon\"\n", "schedule.interval_seconds"),
        (BASE + "[schedule]\nintervall = 3\n", "schedule.intervall: unknown key"),
        (BASE + "[fulfillment]\nunmapped_reward = \"drop\"\n", "fulfillment.unmapped_reward"),
        (BASE + "[fulfillment]\nfulfilled_message = \"{nope}\"\n", "fulfillment.fulfilled_message"),
        (BASE.replace('vendor = "tremendous"', 'vendor = "acme"'), "rewards[0].vendor"),
        (BASE + "[vendors.acme]\nx = 1\n", "vendors.acme"),
        (BASE + "[vendors.tremendous.extra]\n", "vendors.tremendous"),
        (BASE.replace('amount = "25.00"', 'amount = "-1"'), "rewards[0].amount"),
        (BASE.replace('reward_id = 37', ''), "rewards[0]"),
        (BASE + "[[rewards]]\nreward_name = \"x\"\nvendor = \"tremendous\"\namount = 5\n"
                "currency = \"dollars\"\n", "rewards[1].currency"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert names in str(err.value)


def test_missing_file_says_how_to_fix_it(tmp_path: Path) -> None:
    # `init` works from any install; a pipx user has no config.example.toml to copy.
    with pytest.raises(ConfigError, match=r"`reward-poller init .*nope\.toml` writes a "):
        load_config(tmp_path / "nope.toml")


def test_spending_guard_keys(tmp_path: Path) -> None:
    guard = ('[fulfillment]\ndaily_spend_limit = { usd = "100" }\n'
             'max_order_amount = { USD = "50.5" }\n')
    config = load_config(write(tmp_path, BASE + guard))
    policy = config.fulfillment.spend_policy()
    assert policy.daily("USD") == Decimal("100")
    assert policy.precheck(Decimal("60"), "USD") is not None
    with pytest.raises(ConfigError, match=r"fulfillment\.daily_spend_limit"):
        bad = '[fulfillment]\ndaily_spend_limit = { dollars = "1" }\n'
        load_config(write(tmp_path, BASE + bad))
