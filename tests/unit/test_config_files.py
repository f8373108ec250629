"""``<secret>_file``: every secret key can be read from a file (systemd ``LoadCredential=``),
relative paths from ``$CREDENTIALS_DIRECTORY``; errors name the key and never the contents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from poller.config import load_config
from poller.config.environment import secret_keys
from poller.config.sections import AlertsSettings, InfluitiveSettings
from poller.domain.errors import ConfigError

BASE = """
[influitive]
org_id = "org"
{influitive}
[vendors.tremendous]
{tremendous}
[[rewards]]
reward_id = 37
vendor = "tremendous"
product = "P"
amount = "25.00"
"""

TOKEN = "token-from-a-file-0a1b2c"
KEY = "vendor-key-from-a-file-3d4e"
HOOK = "https://hooks.example.com/services/T000/B000/secretpart123"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("REWARD_POLLER_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)


def config_file(tmp_path: Path, influitive: str = "", tremendous: str = "",
                extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE.format(influitive=influitive, tremendous=tremendous) + extra)
    return path


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    folder = tmp_path / "credentials"
    folder.mkdir()
    (folder / "influitive-token").write_text(TOKEN + "\n")  # trailing newline: stripped
    (folder / "tremendous-api-key").write_text(f"  {KEY}\n\n")
    (folder / "alerts-webhook").write_text(HOOK)
    return folder


def test_secret_keys_are_found_from_the_types() -> None:
    assert secret_keys(InfluitiveSettings) == {"api_token"}
    assert secret_keys(AlertsSettings) == {"webhook_url"}  # Optional[SecretStr] too


def test_absolute_paths_in_the_file(tmp_path: Path, creds: Path) -> None:
    config = load_config(config_file(
        tmp_path,
        influitive=f'api_token_file = "{creds / "influitive-token"}"',
        tremendous=f'api_key_file = "{creds / "tremendous-api-key"}"',
        extra=f'[alerts]\nwebhook_url_file = "{creds / "alerts-webhook"}"\n',
    ))
    assert config.influitive.api_token.get_secret_value() == TOKEN
    settings = config.vendor_settings("tremendous")
    assert settings is not None and settings.api_key.get_secret_value() == KEY  # type: ignore[attr-defined]
    assert config.alerts.webhook_url is not None
    assert config.alerts.webhook_url.get_secret_value() == HOOK
    # The values read from files are secrets like any other: the log redactor knows them.
    assert {TOKEN, KEY, HOOK} <= set(config.secrets())


def test_relative_paths_come_from_the_credentials_directory(
    tmp_path: Path, creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.chdir(tmp_path)  # not where the files are
    config = load_config(config_file(
        tmp_path, influitive='api_token_file = "influitive-token"',
        tremendous='api_key_file = "tremendous-api-key"',
    ))
    assert config.influitive.api_token.get_secret_value() == TOKEN


def test_relative_paths_without_systemd_are_relative_to_the_working_directory(
    tmp_path: Path, creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(creds)
    config = load_config(config_file(
        tmp_path, influitive='api_token_file = "influitive-token"', tremendous='api_key = "k"'
    ))
    assert config.influitive.api_token.get_secret_value() == TOKEN


def test_the_environment_form(tmp_path: Path, creds: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("REWARD_POLLER_INFLUITIVE__API_TOKEN_FILE", "influitive-token")
    monkeypatch.setenv("REWARD_POLLER_VENDORS__TREMENDOUS__API_KEY_FILE", "tremendous-api-key")
    monkeypatch.setenv("REWARD_POLLER_ALERTS__WEBHOOK_URL_FILE", "alerts-webhook")
    config = load_config(config_file(tmp_path))
    assert config.influitive.api_token.get_secret_value() == TOKEN
    assert set(config.secrets()) == {TOKEN, KEY, HOOK}


@pytest.mark.parametrize(
    ("influitive", "tremendous", "message"),
    [
        ('api_token_file = "missing"', 'api_key = "k"',
         "influitive.api_token_file: cannot read {creds}/missing: No such file or directory"),
        ('api_token_file = "empty"', 'api_key = "k"',
         "influitive.api_token_file: {creds}/empty is empty"),
        ('api_token_file = "influitive-token"\napi_token = "x"', 'api_key = "k"',
         "influitive.api_token_file: set either api_token or api_token_file, not both"),
        ('api_token = "x"', 'api_key_file = "."',
         "vendors.tremendous.api_key_file: cannot read {creds}"),
        ('api_token = "x"', "api_key_file = 3",
         "vendors.tremendous.api_key_file: must be a file path"),
        # Only secret keys have a _file form: anything else is an unknown key as before.
        ('api_token = "x"\norg_id_file = "influitive-token"', 'api_key = "k"',
         "influitive.org_id_file: unknown key"),
    ],
)
def test_errors_name_the_key_and_never_the_contents(
    tmp_path: Path, creds: Path, monkeypatch: pytest.MonkeyPatch,
    influitive: str, tremendous: str, message: str,
) -> None:
    (creds / "empty").write_text("\n  \n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(ConfigError) as err:
        load_config(config_file(tmp_path, influitive=influitive, tremendous=tremendous))
    text = str(err.value)
    assert message.format(creds=creds) in text
    for secret in (TOKEN, KEY, HOOK):
        assert secret not in text


def test_all_file_errors_are_reported_at_once(tmp_path: Path, creds: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(ConfigError) as err:
        load_config(config_file(tmp_path, influitive='api_token_file = "nope-1"',
                                tremendous='api_key_file = "nope-2"'))
    assert "influitive.api_token_file" in str(err.value)
    assert "vendors.tremendous.api_key_file" in str(err.value)


def test_a_file_that_is_not_text(tmp_path: Path, creds: Path) -> None:
    (creds / "binary").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"influitive\.api_token_file: .*not UTF-8 text"):
        load_config(config_file(tmp_path, influitive=f'api_token_file = "{creds / "binary"}"',
                                tremendous='api_key = "k"'))


# --- a configuration file this user cannot read ----------------------------------------------


def _denied(monkeypatch: pytest.MonkeyPatch, target: Path, method: str) -> None:
    """``target``'s ``method`` (open, stat) fails as for another user's mode 0600 file: the
    tests run as root, whom no mode stops."""
    real = getattr(Path, method)

    def denied(self: Path, *args: object, **kwargs: object) -> object:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, denied)


def test_an_unreadable_config_names_the_user_and_how_systemd_hands_it_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pwd

    config = config_file(tmp_path, influitive=f'api_token = "{TOKEN}"', tremendous='api_key = "k"')
    _denied(monkeypatch, config, "open")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    uid = os.geteuid()
    text = str(caught.value)
    assert text.startswith(f"{config}: cannot be read by user {pwd.getpwuid(uid).pw_name} "
                           f"(uid {uid}): Permission denied. ")
    assert f"LoadCredential=config.toml:{config}" in text
    assert "--config ${CREDENTIALS_DIRECTORY}/config.toml" in text


def test_a_config_behind_a_folder_this_user_cannot_enter_is_not_called_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = config_file(tmp_path, influitive=f'api_token = "{TOKEN}"', tremendous='api_key = "k"')
    _denied(monkeypatch, config, "stat")
    _denied(monkeypatch, config, "open")
    with pytest.raises(ConfigError, match="cannot be read by user"):
        load_config(config)


def test_a_config_that_cannot_be_read_for_another_reason_says_only_why(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "config.toml"
    folder.mkdir()  # a folder where the file should be
    with pytest.raises(ConfigError) as caught:
        load_config(folder)
    assert str(caught.value) == f"{folder}: cannot be read: Is a directory"
