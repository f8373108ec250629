"""FakeInfluitive behaves like the client where the worker can tell."""

from __future__ import annotations

import pytest

from poller.domain.errors import AlreadyDecided, SourceAuthError, SourceUnavailable
from poller.domain.model import Redemption
from poller.ports import RedemptionSource
from poller.sources.influitive.fake import FakeInfluitive

from .conftest import item


def test_is_a_redemption_source() -> None:
    source: RedemptionSource = FakeInfluitive()
    assert source.poll().complete is True


def test_seeded_raw_and_parsed_items_are_polled() -> None:
    fake = FakeInfluitive([item(1), Redemption(id="2"), {"reward_name": "no id"}])
    fake.seed(item(1, reward_name="duplicate"))

    result = fake.poll()

    assert [r.id for r in result.redemptions] == ["1", "2"]
    assert result.redemptions[0].reward_name == "$25 gift card"
    assert result.redemptions[0].contact.email == "advocate1@example.com"
    assert result.rejected == ("seeded item 2: redemption has no id",)
    assert fake.polls == 1


def test_decisions_are_recorded_and_a_second_one_is_already_decided() -> None:
    fake = FakeInfluitive([item(1), item(2)])

    fake.fulfill("1", "sent")
    with pytest.raises(AlreadyDecided):
        fake.refuse("1", "no")
    with pytest.raises(AlreadyDecided):
        fake.fulfill("unknown", "x")

    assert [r.id for r in fake.poll().redemptions] == ["2"]
    assert fake.decided("1") == "fulfill"
    assert [(d.redemption_id, d.verb, d.accepted) for d in fake.decisions] == [
        ("1", "fulfill", True), ("1", "refuse", False), ("unknown", "fulfill", False)]
    assert [d.message for d in fake.accepted_decisions()] == ["sent"]


def test_decided_in_the_ui() -> None:
    fake = FakeInfluitive([item(1)])
    fake.decide_in_ui("1", "refuse", "by hand")

    assert fake.outstanding == []
    with pytest.raises(AlreadyDecided, match="refuse"):
        fake.fulfill("1", "sent")
    fake.seed(item(1))  # a decided redemption does not come back
    assert fake.outstanding == []


def test_scripted_errors_are_raised_once_each_in_order() -> None:
    fake = FakeInfluitive([item(1)])
    fake.fail_next("poll", SourceUnavailable("down", 5.0), SourceAuthError("bad token"))
    fake.fail_next("fulfill", SourceUnavailable("busy"))

    with pytest.raises(SourceUnavailable):
        fake.poll()
    with pytest.raises(SourceAuthError):
        fake.poll()
    assert [r.id for r in fake.poll().redemptions] == ["1"]
    with pytest.raises(SourceUnavailable):
        fake.fulfill("1", "x")
    fake.fulfill("1", "x")
    assert fake.decided("1") == "fulfill"


def test_incomplete_polls_and_close() -> None:
    fake = FakeInfluitive()
    fake.complete = False
    assert fake.poll().complete is False
    fake.close()
    assert fake.closed
