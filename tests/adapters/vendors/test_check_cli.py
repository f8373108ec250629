"""``reward-poller check`` as a user runs it: a subprocess against the stand-ins, a config
routing rewards to all five vendors, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from poller.sandbox import influitive as influitive_standin
from poller.sandbox.server import ServerThread

from .support import (
    GIFTBIT_KEY,
    HTTP_SECRET,
    STANDIN_KEY,
    TANGO_KEY,
    GiftbitStandin,
    ReceiverStandin,
    Standin,
    TangoStandin,
    giftbit_standin,
    receiver_standin,
    tango_standin,
)

INFLUITIVE_TOKEN = "check-cli-influitive-token-77"
SECRETS = (INFLUITIVE_TOKEN, STANDIN_KEY, TANGO_KEY, GIFTBIT_KEY, HTTP_SECRET)
PRODUCTS = {"tremendous": "AMZN-US", "tango": "U561593", "giftbit": "amazonus"}


class Rig:
    def __init__(self, tmp_path: Path, tremendous: Standin, influitive_url: str) -> None:
        self.tmp_path = tmp_path
        self.influitive_url = influitive_url
        self.tremendous = tremendous
        self.tango: TangoStandin = tango_standin()
        self.giftbit: GiftbitStandin = giftbit_standin()
        self.receiver: ReceiverStandin = receiver_standin()

    def config(self, extra: str = "", **products: str) -> Path:
        chosen = {**PRODUCTS, **products}
        text = f"""
[influitive]
base_url = "{self.influitive_url}"
api_token = "{INFLUITIVE_TOKEN}"
org_id = "check-org"

[ledger]
url = "sqlite:///{self.tmp_path / 'ledger.db'}"

[vendors.tremendous]
base_url = "{self.tremendous.base_url}"
api_key = "{self.tremendous.api_key}"

[vendors.tango]
base_url = "{self.tango.base_url}"
platform_name = "{self.tango.platform_name}"
platform_key = "{self.tango.platform_key}"
customer_identifier = "{self.tango.customer}"
account_identifier = "{self.tango.account}"

[vendors.giftbit]
base_url = "{self.giftbit.base_url}"
api_key = "{self.giftbit.api_key}"

[vendors.http]
url = "{self.receiver.hook_url}"
secret = "{self.receiver.secret}"

[vendors.manual]
{extra}
"""
        for i, vendor in enumerate(("tremendous", "tango", "giftbit", "http", "manual")):
            product = chosen.get(vendor)
            text += f'\n[[rewards]]\nreward_id = "{i + 1}"\nvendor = "{vendor}"\n'
            text += f'product = "{product}"\n' if product else ""
            text += 'amount = "25.00"\ncurrency = "USD"\n'
        path = self.tmp_path / "config.toml"
        path.write_text(text)
        return path


@pytest.fixture
def rig(tmp_path: Path, standin: Standin) -> Iterator[Rig]:
    # `check` proves Influitive's credentials too: a stand-in that accepts them.
    app = influitive_standin.create_app(influitive_standin.InfluitiveState(),
                                        api_token=INFLUITIVE_TOKEN, org_id="check-org")
    with ServerThread(app) as url:
        yield Rig(tmp_path, standin, url)


def run_check(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}
    result = subprocess.run(
        [sys.executable, "-m", "poller", "--log-format", "json", "--config", str(config),
         "check", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )
    for secret in SECRETS:
        assert secret not in result.stdout and secret not in result.stderr
    return result


def _rows(stdout: str) -> dict[tuple[str, str], str]:
    """(vendor, item) -> RESULT column."""
    rows: dict[tuple[str, str], str] = {}
    for line in stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("tremendous", "tango", "giftbit", "http", "manual"):
            result = next(p for p in parts[2:] if p in ("ok", "FAIL"))
            rows[(parts[0], parts[1])] = result
    return rows


def test_a_good_config_passes(rig: Rig) -> None:
    result = run_check(rig.config())
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    assert rows == {
        ("tremendous", "credentials"): "ok", ("tremendous", "AMZN-US"): "ok",
        ("tango", "credentials"): "ok", ("tango", "U561593"): "ok",
        ("giftbit", "credentials"): "ok", ("giftbit", "amazonus"): "ok",
        ("http", "credentials"): "ok", ("http", "(none)"): "ok",
        ("manual", "credentials"): "ok", ("manual", "(none)"): "ok",
    }
    assert result.stdout.splitlines()[0].split() == ["VENDOR", "ITEM", "AMOUNT", "RESULT",
                                                     "DETAIL"]
    assert "balance 10,000.00 USD" in result.stdout
    assert "all checks passed" in result.stdout
    assert rig.receiver.state.received == []  # nothing was ordered anywhere
    assert rig.tango.state.orders == {} and rig.giftbit.state.campaigns == {}


def test_a_mistyped_product_is_found_for_each_vendor(rig: Rig) -> None:
    result = run_check(rig.config(tremendous="AMZN-SU", tango="U561539", giftbit="amazonuss"))
    assert result.returncode == 1
    rows = _rows(result.stdout)
    assert rows[("tremendous", "AMZN-SU")] == "FAIL"
    assert rows[("tango", "U561539")] == "FAIL"
    assert rows[("giftbit", "amazonuss")] == "FAIL"
    assert rows[("tango", "credentials")] == "ok"
    assert "did you mean AMZN-US?" in result.stdout
    assert "did you mean U561593?" in result.stdout
    assert "did you mean amazonus?" in result.stdout
    failed = json.loads(result.stderr.strip().splitlines()[-1])
    assert failed["event"] == "cli.failed"
    assert failed["message"].startswith("check found 3 problems")


def test_rejected_credentials_fail(rig: Rig) -> None:
    config = rig.config()
    config.write_text(config.read_text().replace(f'api_key = "{rig.giftbit.api_key}"',
                                                 'api_key = "gb_wrong_token_for_cli"'))
    result = run_check(config)
    assert result.returncode == 1
    assert _rows(result.stdout)[("giftbit", "credentials")] == "FAIL"
    assert "rejected the API key" in result.stdout


def test_a_config_error_exits_2(rig: Rig) -> None:
    result = run_check(rig.config(extra="colour = 'blue'"))
    assert result.returncode == 2
    assert "vendors.manual" in result.stderr and "colour" in result.stderr
    assert result.stdout == ""


def test_json_and_the_catalog_cached_in_the_ledger(rig: Rig) -> None:
    from poller.ledger import open_ledger

    config = rig.config()
    open_ledger(f"sqlite:///{rig.tmp_path / 'ledger.db'}").close()  # an existing ledger
    first = run_check(config, "--json")
    second = run_check(config, "--json")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    data = json.loads(second.stdout)["vendors"]
    assert [v["vendor"] for v in data] == ["tremendous", "tango", "giftbit", "http", "manual"]
    assert all(v["ok"] for v in data)
    assert data[1]["products"][0] == {"product": "U561593", "amount": "25.00",
                                      "currency": "USD", "ok": True,
                                      "detail": "Amazon.com Gift Card"}
    assert rig.tango.state.catalog_calls == 1  # the second run read it from the ledger


def test_a_giftbit_price_the_brand_does_not_allow_fails(rig: Rig) -> None:
    config = rig.config(giftbit="starbucksus")  # fixed prices 5, 10, 25: 25 passes
    assert _rows(run_check(config).stdout)[("giftbit", "starbucksus")] == "ok"
    config.write_text(config.read_text().replace(
        'vendor = "giftbit"\nproduct = "starbucksus"\namount = "25.00"',
        'vendor = "giftbit"\nproduct = "starbucksus"\namount = "20.00"'))
    result = run_check(config)
    assert result.returncode == 1
    assert _rows(result.stdout)[("giftbit", "starbucksus")] == "FAIL"
    assert "20.00 is not one of the brand's prices (5.00, 10.00, 25.00)" in result.stdout


def test_an_unreachable_vendor_fails_and_a_secret_http_url_stays_hidden(rig: Rig) -> None:
    from poller.sandbox.server import free_port

    port = free_port()
    secret_url = f"http://hookuser:hookpass99@127.0.0.1:{port}/hooks/catch/123456/abcsecret/"
    config = rig.config()
    config.write_text(config.read_text().replace(f'url = "{rig.receiver.hook_url}"',
                                                 f'url = "{secret_url}"'))
    result = run_check(config)
    assert result.returncode == 1
    assert _rows(result.stdout)[("http", "credentials")] == "FAIL"
    assert f"could not reach http://127.0.0.1:{port}" in result.stdout
    for part in ("hookuser", "hookpass99", "abcsecret", "/hooks/catch"):
        assert part not in result.stdout and part not in result.stderr
