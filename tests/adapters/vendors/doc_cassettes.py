"""Replaying cassettes composed from the vendors' own documentation (vcrpy, offline).

The cassettes of the Tremendous, Tango Card, Giftbit and Influitive tests are not
recordings: each was composed by hand from the request/response examples in that API's
public documentation and official SDKs, and its YAML header names the source and what was
adapted (values the docs leave out, secrets replaced by REDACTED values). The URIs use the
vendor's documented sandbox host; the record mode is "none", so nothing reaches a network
and a request the cassette does not hold fails the test.

A request matches only when its method, URL and JSON body equal the cassette's: the body
in a cassette is exactly what the adapter sends, and ``test_requests_carry_the_documented
_keys`` in each vendor's cassette module checks that body against the keys the vendor's
documentation requires. To change a cassette, edit it by hand (keep the header honest).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import vcr
import yaml

CASSETTES = Path(__file__).parent / "cassettes"
MATCH_ON = ("method", "scheme", "host", "port", "path", "query", "json_body")


def _json_or_text(body: Any) -> Any:
    if body is None:
        return None
    text = body.decode() if isinstance(body, bytes) else str(body)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: both bodies parse to the same JSON (or are the same text)."""
    mine, theirs = _json_or_text(r1.body), _json_or_text(r2.body)
    if mine != theirs:
        raise AssertionError(f"request body {mine!r} is not the cassette's {theirs!r}")


def replayer(library: Path) -> vcr.VCR:
    recorder = vcr.VCR(
        cassette_library_dir=str(library),
        record_mode="none",
        match_on=MATCH_ON,
        decode_compressed_response=True,
    )
    recorder.register_matcher("json_body", json_body)
    return recorder


def header(path: Path) -> str:
    """The comment lines at the top of a cassette, without the ``#``."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def interactions(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    found = data["interactions"]
    assert isinstance(found, list)
    return found


def request_json(interaction: Mapping[str, Any]) -> Any:
    return _json_or_text(interaction["request"].get("body"))


def response_json(interaction: Mapping[str, Any]) -> Any:
    return _json_or_text(interaction["response"]["body"]["string"])


def key_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key path in a JSON value (list items as ``*``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from key_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            yield from key_paths(item, f"{prefix}.*" if prefix else "*")


def missing_keys(body: Any, required: frozenset[str]) -> set[str]:
    return set(required) - set(key_paths(body))


def cassette_files(library: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(library.glob("*.yaml"))}


def data_text(path: Path) -> str:
    """The cassette without its header: what a replay could hand to the code."""
    return "\n".join(line for line in path.read_text().splitlines()
                     if not line.startswith("#"))


def assert_sources_named(library: Path, expected: set[str]) -> None:
    """The library holds exactly ``expected``, and each cassette's header names its source."""
    files = cassette_files(library)
    assert set(files) == expected
    for name, path in files.items():
        assert "Source:" in header(path), name


def documented_creates(library: Path, origin: str, required: frozenset[str]) -> int:
    """Assert every request goes to the documented ``origin`` and every POST body carries the
    ``required`` keys; returns how many POSTs there were."""
    creates = 0
    for name, path in cassette_files(library).items():
        for interaction in interactions(path):
            request = interaction["request"]
            assert request["uri"].startswith(origin + "/"), name
            if request["method"] == "POST":
                creates += 1
                assert missing_keys(request_json(interaction), required) == set(), name
    return creates
