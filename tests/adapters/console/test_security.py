"""Who may use the console, and how: password hashes, sessions, CSRF, roles, the limit on
wrong passwords, the cookie's flags, the trusted proxy, the loopback default, add-user."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from poller.config.sections import ConsoleSettings, ConsoleUserSettings, is_loopback
from poller.console import auth
from poller.console.app import _safe_next, check_bind
from poller.domain.errors import ConfigError
from tests.adapters.console.conftest import PASSWORDS, World, csrf_of, login


def test_scrypt_hashes_verify_only_their_password() -> None:
    stored = auth.hash_password("correct horse battery", n=2**14)
    assert stored.startswith("scrypt$16384$8$1$")
    assert auth.verify_password("correct horse battery", stored)
    assert not auth.verify_password("correct horse batterY", stored)
    assert not auth.verify_password("x", "scrypt$bad")
    assert auth.hash_password("same", n=2**14) != auth.hash_password("same", n=2**14)  # salted


def test_sessions_are_signed(world: World) -> None:
    client = world.client()
    login(client, "olivia")
    cookie = client.cookies["reward_poller_console"]
    assert client.get("/console/", follow_redirects=False).status_code == 200
    # tampered, or signed by another console's secret (each client's is random): signed out
    for value, other in ((cookie[:-2] + "xx", client), (cookie, world.client())):
        response = other.get("/console/", headers={"cookie": f"reward_poller_console={value}"},
                             follow_redirects=False)
        assert response.status_code == 303


def test_limiter_slows_each_wrong_password_then_refuses() -> None:
    now = [0.0]
    limiter = auth.LoginLimiter(max_failures=3, window=60, clock=lambda: now[0])
    assert [limiter.failed("a") for _ in range(3)] == [1.0, 2.0, 4.0]
    assert limiter.blocked_for("a") == 60 and limiter.blocked_for("b") == 0
    now[0] = 61
    assert limiter.blocked_for("a") == 0


def test_the_session_cookie_is_httponly_and_samesite_strict(world: World) -> None:
    client = world.client()
    cookie = client.get("/console/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # plain HTTP, and no trusted proxy said otherwise
    spoofed = client.get("/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in spoofed.headers["set-cookie"].lower()


def test_a_trusted_proxy_saying_https_makes_the_cookie_secure(world: World) -> None:
    client = world.client(trusted_proxies='["testclient"]')
    response = client.get("/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "; secure" in response.headers["set-cookie"].lower()


def test_a_post_without_its_csrf_token_is_refused(world: World) -> None:
    client = world.client()
    csrf = login(client, "olivia")
    base = "/console/redemptions/influitive/4815"
    for data in ({}, {"csrf": "forged"}, {"csrf": csrf[:-1]}):
        response = client.post(f"{base}/retry", data=data, follow_redirects=False)
        assert response.status_code == 403, data
    assert client.post("/console/logout", data={}).status_code == 403
    assert world.runtime.ledger.get("influitive", "4815").state.value == "held"
    # and the log-in form too
    fresh = world.client()
    response = fresh.post("/console/login", data={"name": "olivia",
                                                  "password": PASSWORDS["olivia"]})
    assert response.status_code == 403


def test_a_viewer_cannot_act(world: World) -> None:
    client = world.client()
    csrf = login(client, "victor")
    base = "/console/redemptions/influitive/4815"
    page = client.get(base).text
    assert "/retry/preview" not in page and "You can look but not act" in page
    for path in (f"{base}/retry/preview", f"{base}/retry", f"{base}/refuse"):
        response = client.post(path, data={"csrf": csrf, "message": "no"},
                               follow_redirects=False)
        assert response.status_code == 403, path
    assert world.runtime.ledger.get("influitive", "4815").state.value == "held"


def test_a_wrong_password_is_slowed_down_then_limited(world: World) -> None:
    client = world.client()  # login_failures = 3
    csrf = csrf_of(client.get("/console/login").text)
    took = []
    for _ in range(2):
        started = time.monotonic()
        response = client.post("/console/login", data={"csrf": csrf, "name": "olivia",
                                                       "password": "wrong"})
        took.append(time.monotonic() - started)
        assert response.status_code == 401 and "Wrong name or password." in response.text
    assert took[0] >= 1.0 and took[1] >= 2.0
    client.post("/console/login", data={"csrf": csrf, "name": "nobody", "password": "x"})
    refused = client.post("/console/login", data={"csrf": csrf, "name": "olivia",
                                                   "password": PASSWORDS["olivia"]},
                          follow_redirects=False)
    assert refused.status_code == 429 and "Retry-After" in refused.headers


def test_signing_in_goes_only_to_a_page_of_the_console() -> None:
    assert _safe_next("/console/spend") == "/spend"
    assert _safe_next("/redemptions") == "/redemptions"
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil", None, ""):
        assert _safe_next(bad) == "/"


def test_the_console_stays_on_loopback_unless_told_otherwise() -> None:
    user = {"name": "a", "role": "viewer", "password_hash": auth.hash_password("p", n=2**14)}
    settings = ConsoleSettings(users=[user])
    assert settings.listen.startswith("127.0.0.1:")
    check_bind("127.0.0.1", settings)
    check_bind("::1", settings)
    with pytest.raises(ConfigError, match="not loopback"):
        check_bind("0.0.0.0", settings)
    check_bind("0.0.0.0", ConsoleSettings(users=[user], allow_remote=True))
    with pytest.raises(ConfigError, match="no users"):
        check_bind("127.0.0.1", ConsoleSettings())
    assert is_loopback("localhost") and not is_loopback("192.0.2.1")


def test_add_user_prints_an_entry_that_signs_in(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "poller", "console", "add-user", "Mia Ops", "--role",
         "operator", "--password-stdin"], input="a long passphrase\n", capture_output=True,
        text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "a long passphrase" not in result.stdout + result.stderr
    entry = tomllib.loads(result.stdout)["console"]["users"][0]
    assert entry["name"] == "Mia Ops" and entry["role"] == "operator"
    users = auth.Users([ConsoleUserSettings(**entry)])
    assert users.authenticate("mia ops", "a long passphrase") is not None
    assert users.authenticate("Mia Ops", "a long passphrasE") is None


def test_add_user_writes_to_the_config_once(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[console]\nenabled = true\n')
    os.chmod(config, 0o600)
    cmd = [sys.executable, "-m", "poller", "--config", str(config), "console", "add-user",
           "ana", "--role", "viewer", "--password-stdin", "--write"]
    first = subprocess.run(cmd, input="another passphrase\n", capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stderr
    data = tomllib.loads(config.read_text())
    assert data["console"]["enabled"] is True
    assert [u["name"] for u in data["console"]["users"]] == ["ana"]
    again = subprocess.run(cmd, input="another passphrase\n", capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 1 and "already has a console user" in again.stderr
