"""The console in a real browser (Chromium, driven by Playwright) against
``reward-poller sandbox``: the configuration ``sandbox --write-config`` writes, with a
``[console]`` section added, one ``run --run-once``, and ``reward-poller console`` serving
it. Each page is saved as a screenshot: into docs/console/ when
``REWARD_POLLER_SCREENSHOTS=1`` (how the docs' pictures are refreshed), else into the test's
own temporary folder, so a test run leaves the checkout as it found it.

Needs Debian's Chromium at /usr/bin/chromium and the Python package playwright (dev
extras); locally a missing one skips these tests, under CI (``CI=true``) it fails them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adapters.console.conftest import PASSWORDS, console_toml
from tests.system.conftest import require

pytestmark = [pytest.mark.e2e, pytest.mark.system, pytest.mark.timeout(600)]

CHROMIUM = "/usr/bin/chromium"
WHO = "the console's browser test"
ROOT = Path(__file__).resolve().parents[3]
DOCS_SHOTS = ROOT / "docs" / "console"
MESSAGE = "Conference tickets are sold out this year, so your 20,000 points are back."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_run(count: int) -> int:
    """A port base with ``count`` free ports in a row."""
    for _ in range(50):
        base = free_port()
        if base + count >= 65535:
            continue
        try:
            socks = []
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_POLLER_")}
    out["PYTHONUNBUFFERED"] = "1"
    return out


@dataclass
class Site:
    folder: Path
    config: Path
    console: str
    influitive: str
    tango: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "poller", "--config", str(self.config),
                               *args], capture_output=True, text=True, timeout=120,
                              env=env(), cwd=self.folder)

    def decisions(self, rid: str) -> list[dict[str, Any]]:
        got = httpx.get(f"{self.influitive}/_standin/decisions", timeout=10).json()
        return [d for d in got["decisions"] if d["id"] == rid]

    def state(self, rid: str) -> str:
        result = self.cli("ledger", "show", rid, "--json")
        assert result.returncode == 0, result.stderr
        return str(json.loads(result.stdout)["state"])


def _wait_for_line(proc: subprocess.Popen[str], word: str, timeout: float = 60) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never printed {word!r} (exit {proc.poll()})")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require(Path(CHROMIUM).is_file(),
            f"Chromium at {CHROMIUM} (Debian: apt-get install chromium)", WHO)
    try:
        import playwright  # noqa: F401
    except ImportError:
        require(False, "the Python package playwright (the dev extras)", WHO)
    folder = tmp_path_factory.mktemp("console-site")
    config = folder / "config.toml"
    base = free_run(5)
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "poller", "--config", str(config), "sandbox", "--port-base",
         str(base), "--write-config"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env(), cwd=folder)
    console: subprocess.Popen[str] | None = None
    try:
        _wait_for_line(sandbox, "ready")
        with config.open("a") as f:
            f.write("\n" + console_toml())
        site = Site(folder=folder, config=config, console="",
                    influitive=f"http://127.0.0.1:{base}", tango=f"http://127.0.0.1:{base + 2}")
        # No funds at Tango: its redemption waits.
        httpx.post(f"{site.tango}/_standin/balance", json={"amount": 0}, timeout=10)
        first = site.cli("run", "--run-once")
        assert first.returncode in (0, 1), first.stderr
        port = free_port()
        console = subprocess.Popen(
            [sys.executable, "-m", "poller", "--config", str(config), "console", "--listen",
             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env(), cwd=folder)
        _wait_for_line(console, "console at")
        site.console = f"http://127.0.0.1:{port}/console"
        yield site
    finally:
        for proc in (console, sandbox):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 800},
                                  java_script_enabled=False)
    tab = context.new_page()
    violations: list[str] = []
    tab.on("console", lambda m: violations.append(m.text)
           if "Content Security Policy" in m.text else None)
    yield tab
    context.close()
    assert violations == []  # nothing the pages load is blocked by their own policy


def sign_in(page: Any, site: Site, name: str, password: str | None = None) -> None:
    page.goto(f"{site.console}/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password or PASSWORDS[name])
    page.click("button[type=submit]")


_TEMP_SHOTS: list[Path] = []


def shots_dir() -> Path:
    if os.environ.get("REWARD_POLLER_SCREENSHOTS") == "1":
        return DOCS_SHOTS
    if not _TEMP_SHOTS:
        _TEMP_SHOTS.append(Path(tempfile.mkdtemp(prefix="console-shots-")))
    return _TEMP_SHOTS[0]


def shot(page: Any, name: str, *, full: bool = True) -> None:
    folder = shots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    assert path.stat().st_size > 1000  # a picture of the page, not an empty file


def test_refuse_a_held_redemption_with_a_message(page: Any, site: Site) -> None:
    page.goto(f"{site.console}/")
    assert "/console/login" in page.url
    shot(page, "login", full=False)
    sign_in(page, site, "olivia")
    assert page.locator("h1").inner_text() == "Overview"
    shot(page, "overview")
    page.click("text=Needs a person")
    shot(page, "redemptions")
    row = page.locator("tr", has_text="Conference ticket")
    assert "no reward rule" in row.inner_text()
    row.locator("a", has_text="4815").click()
    assert "Redemption 4815" in page.locator("h1").inner_text()
    shot(page, "redemption")
    form = page.locator("form.action", has=page.locator("textarea"),
                        has_text="Refuse")
    form.locator("textarea").fill(MESSAGE)
    form.locator("button").click()
    assert "What will happen" in page.content()
    assert page.locator("blockquote.message").inner_text() == MESSAGE
    assert "a refund will be made" in page.content()
    shot(page, "preview")
    assert site.decisions("4815") == []  # the preview sent nothing
    page.click("text=Refuse now")
    assert "Influitive has your message" in page.locator(".flash").inner_text()
    sent = site.decisions("4815")
    assert [(d["verb"], d["message"]) for d in sent] == [("refuse", MESSAGE)]
    assert "by olivia" in page.locator(".history").inner_text()
    shot(page, "refused")


def test_retry_a_waiting_redemption_after_a_top_up(page: Any, site: Site) -> None:
    assert site.state("4820") == "waiting"
    httpx.post(f"{site.tango}/_standin/balance", json={"amount": 1000}, timeout=10)
    sign_in(page, site, "olivia")
    page.goto(f"{site.console}/redemptions/influitive/4820")
    page.locator("form.action button", has_text="Retry").click()
    assert "an order will be placed (20.00 USD, tango)" in page.content()
    page.click("text=Retry now")
    assert "Retry:" in page.locator(".flash").inner_text()
    assert site.state("4820") == "waiting"
    again = site.cli("run", "--run-once")
    assert again.returncode in (0, 1), again.stderr
    assert site.state("4820") == "fulfilled"
    page.reload()
    assert "fulfilled" in page.locator("h1").inner_text()


def test_a_viewer_cannot_act(page: Any, site: Site) -> None:
    sign_in(page, site, "victor")
    page.goto(f"{site.console}/redemptions/influitive/4818")
    assert page.locator("form.action").count() == 0
    assert "You can look but not act" in page.content()
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = page.request.post(f"{site.console}/redemptions/influitive/4818/retry",
                               form={"csrf": csrf}, max_redirects=0)
    assert answer.status == 403
    assert site.state("4818") == "held"


def test_a_form_without_its_csrf_token_is_refused(browser: Any, site: Site) -> None:
    context = browser.new_context()  # scripts on, to take the token out of the form
    page = context.new_page()
    try:
        sign_in(page, site, "olivia")
        page.goto(f"{site.console}/redemptions/influitive/4818")
        page.evaluate("document.querySelectorAll('input[name=csrf]')"
                      ".forEach(e => e.remove())")
        page.locator("form.action button", has_text="Retry").click()
        assert page.locator("h1").inner_text() == "Not allowed"
        assert "did not come from this console" in page.content()
        assert site.state("4818") == "held"
    finally:
        context.close()


def test_a_wrong_password_is_slowed_down(page: Any, site: Site) -> None:
    started = time.monotonic()
    sign_in(page, site, "olivia", "not the password")
    assert time.monotonic() - started >= 1.0
    assert "Wrong name or password." in page.locator(".error").inner_text()
    assert "/console/login" in page.url


def test_the_spend_chart_renders(page: Any, site: Site) -> None:
    sign_in(page, site, "olivia")
    page.goto(f"{site.console}/spend")
    chart = page.locator("svg.chart").first
    assert chart.is_visible()
    assert chart.locator("rect.bar").count() > 0
    shot(page, "spend")
    page.goto(f"{site.console}/audit")
    assert "No audit has run yet." in page.content()
    shot(page, "audit", full=False)


def test_readable_on_a_phone(browser: Any, site: Site) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  java_script_enabled=False, device_scale_factor=2)
    page = context.new_page()
    try:
        sign_in(page, site, "olivia")
        page.goto(f"{site.console}/redemptions")
        # Nothing wider than the screen: no sideways scrolling to read a row.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.locator("a", has_text="4818").is_visible()
        shot(page, "phone-redemptions")
    finally:
        context.close()
