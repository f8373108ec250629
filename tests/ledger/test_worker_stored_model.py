"""A redemption is read from its payload once, by the source's adapter, when it is
recorded: the worker's steps and the dry-run planner read the redemption the ledger stored,
and a row whose payload could not be read is held with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from poller.core.plan import Planner
from poller.domain.model import PollResult
from poller.domain.states import State
from poller.ledger import open_ledger
from poller.ledger.memory import MemoryLedger
from poller.ledger.sql import SqlLedger
from poller.ledger.stored_redemption import encode_unreadable
from poller.ledger.tables import redemptions
from poller.sources.influitive.fake import FakeInfluitive
from poller.vendors.fake import FakeVendor
from tests.unit.test_worker import RULES, Clock, Rig, redemption

PARSERS = [
    "poller.sources.influitive.wire.parse_redemption",
    "poller.sources.influitive.wire.parse_page",
    "poller.sources.influenceio.wire.parse_redeemed",
]


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kw: Any) -> Any:
        raise AssertionError("a payload was parsed after it was recorded")

    for name in PARSERS:
        monkeypatch.setattr(name, refuse)


class SqlRig(Rig):
    """The worker rig on a SQLite ledger: the stored model goes through the real table."""

    def __init__(self, url: str) -> None:
        self.source = FakeInfluitive()
        self.ledger = open_ledger(url)  # type: ignore[assignment]
        self.vendor = FakeVendor("fake")
        self.clock = Clock()
        self.worker = self.make()


@pytest.fixture(params=["memory", "sqlite"])
def any_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    if request.param == "memory":
        yield Rig()
        return
    rig = SqlRig(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield rig
    finally:
        rig.ledger.close()


def test_no_step_parses_a_payload(any_rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = any_rig
    # Parsed once, as the source's adapter reads them (the fake parses when seeded).
    rig.source.seed(
        redemption(1, contact={"id": 1, "email": "ada@example.com", "first_name": "Ada",
                               "last_name": "Lovelace"},
                   shipping={"address": "1 Main St", "city": "Springfield"}),
        redemption(2, contact={"id": 2}),  # no e-mail address: held
    )
    _no_parsing(monkeypatch)

    report = rig.worker.run_cycle()

    assert report.ok and report.new == 2
    assert rig.state(1) is State.FULFILLED
    # The order was made from the stored redemption: its contact and shipping address.
    (request,) = rig.vendor.requests
    assert request.recipient_email == "ada@example.com"
    assert request.recipient_name == "Ada Lovelace"
    assert request.shipping is not None and request.shipping.city == "Springfield"
    assert rig.state(2) is State.HELD
    assert rig.entry(2).hold_reason == "malformed redemption: advocate has no email address"
    # The planner reads the stored redemptions too.
    plan = Planner(rules=RULES, vendors={"fake"}, unmapped="hold",
                   unmapped_reason="x").plan(
        PollResult(redemptions=(rig.entry(2).parsed(),), complete=True, pages=1, requests=1),
        rig.ledger, rig.clock())
    assert [(s.redemption_id, s.action) for s in plan.steps] == [("2", "wait")]


def _unreadable(ledger: MemoryLedger | SqlLedger, pk: int, why: str) -> None:
    """A row as migration 0006 leaves one whose payload it could not read."""
    if isinstance(ledger, MemoryLedger):
        ledger._rows[pk]["redemption"] = encode_unreadable(why)
        return
    with ledger.engine.begin() as conn:
        conn.execute(update(redemptions).where(redemptions.c.pk == pk)
                     .values(redemption=encode_unreadable(why)))


def test_a_row_whose_payload_could_not_be_read_is_held_with_the_reason(
    any_rig: Rig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = any_rig
    rig.source.seed(redemption(1), redemption(2))
    poll = rig.ledger.start_poll(rig.clock())
    rig.ledger.record(poll, rig.source.poll().redemptions, rig.clock())
    _unreadable(rig.ledger, rig.entry(1).pk, "redemption id is empty")
    _no_parsing(monkeypatch)
    # The dry run says what the worker will do.
    plan = Planner(rules=RULES, vendors={"fake"}, unmapped="hold",
                   unmapped_reason="x").plan(rig.source.poll(), rig.ledger, rig.clock())
    first = plan.steps[0]
    assert (first.redemption_id, first.action, first.detail) == (
        "1", "hold", "stored payload unreadable: redemption id is empty")

    rig.worker.run_cycle()

    held = rig.entry(1)
    assert held.state is State.HELD
    assert held.hold_reason == "redemption id is empty"
    assert held.payload == redemption(1)  # nothing lost: the payload is kept as it came
    assert rig.ledger.events(held.pk)[-1].detail == (
        "stored payload unreadable: redemption id is empty")
    assert rig.state(2) is State.FULFILLED
    assert rig.vendor.created and Decimal(25) == rig.vendor.requests[0].amount
