"""The Platform API points client against the stand-in: what an award did (applied, not
applied, unknown), and the look-up of a refund in the points history."""

from __future__ import annotations

import httpx
import pytest

from poller.domain.errors import ConfigError
from poller.sandbox.server import free_port
from poller.sources.influenceio.points import Outcome, PointsClient

from .conftest import API_KEY, FAST, MakePoints, Platform


def test_an_award_is_applied_with_the_documented_header_and_fields(
    platform: Platform, make_points: MakePoints
) -> None:
    answer = make_points().award("c-1", 500, "Refund: reward redemption evt-1 was refused")

    assert answer.outcome is Outcome.APPLIED
    [award] = platform.state.awards()
    assert (award.customer_id, award.points) == ("c-1", 500)
    assert award.reason == "Refund: reward redemption evt-1 was refused"
    assert platform.state.balance("c-1") == 600


def test_the_body_field_names_are_settings(platform: Platform, make_points: MakePoints) -> None:
    platform.state.points_field, platform.state.reason_field = "amount", "description"

    wrong = make_points().award("c-1", 500, "r")
    right = make_points(points_field="amount", reason_field="description").award("c-1", 500, "r")

    assert wrong.outcome is Outcome.NOT_APPLIED and wrong.status == 400
    assert "points_field" in wrong.detail and "reason_field" in wrong.detail
    assert right.outcome is Outcome.APPLIED
    assert len(platform.state.awards()) == 1


def test_unknown_customer_and_wrong_key_are_not_applied(
    platform: Platform, make_points: MakePoints
) -> None:
    missing = make_points().award("nobody", 500, "r")
    denied = make_points(api_key="not-the-key").award("c-1", 500, "r")

    assert missing.outcome is Outcome.NOT_APPLIED and "customer_id_field" in missing.detail
    assert denied.outcome is Outcome.NOT_APPLIED and "api_key" in denied.detail
    assert platform.state.awards() == []


def test_5xx_is_unknown_and_is_not_retried(platform: Platform, make_points: MakePoints) -> None:
    platform.state.fail(503)

    answer = make_points().award("c-1", 500, "r")

    assert answer.outcome is Outcome.UNKNOWN
    assert platform.state.requests == 1  # one try: a repeat is the caller's, after a look-up


def test_429_is_not_applied(platform: Platform, make_points: MakePoints) -> None:
    platform.state.fail(429, retry_after=1)
    assert make_points().award("c-1", 500, "r").outcome is Outcome.NOT_APPLIED


def test_a_lost_answer_is_unknown_although_the_award_was_applied(
    platform: Platform, make_points: MakePoints
) -> None:
    platform.state.lose_answers(1, "drop")

    answer = make_points().award("c-1", 500, "Refund: reward redemption evt-1 was refused")

    assert answer.outcome is Outcome.UNKNOWN
    assert len(platform.state.awards()) == 1
    assert make_points().find("c-1", "evt-1") is True


def test_nothing_listening_is_not_applied() -> None:
    client = PointsClient(f"http://127.0.0.1:{free_port('127.0.0.1')}/v1", API_KEY, policy=FAST)
    assert client.award("c-1", 5, "r").outcome is Outcome.NOT_APPLIED


def test_find_reads_the_history(platform: Platform, make_points: MakePoints) -> None:
    client = make_points()
    assert client.find("c-1", "evt-1") is False  # read whole, nothing there
    client.award("c-1", 5, "Refund: reward redemption evt-1 was refused")
    assert client.find("c-1", "evt-1") is True
    assert client.find("c-1", "evt-2") is False
    assert client.find("nobody", "evt-1") is None  # 404: no conclusion
    assert make_points(history_path="").find("c-1", "evt-1") is None


def _history(body: object) -> PointsClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    return PointsClient("https://platform.example.test/v1", API_KEY, policy=FAST,
                        transport=httpx.MockTransport(answer))


def test_find_tolerates_history_shapes_and_refuses_to_conclude_from_part_of_it() -> None:
    assert _history([{"description": "Refund: evt-1"}]).find("c", "evt-1") is True
    assert _history({"items": [{"note": "x"}]}).find("c", "evt-1") is False
    assert _history({"data": [{"reason": "x"}], "cursor": "abc"}).find("c", "evt-1") is None
    assert _history({"unexpected": True}).find("c", "evt-1") is None


def test_the_key_never_appears_in_answers_or_repr(make_points: MakePoints) -> None:
    client = make_points()
    answer = client.award("nobody", 5, "r")
    assert API_KEY not in repr(client) and API_KEY not in answer.detail


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        PointsClient("ftp://x", API_KEY)
    with pytest.raises(ConfigError, match="api_key"):
        PointsClient("https://x.test/v1", " ")
    with pytest.raises(ConfigError, match="history_path"):
        PointsClient("https://x.test/v1", API_KEY, history_path="/points")
