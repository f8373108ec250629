"""The redemption is stored beside its raw payload when it is recorded, and migration 0006
fills it in for the rows that were there before, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from poller.domain.model import Contact, Redemption, Shipping, UnreadablePayload
from poller.ledger import migrate, open_ledger
from poller.ledger.memory import MemoryLedger
from poller.ledger.sql import SqlLedger, make_engine
from poller.ledger.stored_redemption import decode_redemption, encode_redemption
from poller.sources.influenceio.wire import parse_redeemed
from poller.sources.influitive.wire import parse_redemption

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# Payloads as the version before 0006 stored them (an Influitive item with its contact
# folded in; an Influence.io body), and what each says about the parse.
OLD_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("influitive", "1", {
        "id": 1, "reward_id": 37, "reward_name": " $25 Amazon ", "points": "2500",
        "created_at": "2024-05-01T10:00:00Z",
        "reward_metadata": {"vendor": "tremendous", "currency": " usd", "amount": "25"},
        "contact": {"id": 7, "email": "ada@example.com", "first_name": "Ada",
                    "last_name": "Lovelace"},
        "shipping": {"address": "1 Main St", "city": "Springfield", "zip": 12345},
    }),
    ("influitive", "2", {
        "id": "2", "reward": {"id": "9", "name": "Mug"}, "quantity": 3,
        "reward_metadata": {"currency": "US$"},
        "contact": {"email": "bob@example.com\r\nBcc: eve@example.com", "name": "Bob"},
    }),
    ("influitive", "3", {"id": 3, "contact_id": 55, "reward_metadata": ["not", "an object"],
                         "quantity": "0"}),
    ("influitive", "4", {"reward_name": "no id at all"}),
    ("influenceio", "ev-1", {
        "id": "ev-1", "customer": {"externalId": "x-9", "email": "cy@example.com",
                                   "name": "Cy \u00e9"},
        "points": 500.0, "rewardType": "giftcard", "ruleId": 12,
    }),
    ("influenceio", "ev-2", {
        "id": "ev-2", "customer": {"id": "c-1", "email": " dee@example.com\u2028"},
        "ruleId": "r-1",
    }),
    ("influenceio", "ev-3", {"id": "ev-3", "customer": {"email": "e@example.com"}}),
]


def _live(source: str, payload: dict[str, Any]) -> Redemption:
    return parse_redeemed(payload) if source == "influenceio" else parse_redemption(payload)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    url: str = request.getfixturevalue("empty_pg_url")
    return url


def _run(url: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params or {})
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def test_0006_stores_the_redemption_of_every_row_already_there(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, "0005")
    at = "2024-05-01 12:00:00.000000"
    for source, rid, payload in OLD_ROWS:
        _run(fresh_url,
             "INSERT INTO redemptions (source, redemption_id, state, payload, attempts, "
             "created_at, updated_at) VALUES (:s, :r, 'new', :p, 0, :at, :at)",
             {"s": source, "r": rid, "p": json.dumps(payload), "at": at})
    before = _run(fresh_url, "SELECT pk, payload FROM redemptions ORDER BY pk")

    migrate.upgrade(fresh_url, "0006")

    # The raw payloads are untouched, and no event was written by the backfill.
    assert _run(fresh_url, "SELECT pk, payload FROM redemptions ORDER BY pk") == before
    assert _run(fresh_url, "SELECT count(*) FROM events") == [(0,)]
    stored = dict(_run(fresh_url, "SELECT redemption_id, redemption FROM redemptions"))
    migrate.upgrade(fresh_url)  # the later revisions leave these rows alone
    assert dict(_run(fresh_url, "SELECT redemption_id, redemption FROM redemptions")) == stored
    ledger = open_ledger(fresh_url, migrate=False)
    try:
        for source, rid, payload in OLD_ROWS:
            entry = ledger.get(source, rid)
            assert entry is not None
            try:
                expected = _live(source, payload)
            except ValueError as exc:  # Unkeyable, BadEvent: kept, with the reason
                assert entry.redemption is None
                assert entry.unreadable == str(exc)
                with pytest.raises(UnreadablePayload, match=str(exc)):
                    entry.parsed()
                continue
            # What the adapter would have handed the ledger, and in the very text the
            # ledger itself writes for a new row.
            assert entry.redemption == expected
            assert stored[rid] == encode_redemption(expected)
    finally:
        ledger.close()
    by_id = {rid: json.loads(stored[rid]) for _, rid, _ in OLD_ROWS}
    assert by_id["1"]["metadata"]["currency"] == "USD"
    assert by_id["2"]["problems"] == [
        "advocate email address contains control characters (CR/LF or similar)",
        "reward_metadata currency 'US$' is not an ISO 4217 currency code",
        "quantity 3 is more than one; order it by hand",
    ]
    assert by_id["4"] == {"format": 1, "unreadable": "redemption has no id"}
    assert by_id["ev-3"]["unreadable"].startswith("neither 'rewardType' nor 'ruleId'")

    migrate.downgrade(fresh_url, "0005")
    assert _run(fresh_url, "SELECT pk, payload FROM redemptions ORDER BY pk") == before


FULL = Redemption(
    source="influitive", id="42", reward_id="37", reward_name="Gift \x00 card",
    contact=Contact(id="7", email="ada@example.com", first_name="Ada", name="A \ud800"),
    shipping=Shipping(address="1 Main St", country="US"), points=2500, quantity=1,
    created_at="2024-05-01T10:00:00Z",
    metadata={"vendor": "tremendous", "amount": "25", "nested": {"list": [1, 2.5, None]}},
    raw={"id": 42, "anything": ["the", "source", "sent"]},
    problems=("advocate email address is malformed",),
)


def test_record_stores_the_redemption_the_adapter_read(
    ledger: MemoryLedger | SqlLedger,
) -> None:
    poll = ledger.start_poll(T0)
    ledger.record(poll, [FULL], T0)
    entry = ledger.get("influitive", "42")
    assert entry is not None
    assert entry.redemption == FULL
    assert entry.parsed() is entry.redemption
    assert entry.unreadable is None
    assert entry.payload == FULL.raw


def test_a_row_without_a_stored_redemption_says_so() -> None:
    assert decode_redemption(None, {}) == (None, "no redemption is stored with the payload")
    found, why = decode_redemption('{"format": 99}', {})
    assert found is None and why is not None and "format" in why
    assert decode_redemption('{"format": 1, "unreadable": "redemption has no id"}', {}) == (
        None, "redemption has no id")
