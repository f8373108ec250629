"""Fixtures for the vendor adapters: the Tremendous stand-in on loopback, fast vendors.

One server serves the whole session; each test gets it reset. Retries never really sleep:
the vendors get a ``sleep`` that only records how long it was asked to wait.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from poller.domain.model import OrderRequest
from poller.sandbox.server import ServerThread
from poller.sandbox.tremendous import API_PREFIX, TremendousState, create_app
from poller.vendors.tremendous import TremendousVendor

from .support import FAST, STANDIN_KEY, Standin, make_request


@pytest.fixture(scope="session")
def _standin_server() -> Iterator[tuple[str, TremendousState]]:
    state = TremendousState()
    with ServerThread(create_app(state, api_key=STANDIN_KEY)) as url:
        yield url, state


@pytest.fixture
def standin(_standin_server: tuple[str, TremendousState]) -> Iterator[Standin]:
    url, state = _standin_server
    state.reset()
    yield Standin(url=url, base_url=url + API_PREFIX, state=state, api_key=STANDIN_KEY)
    state.reset()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_vendor(
    standin: Standin, sleeps: list[float],
) -> Iterator[Callable[..., TremendousVendor]]:
    made: list[TremendousVendor] = []

    def make(**overrides: Any) -> TremendousVendor:
        kwargs: dict[str, Any] = {
            "base_url": standin.base_url, "api_key": standin.api_key,
            "policy": FAST, "sleep": sleeps.append,
        }
        kwargs.update(overrides)
        vendor = TremendousVendor(**kwargs)
        made.append(vendor)
        return vendor

    yield make
    for vendor in made:
        vendor.close()


@pytest.fixture
def vendor(make_vendor: Callable[..., TremendousVendor]) -> TremendousVendor:
    return make_vendor()


@pytest.fixture
def order_request() -> Callable[..., OrderRequest]:
    """``order_request("r-7", product="PENDING")``: an OrderRequest with a derived key."""
    return make_request
