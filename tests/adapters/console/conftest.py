"""A console over a real ledger: the sandbox's stand-ins, its configuration with a
``[console]`` section, one worker cycle run, and the console served from that Runtime (the
same ``runtime_backend`` the daemon and ``reward-poller console`` use)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from poller.compose import Runtime
from poller.config import Config, load_config
from poller.console.app import runtime_backend, standalone
from poller.console.auth import hash_password
from poller.sandbox.services import Sandbox, config_text

PASSWORDS = {"olivia": "operator-password-1", "victor": "viewer-password-22"}
HASHES = {name: hash_password(pw, n=2**14) for name, pw in PASSWORDS.items()}


def console_toml(**extra: str) -> str:
    lines = ["[console]", "enabled = true", "login_failures = 3", "show_funds = false"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    lines += ["", "[[console.users]]", 'name = "olivia"', 'role = "operator"',
              f'password_hash = "{HASHES["olivia"]}"', "", "[[console.users]]",
              'name = "victor"', 'role = "viewer"', f'password_hash = "{HASHES["victor"]}"']
    return "\n".join(lines) + "\n"


@dataclass
class World:
    box: Sandbox
    config_path: Path
    config: Config
    runtime: Runtime

    def client(self, **extra: str) -> TestClient:
        settings = self.config.console
        if extra:
            settings = load_config(self._write(extra)).console
        return TestClient(standalone(runtime_backend(self.runtime, settings), settings),
                          base_url="http://127.0.0.1")

    def _write(self, extra: dict[str, str]) -> Path:
        path = self.config_path.with_name("other.toml")
        text = self.config_path.read_text().rsplit("\n[console]\n", 1)[0]
        path.write_text(text + console_toml(**extra))
        os.chmod(path, 0o600)
        return path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "poller", "--config", str(self.config_path), *args],
            capture_output=True, text=True, timeout=120)


def make_world(tmp: Path, *, tango_balance: str | None = "0") -> Iterator[World]:
    box = Sandbox()
    if tango_balance is not None:
        box.tango.set_balance(tango_balance)  # 4820 waits for funds
    urls = box.start()
    try:
        path = tmp / "config.toml"
        path.write_text(config_text(urls, ledger_url=f"sqlite:///{tmp}/ledger.db")
                        + "\n" + console_toml())
        os.chmod(path, 0o600)
        config = load_config(path)
        with Runtime(config) as runtime:
            runtime.worker.run_cycle()
            yield World(box=box, config_path=path, config=config, runtime=runtime)
    finally:
        box.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def login(client: TestClient, name: str) -> str:
    """Sign in; returns the CSRF token of the signed-in session."""
    page = client.get("/console/login")
    response = client.post("/console/login", data={
        "csrf": csrf_of(page.text), "name": name, "password": PASSWORDS[name], "next": "/"},
        follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/console/").text)
