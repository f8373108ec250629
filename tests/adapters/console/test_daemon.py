"""The daemon serves the console under /console on its listener when ``[console] enabled``,
beside /healthz; and refuses to start it on an address beyond loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from poller.console.app import CSP
from poller.sandbox.services import Sandbox, config_text
from tests.adapters.console.conftest import console_toml
from tests.system.daemon.conftest import free_port, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def urls() -> Iterator[dict[str, str]]:
    with Sandbox() as found:
        yield found


def config(tmp: Path, urls: dict[str, str], listen: str, **console: str) -> Path:
    path = tmp / "config.toml"
    text = config_text(urls, ledger_url=f"sqlite:///{tmp}/ledger.db",
                       extra_keys={"server": {"listen": f'"{listen}"'}})
    path.write_text(text + "\n" + console_toml(**console))
    os.chmod(path, 0o600)
    return path


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}


def test_the_daemon_serves_the_console_beside_healthz(tmp_path: Path,
                                                      urls: dict[str, str]) -> None:
    listen = f"127.0.0.1:{free_port()}"
    path = config(tmp_path, urls, listen)
    daemon = subprocess.Popen([sys.executable, "-m", "poller", "--config", str(path), "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(),
                              cwd=tmp_path)
    try:
        base = f"http://{listen}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30)
        page = httpx.get(f"{base}/console/", timeout=5)
        assert page.status_code == 303 and page.headers["location"].startswith("/console/login")
        login = httpx.get(f"{base}/console/login", timeout=5)
        assert login.status_code == 200 and "Sign in" in login.text
        assert login.headers["content-security-policy"] == CSP
        assert httpx.get(f"{base}/console/static/console.css", timeout=5).status_code == 200
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def test_the_daemon_will_not_serve_it_beyond_loopback(tmp_path: Path,
                                                      urls: dict[str, str]) -> None:
    path = config(tmp_path, urls, f"0.0.0.0:{free_port()}")
    result = subprocess.run([sys.executable, "-m", "poller", "--config", str(path), "run"],
                            capture_output=True, text=True, timeout=60, env=env(),
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "not loopback" in result.stderr and "allow_remote" in result.stderr
