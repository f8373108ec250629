"""The adapters' HTTP client: TLS verified with one context shared by the process (loaded
only where TLS can happen), and no cookie jar."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from poller import transport
from poller.sources.influenceio.points import PointsClient
from poller.sources.influitive.client import InfluitiveClient
from poller.transport import ApiClient, tls_context
from poller.vendors.giftbit import GiftbitVendor
from poller.vendors.http import HttpVendor
from poller.vendors.tango import TangoVendor
from poller.vendors.tremendous import TremendousVendor

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY", "no_proxy", "NO_PROXY")

Close = Callable[[], None]
Build = Callable[[str], Close]

BUILDERS: dict[str, Build] = {
    "influitive": lambda url: InfluitiveClient(url, "token-0123456789", "org-1").close,
    "influenceio": lambda url: PointsClient(url, "key-0123456789").close,
    "tremendous": lambda url: TremendousVendor(url, "key-0123456789").close,
    "giftbit": lambda url: GiftbitVendor(url, "key-0123456789").close,
    "tango": lambda url: TangoVendor(url, "platform", "key-0123456789", "customer",
                                     "account").close,
    "http": lambda url: HttpVendor(url + "/orders", "secret-0123456789").close,
}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every load of trusted certificates, in a process whose shared context is not built
    yet and with no proxy in the environment."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    transport._verifying_context.cache_clear()
    seen: list[Any] = []
    real = ssl.SSLContext.load_verify_locations

    def spy(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        seen.append(args or kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", spy)
    yield seen
    transport._verifying_context.cache_clear()


def test_every_https_client_shares_one_verifying_context(loads: list[Any]) -> None:
    closers = [build("https://api.example.com/v1") for build in BUILDERS.values()]
    for close in closers:
        close()
    assert len(loads) == 1  # the certificates are loaded once, not once per client
    context = tls_context("https://api.example.com")
    assert context is tls_context("https://other.example.com")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0


def test_plain_http_clients_load_no_certificates(loads: list[Any]) -> None:
    for build in BUILDERS.values():
        build("http://127.0.0.1:8080/v1")()
    assert loads == []


def test_the_context_of_a_plain_http_url_accepts_no_certificate(loads: list[Any]) -> None:
    context = tls_context("http://127.0.0.1:8080")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0  # a TLS connection would fail closed
    assert context is not tls_context("https://api.example.com")


def test_a_proxy_in_the_environment_gets_the_verifying_context(
    loads: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example.com:3128")
    assert tls_context("http://127.0.0.1:8080") is tls_context("https://api.example.com")


def test_an_explicit_verify_is_kept(loads: list[Any]) -> None:
    own = ssl.create_default_context()
    loads.clear()
    with ApiClient(base_url="https://api.example.com", verify=own):
        pass
    assert loads == []


def _cookie_server(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}, headers={"Set-Cookie": "session=abc123; Path=/"})

    return httpx.MockTransport(handler)


def test_a_cookie_set_by_the_server_is_not_sent_back() -> None:
    seen: list[httpx.Request] = []
    with ApiClient(base_url="https://api.example.com", transport=_cookie_server(seen)) as client:
        client.get("/first")
        client.get("/second")
        assert len(client.cookies) == 0
    assert [r.headers.get("Cookie") for r in seen] == [None, None]


def test_a_plain_httpx_client_would_have_sent_it_back() -> None:
    # What the test above guards against: httpx keeps the cookie and returns it.
    seen: list[httpx.Request] = []
    with httpx.Client(base_url="https://api.example.com", transport=_cookie_server(seen)) as c:
        c.get("/first")
        c.get("/second")
    assert seen[1].headers.get("Cookie") == "session=abc123"


def test_the_influitive_client_sends_no_cookie_back() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": []}, headers={
            "Set-Cookie": "AWSALB=sticky; Path=/", "Content-Type": "application/json"})

    client = InfluitiveClient("https://api.example.com", "token-0123456789", "org-1",
                              transport=httpx.MockTransport(handler))
    try:
        client.poll()
        client.poll()
    finally:
        client.close()
    assert len(seen) >= 2 and all("Cookie" not in r.headers for r in seen)


def test_cookies_set_on_the_client_on_purpose_are_still_sent() -> None:
    seen: list[httpx.Request] = []
    with ApiClient(base_url="https://api.example.com", transport=_cookie_server(seen),
                   cookies={"chosen": "1"}) as client:
        client.get("/first")
        client.get("/second")
    assert [r.headers.get("Cookie") for r in seen] == ["chosen=1", "chosen=1"]
