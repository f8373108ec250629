"""``reward-poller sandbox``: the stand-ins on fixed loopback ports, the configuration that
points at them (the ``init`` example, filled in), the admin route that adds redemptions, and
a clean stop on SIGTERM."""

from __future__ import annotations

import json
import socket
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from poller.cli import sandbox_cmd
from poller.config import load_config
from poller.release import files
from poller.sandbox import services as sandbox
from tests.system.release.conftest import cli, free_port_base, read_until, start, stop

pytestmark = pytest.mark.e2e

READY = "ready; Ctrl-C stops the stand-ins"


def urls(base: int) -> dict[str, str]:
    return sandbox.urls_for("127.0.0.1", sandbox.Ports.from_base(base).as_dict())


# --- the configuration -------------------------------------------------------------------


def test_the_config_is_the_init_example_pointed_at_the_stand_ins(tmp_path: Path) -> None:
    text = sandbox.config_text(urls(7470))
    assert text.startswith(sandbox.MARKER)
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.influitive.base_url == "http://127.0.0.1:7470"
    assert config.influitive.api_token.get_secret_value() == sandbox.INFLUITIVE_TOKEN
    assert set(config.vendors) == {"tremendous", "tango", "giftbit", "http", "manual"}
    assert config.vendor_settings("tremendous").base_url == (  # type: ignore[union-attr]
        "http://127.0.0.1:7471/api/v2")
    assert config.schedule.interval_seconds == 10
    assert config.ledger.url == "sqlite:///reward-poller.db"  # the example's, unchanged
    # Every line of the example is still there but the values the sandbox sets: the comments
    # a newcomer reads stay.
    example = files.example_config().splitlines()
    kept = [line for line in example if line in text.splitlines()]
    assert len(kept) >= len(example) - 10
    rules = {(r.reward_id or r.reward_name): r.vendor for r in config.rewards}
    assert rules == {"37": "tremendous", "Coffee on us": "tremendous", "51": "giftbit",
                     "52": "tango", "53": "http", "54": "manual"}


def test_the_snippet_sets_the_same_values(tmp_path: Path) -> None:
    snippet = tomllib.loads(sandbox.snippet(urls(8000)))
    full = tomllib.loads(sandbox.config_text(urls(8000)))
    for key, value in snippet["influitive"].items():
        assert full["influitive"][key] == value
    for key, value in snippet["vendors"]["tremendous"].items():
        assert full["vendors"]["tremendous"][key] == value
    assert snippet["rewards"][0]["product"] == full["rewards"][0]["product"]
    assert set(snippet["vendors"]) == set(full["vendors"])


def test_set_keys_replaces_in_place_adds_what_is_missing_and_names_a_missing_table() -> None:
    text = '[a]\nx = "1"   # why x\n\n[[b]]\ny = 2\n\n[[b]]\ny = 3\n'
    out = sandbox.set_keys(text, "a", {"x": '"9"', "z": "true"})
    assert out.startswith('[a]\nz = true\nx = "9"   # why x\n')
    assert sandbox.set_keys(text, "b", {"y": "7"}).endswith("[[b]]\ny = 7\n\n[[b]]\ny = 3\n")
    with pytest.raises(ValueError, match=r"\[c\]"):
        sandbox.set_keys(text, "c", {"x": "1"})
    commented = "# [a]\n# x = 1\n"
    with pytest.raises(ValueError):
        sandbox.set_keys(commented, "a", {"x": "1"})


def test_only_the_example_or_an_earlier_sandbox_config_may_be_replaced() -> None:
    assert sandbox.replaceable(files.example_config())
    assert sandbox.replaceable(sandbox.config_text(urls(9000)))
    assert not sandbox.replaceable(files.example_config().replace('"..."', '"real"', 1))


def test_the_cli_default_port_base_is_the_sandboxs() -> None:
    assert sandbox_cmd.DEFAULT_PORT_BASE == sandbox.DEFAULT_PORT_BASE


# --- the command -----------------------------------------------------------------------------


def test_sandbox_serves_seeds_takes_new_redemptions_and_stops_on_sigterm(tmp_path: Path) -> None:
    base = free_port_base()
    process = start("sandbox", "--port-base", str(base), "--empty", "--write-config",
                    cwd=tmp_path)
    try:
        out = read_until(process, lambda line: READY in line)
        assert f"influitive  http://127.0.0.1:{base}\n" in out
        assert f"http        http://127.0.0.1:{base + 4}\n" in out
        assert "seeded 0 redemptions" in out
        assert "wrote config.toml" in out
        # The admin route, as docs/sandbox.md shows it.
        item = {"id": 9001, "reward_id": 37, "reward_name": "$25 Amazon gift card",
                "contact": {"id": 77, "email": "new@example.com", "name": "New Advocate"}}
        answer = httpx.post(f"http://127.0.0.1:{base}/_standin/redemptions", json=item)
        assert answer.status_code == 201
        assert answer.json()["outstanding"] == 1
        run = cli("run", "--run-once", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        shown = cli("ledger", "show", "9001", "--json", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["state"] == "fulfilled"
        decisions = httpx.get(f"http://127.0.0.1:{base}/_standin/decisions").json()
        assert [(d["id"], d["verb"]) for d in decisions["decisions"]] == [("9001", "fulfill")]
    finally:
        rest = stop(process)
    assert "stand-ins stopped" in rest
    with socket.socket() as s:  # the ports are free again
        s.bind(("127.0.0.1", base))


def test_sandbox_seeds_redemptions_by_default_and_prints_the_snippet(tmp_path: Path) -> None:
    base = free_port_base()
    process = start("sandbox", "--port-base", str(base), "--tango-port", str(base + 10),
                    cwd=tmp_path)
    try:
        out = read_until(process, lambda line: READY in line)
        assert f"seeded {len(sandbox.REDEMPTIONS)} redemptions" in out
        assert f'base_url = "http://127.0.0.1:{base + 10}/raas/v2"' in out
        assert not (tmp_path / "config.toml").exists()  # printed, not written
        listed = httpx.get(f"http://127.0.0.1:{base}/_standin/redemptions").json()
        assert len(listed["reward_redemptions"]) == len(sandbox.REDEMPTIONS)
    finally:
        stop(process)


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    base = free_port_base()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 2))
        busy.listen(1)
        result = cli("sandbox", "--port-base", str(base), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert f"tango: cannot listen on 127.0.0.1:{base + 2}" in result.stderr


def test_write_config_never_replaces_a_config_of_the_users_own(tmp_path: Path) -> None:
    mine = files.example_config().replace('api_token = "..."', 'api_token = "live-token"')
    (tmp_path / "config.toml").write_text(mine)
    result = cli("sandbox", "--port-base", str(free_port_base()), "--write-config",
                 cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert "config.toml has settings of your own" in result.stderr
    assert (tmp_path / "config.toml").read_text() == mine


def test_sandbox_help_names_every_stand_in() -> None:
    result = cli("sandbox", "--help", cwd=Path(sys.prefix))
    for name in ("Influitive", "Tremendous", "Tango Card", "Giftbit", "HTTP vendor", "manual"):
        assert name in result.stdout
