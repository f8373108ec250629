"""Secrets in config URLs: userinfo (``user:pass@``) and secret paths (a catch-hook id) never
appear in what is shown, logged or stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poller import logs
from poller.config import Config
from poller.core.redact import display_url, is_secret_url_key, url_redaction
from poller.domain.model import INFLUITIVE, Contact, Redemption
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.memory import MemoryLedger
from poller.ports import Changes
from tests.system.cli.conftest import Standins, run_cli

PASSWORD = "pa55w0rd-9f8e7d"
HOOK_PATH = "/hooks/catch/4815162/zq9x8y7w"
HOOK_URL = f"https://zap-user:{PASSWORD}@hooks.example.com{HOOK_PATH}/"


@pytest.mark.parametrize(("url", "secret_path", "shown"), [
    (HOOK_URL, True, "https://hooks.example.com/…"),
    (HOOK_URL, False, f"https://hooks.example.com{HOOK_PATH}/"),
    ("https://api.example.com", True, "https://api.example.com"),
    ("https://api.example.com/", True, "https://api.example.com"),
    ("http://u:p@[::1]:8080/x?token=abc", True, "http://[::1]:8080/…"),
    ("https://api.example.com/v2?key=s3cret", False, "https://api.example.com/v2?key=s3cret"),
    ("not a url", True, "<unparseable URL>"),
    ("http://[::1/", True, "<unparseable URL>"),
])
def test_display_url(url: str, secret_path: bool, shown: str) -> None:
    assert display_url(url, secret_path=secret_path) == shown


def test_secret_parts_of_a_url() -> None:
    found = url_redaction(HOOK_URL)
    assert PASSWORD in found.passwords and found.shown == "https://hooks.example.com/…"
    assert "4815162" in found.tokens and "zq9x8y7w" in found.tokens
    assert not url_redaction("https://api.example.com/")
    assert url_redaction(HOOK_URL, secret_path=False).tokens == ()


def test_secret_url_keys_default_to_every_vendor_and_alert_url() -> None:
    keys = Config.model_fields["security"].default.secret_url_keys
    for key in ("vendors.http.url", "vendors.tremendous.base_url", "alerts.webhook_url"):
        assert is_secret_url_key(key, keys)
    assert not is_secret_url_key("influitive.base_url", keys)


def _config(**extra: object) -> Config:
    return Config(
        influitive={"api_token": "tok-123456789", "org_id": "org"},
        vendors={"http": {"url": HOOK_URL, "secret": "s" * 20}},
        alerts={"webhook_url": "https://hooks.slack.example/services/T000/B000/XXXXSECRET"},
        **extra,  # type: ignore[arg-type]
    )


def test_loading_the_config_teaches_the_redactor_the_url_secrets() -> None:
    config = _config()
    text = logs.redactor.scrub(f"ConnectError (POST hooks.example.com{HOOK_PATH}/) "
                               f"via {HOOK_URL}")
    assert PASSWORD not in text and "4815162" not in text and "zap-user" not in text
    assert config.display_url("vendors.http.url") == "https://hooks.example.com/…"
    assert config.display_url("alerts.webhook_url") == "https://hooks.slack.example/…"
    # A key left out of [security] secret_url_keys keeps its path, never its userinfo.
    open_config = _config(security={"secret_url_keys": []})
    assert open_config.display_url("vendors.http.url") == \
        f"https://hooks.example.com{HOOK_PATH}/"


def _redemption(rid: str) -> Redemption:
    return Redemption(source=INFLUITIVE, id=rid, reward_id="1", reward_name="Card",
                      contact=Contact(email="a@example.com"), raw={"id": rid})


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_text_the_ledger_stores_from_outside_is_scrubbed(kind: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    _config()  # the redactor learns the URL's secrets at load
    ledger = (MemoryLedger() if kind == "memory"
              else open_ledger(f"sqlite:///{tmp_path / 'l.db'}"))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ledger.record(1, [_redemption("1")], now)
    entry = ledger.get(INFLUITIVE, "1")
    assert entry is not None and ledger.claim(entry.pk, "w", now, 60) is not None
    quoted = f"vendor said: could not reach {HOOK_URL} (user zap-user:{PASSWORD})"
    ledger.transition(entry.pk, "w", State.HELD, quoted, now,
                      Changes(hold_reason=quoted, last_error=quoted, message=quoted))
    after = ledger.get(INFLUITIVE, "1")
    assert after is not None
    stored = [after.hold_reason, after.last_error, after.message,
              *(e.detail for e in ledger.events(entry.pk))]
    for text in stored:
        assert text is not None
        assert PASSWORD not in text and "4815162" not in text
    assert "vendor said" in (after.hold_reason or "")
    ledger.close()


@pytest.mark.e2e
def test_a_vendor_url_with_credentials_leaks_nowhere(standins: Standins) -> None:
    """The HTTP vendor at an address that refuses connections: the error names the target,
    and neither the logs, the ledger nor `ledger show` carry the password or the hook id."""
    url = f"http://zap-user:{PASSWORD}@127.0.0.1:9{HOOK_PATH}/"
    config = standins.config(extra=f"""
[vendors.http]
url = "{url}"
secret = "{"k" * 24}"

[[rewards]]
reward_id = "38"
vendor = "http"
amount = "5.00"
currency = "USD"
""")
    standins.seed(1, reward_id=38, reward_name="Hook reward")
    run = run_cli("run", "--run-once", config=config)
    show = run_cli("ledger", "show", "1", "--json", config=config)
    listing = run_cli("ledger", "list", "--json", config=config)
    assert show.returncode == 0, show.stderr
    entry = json.loads(show.stdout)
    assert entry["state"] in ("waiting", "held")
    for output in (run.stdout, run.stderr, show.stdout, show.stderr, listing.stdout):
        assert PASSWORD not in output
        assert "4815162" not in output and "zq9x8y7w" not in output


# --- what is not a secret: user names, hosts, ports, ordinary paths, advocates' messages ---


ADVOCATE_HOOK = "http://advocate@127.0.0.1:9/hook"
THANKS = "Thank you for being an advocate!"


def _loaded(**sections: object) -> Config:
    """A config with these sections loaded (which teaches the redactor its URLs)."""
    return Config(influitive={"api_token": "tok-123456789", "org_id": "org"},
                  **sections)  # type: ignore[arg-type]


def test_a_url_user_name_port_and_plain_path_are_not_secrets() -> None:
    assert not url_redaction(ADVOCATE_HOOK)
    assert not url_redaction("postgresql+psycopg://postgres@127.0.0.1:5432/ledger", False)
    assert not url_redaction("http://127.0.0.1:8080/api/v2")
    _loaded(alerts={"webhook_url": ADVOCATE_HOOK},
            ledger={"url": "postgresql+psycopg://postgres@127.0.0.1:5432/ledger"})
    for text in (THANKS, "install reward-poller[postgres]", "listening on 8080",
                 "postgresql+psycopg://postgres@127.0.0.1:5432/ledger is unavailable"):
        assert logs.redactor.scrub(text) == text


def test_a_postgres_password_is_hidden_where_it_stands_the_user_name_stays() -> None:
    """``user:password@``: the password goes, the user name (here ``postgres``, a common
    word) stays, and so does every other ``postgres`` in the text."""
    _loaded(ledger={"url": "postgresql+psycopg://postgres:hunter@127.0.0.1:5432/ledger"})
    text = ("could not reach postgresql+psycopg://postgres:hunter@127.0.0.1:5432/ledger; "
            "install reward-poller[postgres]")
    assert logs.redactor.scrub(text) == (
        "could not reach postgresql+psycopg://postgres:[redacted]@127.0.0.1:5432/ledger; "
        "install reward-poller[postgres]")


def test_the_install_hint_and_a_postgres_user_survive_the_redactor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The error a missing driver gives, as the CLI would show it: URL and hint intact."""
    import sys

    from poller.domain.errors import ConfigError
    from poller.ledger.sql import make_engine

    url = "postgresql+psycopg2://postgres@127.0.0.1:1/ledger"
    _loaded(ledger={"url": url})
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # the driver is not installed
    with pytest.raises(ConfigError) as raised:
        make_engine(url)
    shown = logs.redactor.scrub(str(raised.value))
    assert shown == str(raised.value)
    assert "postgresql+psycopg2://postgres@127.0.0.1:1/ledger" in shown
    assert shown.endswith("install reward-poller[postgres]")


def test_a_connect_error_keeps_host_port_and_path() -> None:
    """Vendor base URLs are secret-path keys by default; ``/api/v2`` holds no credential,
    so an error naming the request keeps it, with the port."""
    import httpx

    from poller.transport import describe

    _loaded(vendors={"tremendous": {"base_url": "http://127.0.0.1:9/api/v2",
                                    "api_key": "k" * 24}})
    with httpx.Client() as client, pytest.raises(httpx.ConnectError) as raised:
        client.get("http://u:pw-123456@127.0.0.1:9/api/v2/funding_sources?token=abc")
    said = logs.redactor.scrub(describe(raised.value))
    assert said == "ConnectError (GET 127.0.0.1:9/api/v2/funding_sources)"


@pytest.mark.e2e
def test_the_advocates_message_is_the_template_byte_for_byte(standins: Standins) -> None:
    """A webhook URL whose user name is ``advocate`` must not rewrite what the advocate
    reads: Influitive receives the rendered template exactly, and the ledger stores it."""
    config = standins.config(extra=f"""
[fulfillment]
fulfilled_message = "{THANKS}"

[alerts]
webhook_url = "{ADVOCATE_HOOK}"
""")
    standins.seed(1)
    run = run_cli("run", "--run-once", config=config)
    assert run.returncode == 0, run.stderr
    [decision] = [d for d in standins.influitive.decisions() if d.accepted]
    assert decision.verb == "fulfill"
    assert decision.message is not None
    assert decision.message.encode() == THANKS.encode()
    show = run_cli("ledger", "show", "1", "--json", config=config)
    assert json.loads(show.stdout)["message"] == THANKS


@pytest.mark.e2e
def test_check_names_an_unreachable_vendor_with_its_port_and_path(standins: Standins) -> None:
    from poller.sandbox.server import free_port

    port = free_port()  # nothing listens there
    config = standins.config()
    config.write_text(config.read_text().replace(
        f'base_url = "{standins.tremendous_url}/api/v2"',
        f'base_url = "http://127.0.0.1:{port}/api/v2"'))
    result = run_cli("check", config=config)
    assert result.returncode == 1
    assert f"ConnectError (GET 127.0.0.1:{port}/api/v2/funding_sources)" in result.stdout
    assert "[redacted]" not in result.stdout + result.stderr
