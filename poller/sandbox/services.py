"""``reward-poller sandbox``: the stand-ins of Influitive and every vendor, on loopback, with a
few redemptions seeded, for rehearsing a configuration without live credentials.

The configuration that points at them is the example configuration of ``reward-poller init``
with the stand-ins' addresses and credentials filled in, and the vendors and rewards of the
seeded redemptions added, so ``init`` then ``sandbox --write-config`` gives a file that
``check``, ``run``, the daemon and every ``ledger`` command work with. ``reward-poller demo``
runs the worker against the same stand-ins, seeds and configuration.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from poller.release import files
from poller.sandbox import giftbit as giftbit_standin
from poller.sandbox import http_receiver as http_standin
from poller.sandbox import influitive as influitive_standin
from poller.sandbox import tango as tango_standin
from poller.sandbox import tremendous as tremendous_standin
from poller.sandbox.server import ServerThread

SERVICES = ("influitive", "tremendous", "tango", "giftbit", "http")
"""The stand-ins, in port order (``--port-base`` + index). The manual vendor needs none."""
DEFAULT_PORT_BASE = 7470
HOST = "127.0.0.1"

# Credentials of the stand-ins: not secrets, only ever sent to loopback.
INFLUITIVE_TOKEN = "sandbox-influitive-token"
INFLUITIVE_ORG = "00000000-0000-4000-8000-000000005a4d"
TREMENDOUS_KEY = "sandbox-tremendous-key"
TANGO_KEY = "sandbox-tango-platform-key"
GIFTBIT_KEY = "sandbox-giftbit-key"
HTTP_SECRET = "sandbox-http-vendor-secret"

REWARD_37_PRODUCT = "AMZN-US"
"""A product of the Tremendous stand-in's catalog."""

MARKER = "# reward-poller sandbox: this configuration points at the local stand-ins."

CONTACTS: list[dict[str, Any]] = [
    {"id": 1021, "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
    {"id": 1022, "email": "grace@example.com", "name": "Grace Hopper"},
    {"id": 1023, "email": "alan@example.com", "name": "Alan Turing"},
    {"id": 1024, "email": "edsger@invalid.example", "name": "Edsger Dijkstra"},
    {"id": 1025, "name": "Barbara Liskov"},
]

REDEMPTIONS: list[dict[str, Any]] = [
    # Mapped by a [[rewards]] rule (reward_id 37, the example config's own rule).
    {"id": 4812, "reward_id": 37, "reward_name": "$25 Amazon gift card", "contact_id": 1021,
     "points": 2500, "quantity": 1, "stage": "requested"},
    # Mapped by reward name.
    {"id": 4813, "reward_id": 12, "reward_name": "Coffee on us", "contact_id": 1022,
     "points": 500, "quantity": 1, "stage": "requested"},
    # Mapped by the reward's metadata, no rule needed.
    {"id": 4814, "reward_id": 77, "reward_name": "$50 Visa card", "contact_id": 1023,
     "points": 5000, "quantity": 1, "stage": "requested",
     "reward_metadata": {"vendor": "tremendous", "product": "VISA-US", "amount": "50.00",
                         "currency": "USD"}},
    # No rule maps it: held for a person.
    {"id": 4815, "reward_id": 90, "reward_name": "Conference ticket", "contact_id": 1021,
     "points": 20000, "quantity": 1, "stage": "requested"},
    # A product the vendor does not have.
    {"id": 4816, "reward_id": 41, "reward_name": "$100 gift card", "contact_id": 1022,
     "points": 10000, "quantity": 1, "stage": "requested",
     "reward_metadata": {"vendor": "tremendous",
                         "product": tremendous_standin.UNAVAILABLE_PRODUCT,
                         "amount": "100.00", "currency": "USD"}},
    # An address the vendor refuses.
    {"id": 4817, "reward_id": 37, "reward_name": "$25 Amazon gift card", "contact_id": 1024,
     "points": 2500, "quantity": 1, "stage": "requested"},
    # No email at all: held.
    {"id": 4818, "reward_id": 37, "reward_name": "$25 Amazon gift card", "contact_id": 1025,
     "points": 2500, "quantity": 1, "stage": "requested"},
    {"id": 4819, "reward_id": 51, "reward_name": "Starbucks card", "contact_id": 1022,
     "points": 1000, "quantity": 1, "stage": "requested"},
    {"id": 4820, "reward_id": 52, "reward_name": "$20 Amazon card (Tango)", "contact_id": 1023,
     "points": 2000, "quantity": 1, "stage": "requested"},
    {"id": 4821, "reward_id": 53, "reward_name": "Team lunch voucher", "contact_id": 1021,
     "points": 1500, "quantity": 1, "stage": "requested"},
    # Manual: waits until a person sends it (`ledger fulfill`).
    {"id": 4822, "reward_id": 54, "reward_name": "Advocate hoodie", "contact_id": 1023,
     "points": 4000, "quantity": 1, "stage": "requested",
     "shipping": {"address": "1 Analytical Way", "city": "London", "zip": "N1 9GU",
                  "country": "GB"}},
]

EXTRA = """
# --- Added by `reward-poller sandbox`: the other vendors, at their stand-ins, and the rewards
# --- of the seeded redemptions. ([[rewards]] reward_id = "37" above is the example's own.)

[vendors.tango]
base_url = {tango}
platform_name = {tango_platform}
platform_key = {tango_key}
customer_identifier = {tango_customer}
account_identifier = {tango_account}

[vendors.giftbit]
base_url = {giftbit}
api_key = {giftbit_key}

[vendors.http]
url = {http}
secret = {http_secret}
orders_url = {http_orders}

[vendors.manual]

[[rewards]]
reward_name = "Coffee on us"
vendor = "tremendous"
product = "VISA-US"
amount = "5.00"
currency = "USD"

[[rewards]]
reward_id = "51"
vendor = "giftbit"
product = "starbucksus"
amount = "10.00"
currency = "USD"

[[rewards]]
reward_id = "52"
vendor = "tango"
product = "U561593"
amount = "20.00"
currency = "USD"

[[rewards]]
reward_id = "53"
vendor = "http"
product = "LUNCH"
amount = "15.00"
currency = "USD"

[[rewards]]
reward_id = "54"
vendor = "manual"
amount = "40.00"
currency = "USD"
"""


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(value, ensure_ascii=False)


_HEADER = re.compile(r"^\s*\[{1,2}\s*([^\[\]#]+?)\s*\]{1,2}\s*(#.*)?$")


def set_keys(text: str, section: str, values: Mapping[str, str]) -> str:
    """``text`` with ``key = value`` set in the (uncommented) table ``[section]``, or the
    first ``[[section]]`` of an array of tables; ``values`` are TOML literals. A key the
    table has is replaced in place (its comment kept); one it lacks is added under the
    header. ValueError if there is no such table."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines)
                  if (m := _HEADER.match(line)) and m.group(1) == section), None)
    if start is None:
        raise ValueError(f"no [{section}] table in the example configuration")
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])),
               len(lines))
    missing = dict(values)
    for i in range(start + 1, end):
        m = re.match(r"^(\s*)([A-Za-z0-9_-]+)(\s*=\s*)(\"[^\"]*\"|[^#\s]+)(\s*#.*)?(\n?)$",
                     lines[i])
        if m and m.group(2) in missing:
            indent, key, eq, _old, comment, newline = m.groups()
            lines[i] = f"{indent}{key}{eq}{missing.pop(key)}{comment or ''}{newline}"
    added = [f"{key} = {value}\n" for key, value in missing.items()]
    return "".join(lines[: start + 1] + added + lines[start + 1:])


@dataclass(frozen=True)
class Ports:
    influitive: int
    tremendous: int
    tango: int
    giftbit: int
    http: int

    @classmethod
    def from_base(cls, base: int, **chosen: int | None) -> Ports:
        ports = {name: base + i for i, name in enumerate(SERVICES)}
        ports.update({name: port for name, port in chosen.items() if port})
        return cls(**ports)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SERVICES}


INJECT_VENDORS = ("tremendous", "tango", "giftbit", "http")
"""The stand-ins whose order list ``inject`` can add to (the books audit reads them)."""


def parse_injection(text: str) -> tuple[str, str, str | None]:
    """``VENDOR:KIND[:KEY]`` (``tremendous:duplicate:rp3f...``) as (vendor, kind, key);
    ValueError naming what is wrong."""
    from poller.sandbox.faults import INJECT_KINDS

    vendor, _, rest = text.partition(":")
    kind, _, key = rest.partition(":")
    if vendor not in INJECT_VENDORS:
        raise ValueError(f"{text!r}: the vendor is one of {', '.join(INJECT_VENDORS)}")
    if kind not in INJECT_KINDS:
        raise ValueError(f"{text!r}: the kind is one of {', '.join(INJECT_KINDS)}")
    return vendor, kind, key or None


def inject(url: str, kind: str, key: str | None = None, *,
           timeout: float = 10.0) -> list[dict[str, Any]]:
    """``POST {url}/_standin/inject``: add an orphan, a duplicate or a mismatch to a running
    stand-in's order list (for rehearsing ``reward-poller audit``). Returns what was added;
    RuntimeError with the stand-in's reason when it refuses, OSError when it is not there."""
    import httpx

    body: dict[str, Any] = {"kind": kind}
    if key is not None:
        body["external_id"] = key
    try:
        answer = httpx.post(url + "/_standin/inject", json=body, timeout=timeout)
    except httpx.TransportError as exc:
        raise OSError(f"no stand-in answered at {url} ({type(exc).__name__}): is "
                      "`reward-poller sandbox` running on these ports?") from None
    data = answer.json() if answer.headers.get("content-type", "").startswith(
        "application/json") else {}
    if answer.status_code != 200:
        raise RuntimeError(str(data.get("error") or f"HTTP {answer.status_code}"))
    injected = data.get("injected")
    return injected if isinstance(injected, list) else []


def urls_for(host: str, ports: Mapping[str, int]) -> dict[str, str]:
    return {name: f"http://{host}:{port}" for name, port in ports.items()}


def _keys(urls: Mapping[str, str], interval_seconds: int) -> dict[str, dict[str, str]]:
    """The keys of the example's own tables that point it at the stand-ins (TOML literals)."""
    return {
        "influitive": {
            "base_url": toml_string(urls["influitive"]),
            "api_token": toml_string(INFLUITIVE_TOKEN),
            "org_id": toml_string(INFLUITIVE_ORG),
        },
        "vendors.tremendous": {
            "base_url": toml_string(urls["tremendous"] + tremendous_standin.API_PREFIX),
            "api_key": toml_string(TREMENDOUS_KEY),
        },
        "schedule": {"interval_seconds": str(interval_seconds)},
        # The example's rule (reward_id "37") names a product of a real Tremendous catalog;
        # the stand-in's catalog has its own ids.
        "rewards": {"product": toml_string(REWARD_37_PRODUCT)},
    }


def _extra(urls: Mapping[str, str]) -> str:
    return EXTRA.format(
        tango=toml_string(urls["tango"] + tango_standin.API_PREFIX),
        tango_platform=toml_string(tango_standin.PLATFORM_NAME),
        tango_key=toml_string(TANGO_KEY),
        tango_customer=toml_string(tango_standin.CUSTOMER),
        tango_account=toml_string(tango_standin.ACCOUNT),
        giftbit=toml_string(urls["giftbit"] + giftbit_standin.API_PREFIX),
        giftbit_key=toml_string(GIFTBIT_KEY),
        http=toml_string(urls["http"] + http_standin.HOOK_PATH),
        http_secret=toml_string(HTTP_SECRET),
        http_orders=toml_string(urls["http"] + http_standin.ORDERS_PATH),
    )


def config_text(urls: Mapping[str, str], *, ledger_url: str | None = None,
                interval_seconds: int = 10,
                extra_keys: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The example configuration pointing at the stand-ins at ``urls`` (service -> base URL).
    ``ledger_url`` None keeps the example's ledger; ``extra_keys`` sets more keys per table
    (TOML literals)."""
    text = files.example_config()
    sections = _keys(urls, interval_seconds)
    if ledger_url is not None:
        sections["ledger"] = {"url": toml_string(ledger_url)}
    for section, values in (extra_keys or {}).items():
        sections[section] = {**sections.get(section, {}), **values}
    for section, values in sections.items():
        text = set_keys(text, section, values)
    return f"{MARKER}\n{text.rstrip()}\n{_extra(urls)}"


def snippet(urls: Mapping[str, str]) -> str:
    """What to change by hand in a configuration from ``reward-poller init``: set these keys
    in the tables it has, and add the rest."""
    parts = []
    for section, values in _keys(urls, 10).items():
        header = (f"[[{section}]]   # the example's rule for reward_id \"37\""
                  if section == "rewards" else f"[{section}]")
        parts.append(f"{header}\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return "\n".join(parts) + _extra(urls)


def replaceable(existing: str) -> bool:
    """Whether ``--write-config`` may replace a file with this text: the unchanged example of
    ``init``, or an earlier sandbox configuration. Anything else may hold real settings."""
    return existing == files.example_config() or existing.startswith(MARKER)


class PortInUse(Exception):
    pass


def check_free(host: str, ports: Mapping[str, int]) -> None:
    """PortInUse naming the first service whose port cannot be bound."""
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise PortInUse(f"{name}: cannot listen on {host}:{port} "
                                f"({exc.strerror or exc})") from None


class Sandbox:
    """``with Sandbox(ports) as urls: ...`` serves every stand-in until the block ends.
    ``ports`` None picks free ports (the demo). The states stay readable afterwards."""

    def __init__(self, ports: Mapping[str, int] | None = None, *, seed: bool = True,
                 host: str = HOST, page_size: int = 25) -> None:
        self.host = host
        self.ports = dict(ports) if ports is not None else {name: 0 for name in SERVICES}
        self.influitive = influitive_standin.InfluitiveState(page_size=page_size)
        self.tremendous = tremendous_standin.TremendousState()
        self.tango = tango_standin.TangoState()
        self.giftbit = giftbit_standin.GiftbitState()
        self.http = http_standin.ReceiverState(secret=HTTP_SECRET)
        if seed:
            self.influitive.seed(REDEMPTIONS, CONTACTS)
        self.apps = {
            "influitive": influitive_standin.create_app(
                self.influitive, api_token=INFLUITIVE_TOKEN, org_id=INFLUITIVE_ORG),
            "tremendous": tremendous_standin.create_app(self.tremendous,
                                                        api_key=TREMENDOUS_KEY),
            "tango": tango_standin.create_app(self.tango, platform_key=TANGO_KEY),
            "giftbit": giftbit_standin.create_app(self.giftbit, api_key=GIFTBIT_KEY),
            "http": http_standin.create_app(self.http),
        }
        self._stack = ExitStack()
        self.urls: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        if any(self.ports.values()):
            check_free(self.host, {n: p for n, p in self.ports.items() if p})
        try:
            for name in SERVICES:
                self.urls[name] = self._stack.enter_context(
                    ServerThread(self.apps[name], host=self.host, port=self.ports[name]))
        except BaseException:
            self._stack.close()
            raise
        return dict(self.urls)

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> dict[str, str]:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
