"""The Influitive stand-in answers like the cassettes (composed from public sources) say.

Every request of every cassette in ``cassettes/`` goes to the stand-in, set up for that
case; the answer must have the cassette's status, the headers the client reads
(``WWW-Authenticate``, ``x-amzn-waf-action``, an HTML or a JSON body) and the same shape in
the fields the client reads. Where the stand-in differs from the public sources, the
stand-in is changed, never the cassette.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from poller.sandbox.influitive import Fault, InfluitiveState

from ..vendors.doc_cassettes import interactions, response_json
from ..vendors.test_standins_match_cassettes import Field, Vendor, shape
from .conftest import ORG, TOKEN, Standin, item

CASSETTES = Path(__file__).parent / "cassettes"

FIELDS = (
    Field("reward_redemptions"), Field("reward_redemptions.*.id"),
    Field("reward_redemptions.*.reward_name"), Field("reward_redemptions.*.reward.name"),
    Field("reward_redemptions.*.contact_id"), Field("reward_redemptions.*.contact.email"),
    Field("contacts"), Field("contacts.*.id"), Field("contacts.*.email"),
    Field("links.next"),
)
SHAPE = Vendor(name="influitive", make_app=lambda st: None, new_state=InfluitiveState,
               auth=lambda key: {}, fields=FIELDS, payload=None, key_of=lambda body: "",
               cases={})


def _paging(state: InfluitiveState) -> None:
    state.seed([item(1), item(2, reward_name=None, reward={"id": 9, "name": "Hoodie"}),
                item(3), item(1, reward_name="shifted copy"), item(4)])
    state.configure(page_size=2)


ARRANGE: dict[str, Callable[[InfluitiveState], object]] = {
    "unauthorized.yaml": lambda state: None,
    "paging.yaml": _paging,
    "waf_blocked.yaml": lambda state: (state.seed([item(1)]),
                                       state.add_faults(Fault(waf="block"))),
    "waf_challenge.yaml": lambda state: (state.seed([item(1)]),
                                         state.add_faults(Fault(waf="challenge"),
                                                          Fault(waf="captcha"))),
    "decisions.yaml": lambda state: state.seed([item(1), item(2)]),
}
WRONG_TOKEN = {"unauthorized.yaml"}


def _body_kind(response_headers: dict[str, Any], body: bytes | str) -> str:
    kind = " ".join(str(v) for k, v in response_headers.items()
                    if k.lower() == "content-type").lower()
    text = body.decode() if isinstance(body, bytes) else body
    if "html" in kind or text.lstrip().lower().startswith(("<!doctype", "<html")):
        return "html"
    return "json" if text.strip() else "empty"


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers).items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None


def test_every_cassette_has_a_case() -> None:
    assert {p.name for p in CASSETTES.glob("*.yaml")} == set(ARRANGE)


@pytest.mark.parametrize("name", sorted(ARRANGE))
def test_the_standin_answers_like_the_cassette(standin: Standin, name: str) -> None:
    ARRANGE[name](standin.state)
    token = "tok-wrong" if name in WRONG_TOKEN else TOKEN
    headers = {"Authorization": f"Token {token}", "X_ORG_ID": ORG,
               "Accept": "application/json", "Content-Type": "application/json"}
    with httpx.Client(timeout=5.0) as client:
        for index, interaction in enumerate(interactions(CASSETTES / name)):
            request = interaction["request"]
            parts = urlsplit(request["uri"])
            target = standin.url + parts.path + (f"?{parts.query}" if parts.query else "")
            answer = client.request(request["method"], target, headers=headers,
                                    content=(request.get("body") or "").encode())
            expected = interaction["response"]
            where = f"{name} #{index}: {request['method']} {parts.path}"
            assert answer.status_code == expected["status"]["code"], where
            for header in ("www-authenticate", "x-amzn-waf-action"):
                assert _header(answer.headers, header) == _header(expected["headers"],
                                                                   header), where
            kind = _body_kind(expected["headers"], expected["body"]["string"])
            assert _body_kind(dict(answer.headers), answer.content) == kind, where
            if kind == "json":
                mine = answer.json()
                theirs = response_json(interaction)
                assert isinstance(mine, dict) == isinstance(theirs, dict), where
                assert shape(mine, SHAPE) == shape(theirs, SHAPE), where
