"""The local stand-ins answer like the vendors' documentation (the cassettes) says.

Every request of every Tremendous, Tango Card and Giftbit cassette (composed from the
vendor's documentation, see ``doc_cassettes.py``) is sent to the matching stand-in, set up
for that case; its answer must have the cassette's status and the same shape in the
fields the adapter reads: the same values where the adapter branches on them (statuses,
error keys) and the same types elsewhere. Where a stand-in differed from the
documentation, the stand-in was changed, never the cassette.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from poller.sandbox import giftbit as giftbit_standin
from poller.sandbox import tango as tango_standin
from poller.sandbox import tremendous as tremendous_standin
from poller.sandbox.server import ServerThread

from .doc_cassettes import CASSETTES, interactions, key_paths, request_json, response_json

KEY = "standin-key-for-the-shape-tests"
WRONG = "a-key-the-stand-in-does-not-know"


@dataclass(frozen=True)
class Field:
    path: str
    """Dotted, ``*`` for every item of a list."""
    same_value: bool = False
    """Compare the values (the adapter branches on them), not only their types."""


@dataclass(frozen=True)
class Case:
    arrange: Callable[[Any], object] = lambda state: None
    between: dict[int, Callable[[Any, str], object]] = field(default_factory=dict)
    """Before interaction ``i``: ``step(state, idempotency key of the cassette)``."""
    wrong_key: bool = False
    status_only: frozenset[int] = frozenset()
    """Interactions whose body the documentation leaves open (a 5xx may be any page)."""


@dataclass(frozen=True)
class Vendor:
    name: str
    make_app: Callable[[Any], Any]
    new_state: Callable[[], Any]
    auth: Callable[[str], dict[str, str]]
    fields: tuple[Field, ...]
    payload: str | None
    """A dotted path whose whole key layout must match (Tremendous' error payload)."""
    key_of: Callable[[dict[str, Any]], str]
    cases: dict[str, Case]


def _values(value: Any, parts: list[str]) -> Iterator[Any]:
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(value, list):
            for item in value:
                yield from _values(item, rest)
    elif isinstance(value, dict) and head in value:
        yield from _values(value[head], rest)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def shape(body: Any, vendor: Vendor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in vendor.fields:
        found = list(_values(body, spec.path.split(".")))
        if spec.same_value:
            out[spec.path] = sorted({repr(v) for v in found})
        else:
            out[spec.path] = sorted({_kind(v) for v in found})
    if vendor.payload is not None:
        inner = next(_values(body, vendor.payload.split(".")), None)
        leaves = {p for p in key_paths(inner)
                  if not isinstance(next(_values(inner, p.split(".")), None), dict)}
        out[vendor.payload] = sorted(
            (p, _kind(next(_values(inner, p.split(".")), None))) for p in leaves)
    return out


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _basic(key: str) -> dict[str, str]:
    token = base64.b64encode(f"{tango_standin.PLATFORM_NAME}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _tremendous_key(body: dict[str, Any]) -> str:
    return str(body.get("external_id", ""))


def _tango_key(body: dict[str, Any]) -> str:
    return str(body.get("externalRefID", ""))


def _giftbit_key(body: dict[str, Any]) -> str:
    return str(body.get("id", ""))


TREMENDOUS = Vendor(
    name="tremendous",
    make_app=lambda st: tremendous_standin.create_app(st, api_key=KEY),
    new_state=tremendous_standin.TremendousState,
    auth=_bearer,
    fields=(
        Field("order.id"), Field("order.external_id"),
        Field("order.status", same_value=True),
        Field("order.rewards.*.delivery.method", same_value=True),
        Field("order.rewards.*.delivery.status", same_value=True),
        Field("order.rewards.*.delivery.link"), Field("order.rewards.*.recipient.email"),
        Field("errors.message"), Field("error.message"), Field("error"),
        Field("product.id"), Field("product.currency_codes"), Field("product.skus.*.min"),
        Field("product.skus.*.max"),
    ),
    payload="errors.payload",
    key_of=_tremendous_key,
    cases={
        "create_and_lookup.yaml": Case(),
        "repeat_create.yaml": Case(),
        "lookup_unknown.yaml": Case(),
        "auth_401.yaml": Case(wrong_key=True),
        "funds_402.yaml": Case(arrange=lambda s: s.set_balance(0)),
        "product_422.yaml": Case(),
        "unknown_product_422.yaml": Case(),
        "recipient_422.yaml": Case(),
        "config_422.yaml": Case(),
        "rate_limit_429.yaml": Case(arrange=lambda s: s.set_rate_limit(0)),
        "server_error_then_success.yaml": Case(arrange=lambda s: s.fail(500, 2)),
        "server_error_forever.yaml": Case(arrange=lambda s: s.fail(500, None)),
        "pending_then_approved.yaml": Case(between={1: lambda s, key: s.approve(key)}),
        "accepted_202.yaml": Case(arrange=lambda s: s.background(1)),
        "conflict_409.yaml": Case(),
        "bounced_delivery.yaml": Case(),
    },
)

TANGO = Vendor(
    name="tango",
    make_app=lambda st: tango_standin.create_app(st, platform_key=KEY),
    new_state=tango_standin.TangoState,
    auth=_basic,
    fields=(
        Field("referenceOrderID"), Field("externalRefID"),
        Field("status", same_value=True), Field("sendEmail", same_value=True),
        Field("recipient.email"), Field("reward.credentialList.*.type", same_value=True),
        Field("reward.credentialList.*.value"), Field("reward.credentials"),
        Field("orders"), Field("orders.*.referenceOrderID"), Field("orders.*.externalRefID"),
        Field("orders.*.status", same_value=True), Field("orders.*.reward"),
        Field("i18nKey", same_value=True), Field("message"), Field("requestId"),
        Field("errors.*.i18nKey", same_value=True), Field("errors.*.path", same_value=True),
        Field("errors.*.message"),
        Field("currentBalance"), Field("currencyCode"),
        Field("brands.*.items.*.utid"), Field("brands.*.items.*.currencyCode"),
        Field("brands.*.items.*.status"), Field("brands.*.items.*.valueType"),
        Field("brands.*.items.*.minValue"), Field("brands.*.items.*.maxValue"),
    ),
    payload=None,
    key_of=_tango_key,
    cases={
        "create_and_lookup.yaml": Case(),
        "repeat_create.yaml": Case(),
        "lookup_unknown.yaml": Case(),
        "pending_then_approved.yaml": Case(between={2: lambda s, key: s.approve(key)}),
        "auth_401.yaml": Case(wrong_key=True),
        "funds_402.yaml": Case(arrange=lambda s: s.set_balance("1.00")),
        "item_400.yaml": Case(),
        "item_unavailable_400.yaml": Case(),
        "in_process_409.yaml": Case(arrange=lambda s: s.in_process(1)),
        "exists_409.yaml": Case(between={1: lambda s, key: s.set_repeat_conflict()}),
        "partial.yaml": Case(between={1: lambda s, key: s.set_status(key, "PARTIAL")}),
        "lookup_404_110.yaml": Case(arrange=lambda s: s.set_empty_lookup_404()),
        "recipient_400.yaml": Case(),
        "rate_limit_429.yaml": Case(arrange=lambda s: s.set_rate_limit(0)),
        "server_error_then_success.yaml": Case(arrange=lambda s: s.fail(503, 2)),
        "processed_then_5xx.yaml": Case(arrange=lambda s: s.process_then_fail(503, 1)),
        "server_error_forever.yaml": Case(arrange=lambda s: s.fail(500, None)),
        "check.yaml": Case(),
    },
)

GIFTBIT = Vendor(
    name="giftbit",
    make_app=lambda st: giftbit_standin.create_app(st, api_key=KEY),
    new_state=giftbit_standin.GiftbitState,
    auth=_bearer,
    fields=(
        Field("info.code", same_value=True), Field("campaign.id"), Field("campaign.uuid"),
        Field("campaign.status", same_value=True), Field("campaign.contacts.*.email"),
        Field("error.code", same_value=True), Field("error.message"),
        Field("gifts"), Field("gifts.*.campaign_id"),
        Field("gifts.*.delivery_status", same_value=True),
        Field("gifts.*.status", same_value=True),
        Field("fundsbycurrency.USD.available_in_cents"),
        Field("brand.brand_code"), Field("brand.fund_currencyisocode"),
        Field("brand.variable_price"), Field("brand.allowed_prices_in_cents"),
        Field("brand.min_price_in_cents"), Field("brand.max_price_in_cents"),
        Field("brands.*.brand_code"),
    ),
    payload=None,
    key_of=_giftbit_key,
    cases={
        "create_and_lookup.yaml": Case(),
        "undeliverable.yaml": Case(),
        "awaiting_funds_then_sent.yaml": Case(
            arrange=lambda s: s.set_funds("USD", 0),
            between={1: lambda s, key: s.set_funds("USD", 100_000)}),
        "auth_401.yaml": Case(wrong_key=True),
        "invalid_brand_422.yaml": Case(),
        "brand_unavailable_422.yaml": Case(),
        "rate_limit_429.yaml": Case(arrange=lambda s: s.set_rate_limit(0)),
        "server_error_forever.yaml": Case(arrange=lambda s: s.fail(500, None),
                                          status_only=frozenset({0, 1, 2})),
        "check.yaml": Case(),
    },
)

VENDORS = (TREMENDOUS, TANGO, GIFTBIT)


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, tuple[str, Any]]]:
    out: dict[str, tuple[str, Any]] = {}
    servers = []
    for vendor in VENDORS:
        state = vendor.new_state()
        server = ServerThread(vendor.make_app(state))
        out[vendor.name] = (server.start(), state)
        servers.append(server)
    yield out
    for server in servers:
        server.stop()


def _cases() -> Iterator[Any]:
    for vendor in VENDORS:
        for name in sorted(vendor.cases):
            yield pytest.param(vendor, name, id=f"{vendor.name}-{name}")


def test_every_cassette_has_a_case() -> None:
    for vendor in VENDORS:
        files = {p.name for p in (CASSETTES / vendor.name).glob("*.yaml")}
        assert files == set(vendor.cases), vendor.name


@pytest.mark.parametrize(("vendor", "name"), list(_cases()))
def test_the_standin_answers_like_the_cassette(
    served: dict[str, tuple[str, Any]], vendor: Vendor, name: str,
) -> None:
    url, state = served[vendor.name]
    state.reset()
    case = vendor.cases[name]
    case.arrange(state)
    recorded = interactions(CASSETTES / vendor.name / name)
    key = next((vendor.key_of(body) for body in map(request_json, recorded)
                if isinstance(body, dict) and vendor.key_of(body)), "")
    with httpx.Client(timeout=5.0) as client:
        for index, interaction in enumerate(recorded):
            if index in case.between:
                case.between[index](state, key)
            request = interaction["request"]
            parts = urlsplit(request["uri"])
            target = url + parts.path + (f"?{parts.query}" if parts.query else "")
            headers = {"Content-Type": "application/json", "Accept": "application/json",
                       **vendor.auth(WRONG if case.wrong_key else KEY)}
            answer = client.request(request["method"], target, headers=headers,
                                    content=(request.get("body") or "").encode())
            expected = interaction["response"]
            where = f"{name} #{index}: {request['method']} {parts.path}"
            assert answer.status_code == expected["status"]["code"], where
            wants_retry_after = any(k.lower() == "retry-after" for k in expected["headers"])
            assert ("retry-after" in answer.headers) == wants_retry_after, where
            if index in case.status_only:
                continue
            mine = answer.json() if answer.content else None
            assert shape(mine, vendor) == shape(response_json(interaction), vendor), where


def test_shape_tells_a_different_status_value_apart() -> None:
    a = {"order": {"id": "A", "status": "EXECUTED"}}
    b = {"order": {"id": "B", "status": "PENDING APPROVAL"}}
    c = {"order": {"id": 7, "status": "EXECUTED"}}
    assert shape(a, TREMENDOUS) != shape(b, TREMENDOUS)
    assert shape(a, TREMENDOUS) != shape(c, TREMENDOUS)
    assert shape(a, TREMENDOUS) == shape({"order": {"id": "Z", "status": "EXECUTED"}},
                                         TREMENDOUS)
