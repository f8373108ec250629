"""``check`` on every vendor finds a mistyped product (against the stand-ins), and
``run_checks`` puts one result per vendor used by ``[[rewards]]``."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from poller.cli.check import count_problems, products_by_vendor, run_checks
from poller.config import load_config
from poller.domain.errors import OperatorFacingError
from poller.ports import CheckableVendor, Vendor, VendorCheck
from poller.vendors.giftbit import GiftbitVendor
from poller.vendors.http import HttpVendor
from poller.vendors.manual import ManualVendor
from poller.vendors.tango import TangoVendor
from poller.vendors.tremendous import TremendousVendor

from .support import (
    FAST,
    Standin,
    giftbit_standin,
    receiver_standin,
    tango_standin,
)

USD25 = (Decimal("25"), "USD")


def _by_product(result: VendorCheck) -> dict[str | None, Any]:
    return {p.product: p for p in result.products}


def test_tremendous_check_finds_a_mistyped_product(
    make_vendor: Callable[..., TremendousVendor], standin: Standin,
) -> None:
    standin.state.set_balance(123_456)
    vendor = make_vendor()
    result = vendor.check([("AMZN-US", *USD25), ("AMZN-SU", *USD25),
                           ("VISA-US", Decimal("5000"), "USD"),
                           ("VISA-US", Decimal("5"), "JPY")])
    assert result.credentials_ok and not result.ok
    assert result.balance == "1,234.56 USD"
    checks = result.products
    assert checks[0].ok and checks[0].detail == "Amazon.com Gift Card"
    assert checks[1].detail == "no product 'AMZN-SU' enabled at Tremendous (did you mean " \
                               "AMZN-US?)"
    assert "outside its values (1.00 to 2000.00)" in checks[2].detail
    assert "JPY is not one of its currencies" in checks[3].detail


def test_tremendous_check_with_a_wrong_key(make_vendor: Callable[..., TremendousVendor]) -> None:
    result = make_vendor(api_key="tk_wrong").check([("AMZN-US", *USD25)])
    assert not result.credentials_ok and not result.ok
    assert "rejected the API key" in result.problems[0]
    assert result.products[0].detail.startswith("not checked")


def test_tango_check_finds_a_mistyped_utid() -> None:
    standin = tango_standin()
    vendor = TangoVendor(standin.base_url, standin.platform_name, standin.platform_key,
                         standin.customer, standin.account, policy=FAST)
    try:
        result = vendor.check([("U561593", *USD25), ("U561539", *USD25)])
    finally:
        vendor.close()
    assert [p.ok for p in result.products] == [True, False]
    assert "did you mean U561593" in result.products[1].detail


def test_giftbit_check_finds_a_mistyped_brand() -> None:
    standin = giftbit_standin()
    vendor = GiftbitVendor(standin.base_url, standin.api_key, policy=FAST)
    try:
        result = vendor.check([("amazonus", *USD25), ("amazon-us", *USD25)])
    finally:
        vendor.close()
    assert [p.ok for p in result.products] == [True, False]
    assert "did you mean amazonus" in result.products[1].detail


def test_http_and_manual_have_no_catalog_to_check() -> None:
    receiver = receiver_standin()
    http = HttpVendor(receiver.hook_url, receiver.secret, policy=FAST)
    try:
        assert http.check([("anything", *USD25)]).ok
    finally:
        http.close()
    assert ManualVendor().check([(None, *USD25)]).ok
    assert receiver.state.received == []


def test_every_configurable_vendor_is_checkable() -> None:
    def conforms(vendor: CheckableVendor) -> bool:
        return callable(vendor.check)

    for cls in (TremendousVendor, TangoVendor, GiftbitVendor, HttpVendor, ManualVendor):
        assert callable(cls.check)
    assert conforms(ManualVendor())


# --- run_checks --------------------------------------------------------------------------


def _config(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "config.toml"
    path.write_text('[influitive]\napi_token = "t"\norg_id = "o"\n' + text)
    return load_config(path)


def test_run_checks_one_result_per_vendor_in_rewards(tmp_path: Path) -> None:
    config = _config(tmp_path, """
[vendors.manual]
[vendors.http]
url = "https://hooks.example.com/x"
secret = "0123456789abcdef"
[[rewards]]
reward_id = "1"
vendor = "manual"
amount = "10"
[[rewards]]
reward_id = "2"
vendor = "manual"
amount = "10"
[[rewards]]
reward_id = "3"
vendor = "manual"
product = "HOODIE"
amount = "10"
""")
    assert products_by_vendor(config) == {"manual": [(None, Decimal("10"), "USD"),
                                                     ("HOODIE", Decimal("10"), "USD")]}
    results = run_checks(config, lambda name: ManualVendor())
    assert [r.vendor for r in results] == ["manual"]
    assert len(results[0].products) == 2 and count_problems(results) == 0


class _Broken:
    name = "manual"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def check(self, products: Any) -> VendorCheck:
        raise self.error

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("error", "credentials_ok"), [
    (OperatorFacingError("Tremendous rejected the API key", status=401), False),
    (OperatorFacingError("no such funding source", status=404), True),
    (RuntimeError("bug"), False),
])
def test_a_check_that_raises_is_a_failed_result(tmp_path: Path, error: Exception,
                                                credentials_ok: bool) -> None:
    config = _config(tmp_path, '[vendors.manual]\n[[rewards]]\nreward_id = "1"\n'
                               'vendor = "manual"\namount = "10"\n')
    broken: Any = _Broken(error)
    results = run_checks(config, lambda name: broken)
    assert not results[0].ok and results[0].credentials_ok is credentials_ok
    assert count_problems(results) == 1


def test_a_vendor_without_check_passes_with_a_note(tmp_path: Path) -> None:
    config = _config(tmp_path, '[vendors.manual]\n[[rewards]]\nreward_id = "1"\n'
                               'vendor = "manual"\namount = "10"\n')

    class Plain:
        name = "manual"

        def close(self) -> None:
            pass

    plain: Any = Plain()
    vendor: Vendor = plain
    results = run_checks(config, lambda name: vendor)
    assert results[0].ok and "no check" in results[0].products[0].detail


def test_a_tremendous_answer_that_is_no_product_list_is_a_problem() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/funding_sources"):
            return httpx.Response(200, json={"funding_sources": [
                {"id": "B", "method": "balance", "meta": {"available_cents": 100}}]})
        return httpx.Response(200, json={"nope": []})

    vendor = TremendousVendor("https://t.mock/api/v2", "k", policy=FAST,
                              transport=httpx.MockTransport(handler))
    result = vendor.check([("AMZN-US", *USD25)])
    assert result.credentials_ok and result.balance == "1.00 USD"
    assert "product list unavailable" in result.problems[0]
    assert not result.products[0].ok


def test_the_example_config_documents_every_vendor(tmp_path: Path) -> None:
    """Uncommented (with real-looking values), the example's vendor sections validate."""
    example = (Path(__file__).parents[3] / "config.example.toml").read_text()
    sections: list[str] = []
    current: list[str] | None = None
    for line in example.splitlines():
        if line.startswith("# [vendors."):
            current = [line[2:]]
            sections.append("")
        elif current is not None and line.startswith("# ") and "=" in line.split("#")[1]:
            current.append(line[2:])
        else:
            if current is not None:
                sections[-1] = "\n".join(current)
            current = None
    if current is not None:
        sections[-1] = "\n".join(current)
    assert [s.splitlines()[0] for s in sections] == [
        "[vendors.tango]", "[vendors.giftbit]", "[vendors.http]", "[vendors.manual]"]
    text = "\n".join(sections).replace('"..."', '"0123456789abcdef-value"')
    config = _config(tmp_path, text)
    assert set(config.vendors) == {"tango", "giftbit", "http", "manual"}


# --- a vendor that cannot be reached fails the check ----------------------------------------


def _dead(prefix: str) -> str:
    from poller.sandbox.server import free_port

    return f"http://127.0.0.1:{free_port()}{prefix}"


def test_every_unreachable_vendor_fails_its_check() -> None:
    vendors: list[tuple[str, CheckableVendor]] = [
        ("Tremendous", TremendousVendor(_dead("/api/v2"), "tk_x", policy=FAST,
                                        sleep=lambda _s: None)),
        ("Tango Card", TangoVendor(_dead("/raas/v2"), "p", "k", "c", "a", policy=FAST,
                                   sleep=lambda _s: None, min_order_interval=0.0)),
        ("Giftbit", GiftbitVendor(_dead("/papi/v1"), "gb_x", policy=FAST,
                                  sleep=lambda _s: None)),
        ("http://127.0.0.1", HttpVendor(_dead("/hooks/orders"), "s" * 20, policy=FAST)),
    ]
    for label, vendor in vendors:
        try:
            result = vendor.check([("X", *USD25)])
        finally:
            vendor.close()  # type: ignore[attr-defined]
        assert not result.credentials_ok and not result.ok, label
        assert result.problems and label in result.problems[0], result.problems
        assert "could not reach" in result.problems[0]
        assert not result.products[0].ok


def test_an_http_receiver_that_is_up_passes_without_a_request() -> None:
    receiver = receiver_standin()
    vendor = HttpVendor(receiver.hook_url, receiver.secret, policy=FAST)
    result = vendor.check([("X", *USD25)])
    assert result.ok and result.credentials_ok
    assert receiver.state.received == []


def test_a_tango_account_that_answers_5xx_fails_the_credentials() -> None:
    standin = tango_standin()
    standin.state.fail(503, None)
    vendor = TangoVendor(standin.base_url, standin.platform_name, standin.platform_key,
                         standin.customer, standin.account, policy=FAST,
                         sleep=lambda _s: None, min_order_interval=0.0)
    try:
        result = vendor.check([("U561593", *USD25)])
    finally:
        vendor.close()
    assert not result.credentials_ok and "Tango Card" in result.problems[0]
