"""InfluitiveClient.poll against the stand-in (and a few shapes only a MockTransport makes)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from poller.domain.errors import SourceAuthError, SourceUnavailable
from poller.sandbox.influitive import Fault
from poller.sources.influitive.client import InfluitiveClient
from poller.transport import RetryPolicy

from .conftest import FAST, ORG, TOKEN, Sleeps, Standin, item

MakeClient = Callable[..., InfluitiveClient]


def ids(client_result: Any) -> list[str]:
    return [r.id for r in client_result.redemptions]


# --- paging -----------------------------------------------------------------------------


@pytest.mark.parametrize("absolute", [False, True], ids=["relative-next", "absolute-next"])
def test_three_pages_are_read_in_order(
    standin: Standin, make_client: MakeClient, absolute: bool
) -> None:
    standin.state.seed([item(i) for i in range(1, 7)])
    standin.state.configure(page_size=2, absolute_links=absolute)

    result = make_client().poll()

    assert ids(result) == ["1", "2", "3", "4", "5", "6"]
    assert result.complete is True
    assert result.pages == 3
    assert result.requests == 3
    assert result.rejected == ()
    assert [r.query for r in standin.state.requests()] == ["", "page=2", "page=3"]


def test_pages_are_handed_over_as_they_are_read_and_not_kept(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(i) for i in range(1, 6)])
    standin.state.configure(page_size=2)
    handed: list[tuple[list[str], int]] = []

    def on_page(page: Any) -> None:
        # Each page arrives before the next one is asked for.
        handed.append(([r.id for r in page], len(standin.state.requests())))

    result = make_client().poll_pages(on_page)

    assert handed == [(["1", "2"], 1), (["3", "4"], 2), (["5"], 3)]
    assert (result.redemptions, result.streamed, result.seen) == ((), 5, 5)
    assert (result.complete, result.pages) == (True, 3)


def test_a_page_cut_short_keeps_what_was_handed_over(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(i) for i in range(1, 7)])
    standin.state.configure(page_size=2)
    handed: list[str] = []

    result = make_client(max_pages=2).poll_pages(lambda page: handed.extend(r.id for r in page))

    assert handed == ["1", "2", "3", "4"] and result.streamed == 4
    assert result.complete is False


def test_an_error_from_the_reader_ends_the_poll(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(i) for i in range(1, 7)])
    standin.state.configure(page_size=2)

    def on_page(page: Any) -> None:
        raise RuntimeError("ledger down")

    with pytest.raises(RuntimeError, match="ledger down"):
        make_client().poll_pages(on_page)
    assert len(standin.state.requests()) == 1


@pytest.mark.parametrize("last_next", ["null", "empty", "absent"])
def test_last_page_may_say_so_in_any_way(
    standin: Standin, make_client: MakeClient, last_next: Any
) -> None:
    standin.state.seed([item(1), item(2), item(3)])
    standin.state.configure(page_size=2, last_next=last_next)

    result = make_client().poll()

    assert (ids(result), result.complete, result.pages) == (["1", "2", "3"], True, 2)


def test_empty_list_is_a_complete_poll(standin: Standin, make_client: MakeClient) -> None:
    result = make_client().poll()
    assert (result.redemptions, result.complete, result.pages, result.requests) == ((), True, 1, 1)


def test_sends_the_documented_headers(standin: Standin) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"reward_redemptions": [], "contacts": []})

    client = InfluitiveClient("https://api.example.test", TOKEN, ORG, policy=FAST,
                              transport=httpx.MockTransport(answer))
    client.poll()
    client.close()

    headers = seen[0].headers
    assert headers["Authorization"] == f"Token {TOKEN}"
    assert headers["X_ORG_ID"] == ORG
    assert b"X_ORG_ID" in [k for k, _ in headers.raw]  # the underscore is kept as is
    assert headers["Accept"] == "application/json"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("reward-poller/")
    assert str(seen[0].url) == "https://api.example.test/reward_redemptions"


# --- payload shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("nest", [False, True], ids=["side-loaded", "nested"])
def test_contact_side_loaded_or_nested(
    standin: Standin, make_client: MakeClient, nest: bool
) -> None:
    standin.state.seed([item(1, email="first@example.com"), item(2, email="second@example.com")])
    standin.state.configure(nest_contacts=nest)

    result = make_client().poll()

    served = standin.state.list_page(1, "")
    assert ("contact" in served["reward_redemptions"][0]) is nest
    assert bool(served["contacts"]) is not nest
    emails = {r.id: r.contact.email for r in result.redemptions}
    assert emails == {"1": "first@example.com", "2": "second@example.com"}
    assert result.redemptions[0].contact.display_name == "Test Advocate 1"
    assert all(r.problems == () for r in result.redemptions)


def test_contact_seeded_separately_is_side_loaded(
    standin: Standin, make_client: MakeClient
) -> None:
    raw = item(1)
    del raw["contact"]
    raw["contact_id"] = 77
    standin.state.seed([raw], contacts=[{"id": 77, "email": "side@example.com", "name": "Side"}])

    (redemption,) = make_client().poll().redemptions

    assert redemption.contact.email == "side@example.com"
    assert redemption.contact.display_name == "Side"


def test_reward_name_flat_or_nested(standin: Standin, make_client: MakeClient) -> None:
    nested = item(2, reward_name=None, reward={"id": 99, "name": "Hoodie"})
    del nested["reward_id"]
    standin.state.seed([item(1, reward_name="$25 gift card"), nested])

    result = make_client().poll()

    got = {r.id: (r.reward_id, r.reward_name) for r in result.redemptions}
    assert got == {"1": ("37", "$25 gift card"), "2": ("99", "Hoodie")}


def test_metadata_and_string_ids_are_kept(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item("abc-1", reward_metadata={"vendor": "tremendous", "product": "P1"})])

    (redemption,) = make_client().poll().redemptions

    assert redemption.id == "abc-1"
    assert redemption.metadata == {"vendor": "tremendous", "product": "P1"}


def test_same_id_on_two_pages_is_kept_once_first_wins(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1, reward_name="first"), item(2), item(3),
                        item(1, reward_name="second copy")])
    standin.state.configure(page_size=2)

    result = make_client().poll()

    assert ids(result) == ["1", "2", "3"]
    assert result.redemptions[0].reward_name == "first"
    assert (result.complete, result.pages) == (True, 2)


def test_bad_items_are_rejected_with_a_reason_and_the_rest_kept(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1), "not an object", {"reward_name": "no id"}, {"id": True},
                        {"id": ""}, item(2, quantity="--5")])

    result = make_client().poll()

    assert ids(result) == ["1", "2"]
    assert result.complete is True
    assert len(result.rejected) == 4
    assert "page 1 item 1: item is a str, not an object" in result.rejected
    assert "page 1 item 2: redemption has no id" in result.rejected
    assert any("is empty" in r for r in result.rejected)
    # quantity "--5" makes core parse_redemption raise ValueError: kept, held with a problem
    assert result.redemptions[1].problems
    assert "not a positive integer" in result.redemptions[1].problems[0]


# --- guards -----------------------------------------------------------------------------


def test_next_link_that_repeats_stops_the_poll(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(i) for i in range(1, 6)])
    standin.state.configure(page_size=2, loop_next=True)

    with capture_logs() as logs:
        result = make_client().poll()

    assert ids(result) == ["1", "2", "3", "4", "5"]
    assert (result.complete, result.pages, result.requests) == (False, 3, 3)
    warnings = [e for e in logs if e["event"] == "influitive.poll.incomplete"]
    assert len(warnings) == 1 and "already read" in warnings[0]["reason"]
    assert warnings[0]["log_level"] == "warning"


def test_next_link_to_itself_stops_at_once(make_client: MakeClient, standin: Standin) -> None:
    standin.state.seed([item(1)])
    standin.state.configure(loop_next=True)

    result = make_client().poll()

    assert (ids(result), result.complete, result.pages, result.requests) == (["1"], False, 1, 1)


def test_page_cap_stops_the_poll(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(i) for i in range(1, 7)])
    standin.state.configure(page_size=2)

    with capture_logs() as logs:
        result = make_client(max_pages=2).poll()

    assert ids(result) == ["1", "2", "3", "4"]
    assert (result.complete, result.pages, result.requests) == (False, 2, 2)
    assert any(e["event"] == "influitive.poll.incomplete" and "page cap" in e["reason"]
               for e in logs)


def test_page_cap_equal_to_the_page_count_is_complete(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(i) for i in range(1, 5)])
    standin.state.configure(page_size=2)

    result = make_client(max_pages=2).poll()

    assert (result.complete, result.pages) == (True, 2)


def _mock_client(pages: dict[str, Any], **kwargs: Any) -> InfluitiveClient:
    def answer(request: httpx.Request) -> httpx.Response:
        key = request.url.path + (f"?{request.url.query.decode()}" if request.url.query else "")
        body = pages.get(key)
        if body is None:
            return httpx.Response(404, json={"error": "Not Found"})
        return httpx.Response(200, content=json.dumps(body).encode())

    return InfluitiveClient("https://api.example.test", TOKEN, ORG, policy=FAST,
                            transport=httpx.MockTransport(answer), **kwargs)


def test_next_link_to_another_host_is_not_followed() -> None:
    client = _mock_client({"/reward_redemptions": {
        "reward_redemptions": [item(1)],
        "links": {"next": "https://evil.example.net/reward_redemptions?page=2"},
    }})

    result = client.poll()

    assert (ids(result), result.complete, result.requests) == (["1"], False, 1)


def test_query_only_next_link_resolves_against_the_current_page() -> None:
    client = _mock_client({
        "/reward_redemptions": {"reward_redemptions": [item(1)], "links": {"next": "?page=2"}},
        "/reward_redemptions?page=2": {"reward_redemptions": [item(2)], "links": {}},
    })

    result = client.poll()

    assert (ids(result), result.complete, result.pages) == (["1", "2"], True, 2)


def test_base_url_with_a_path_prefix_and_custom_list_path() -> None:
    transport = _mock_client({"/api/v9/redemptions": {"reward_redemptions": [item(1)]}})._http
    client = InfluitiveClient(
        "https://api.example.test/api", TOKEN, ORG, policy=FAST, list_path="/v9/redemptions",
        transport=transport._transport,
    )

    assert ids(client.poll()) == ["1"]


def test_bare_array_body_is_accepted() -> None:
    client = _mock_client({"/reward_redemptions": [item(1), 5, item(2)]})

    result = client.poll()

    assert (ids(result), result.complete) == (["1", "2"], True)
    assert result.rejected == ("page 1 item 1: item is a int, not an object",)


@pytest.mark.parametrize("bad_next", [5, {"href": "/x"}, ["/x"], "http://[::1"])
def test_unusable_next_link_ends_the_poll_incomplete(bad_next: Any) -> None:
    client = _mock_client({"/reward_redemptions": {
        "reward_redemptions": [item(1)], "links": {"next": bad_next},
    }})

    with capture_logs() as logs:
        result = client.poll()

    assert (ids(result), result.complete, result.pages) == (["1"], False, 1)
    assert any(e["event"] == "influitive.poll.incomplete" and "links.next" in e["reason"]
               for e in logs)


# --- errors -----------------------------------------------------------------------------


def test_wrong_token_is_an_auth_error(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])

    with pytest.raises(SourceAuthError) as raised:
        make_client(api_token="not-the-token").poll()

    assert str(raised.value) == "Influitive rejected the API token or org id (HTTP 401)"
    assert [r.status for r in standin.state.requests()] == [401]  # never retried


def test_wrong_org_is_an_auth_error(standin: Standin, make_client: MakeClient) -> None:
    with pytest.raises(SourceAuthError, match="HTTP 401"):
        make_client(org_id="another-org").poll()


def test_auth_error_on_a_later_page_still_raises(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1), item(2)])
    standin.state.configure(page_size=1)
    standin.state.add_faults(Fault(status=403, match="page=2",
                                   headers=(("WWW-Authenticate", "Token realm=Api"),)))

    with pytest.raises(SourceAuthError, match=r"\(HTTP 403\)"):
        make_client().poll()


def test_429_with_retry_after_is_waited_out(
    standin: Standin, make_client: MakeClient, sleeps: Sleeps
) -> None:
    standin.state.seed([item(1)])
    standin.state.fail_next(429, retry_after="7")

    result = make_client().poll()

    assert sleeps == [7.0]
    assert (ids(result), result.complete, result.requests) == (["1"], True, 2)


def test_429_without_retry_after_backs_off(
    standin: Standin, make_client: MakeClient, sleeps: Sleeps
) -> None:
    standin.state.seed([item(1)])
    standin.state.fail_next(429)

    result = make_client().poll()

    assert len(sleeps) == 1 and sleeps[0] <= FAST.max_wait
    assert (ids(result), result.requests) == (["1"], 2)


def test_429_with_a_long_retry_after_is_handed_back(
    standin: Standin, make_client: MakeClient, sleeps: Sleeps
) -> None:
    standin.state.fail_next(429, retry_after="120")

    with pytest.raises(SourceUnavailable) as raised:
        make_client().poll()

    assert raised.value.retry_after == 120.0
    assert "HTTP 429" in str(raised.value)
    assert sleeps == []
    assert len(standin.state.requests()) == 1


def test_5xx_then_success(standin: Standin, make_client: MakeClient, sleeps: Sleeps) -> None:
    standin.state.seed([item(1)])
    standin.state.fail_next(500, 503)

    result = make_client().poll()

    assert (ids(result), result.complete, result.requests) == (["1"], True, 3)
    assert len(sleeps) == 2


def test_5xx_forever_is_unavailable(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])
    standin.state.fail_next(503, 503, 503, 503)

    with pytest.raises(SourceUnavailable) as raised:
        make_client().poll()

    assert "HTTP 503" in str(raised.value)
    assert raised.value.retry_after is None
    assert len(standin.state.requests()) == FAST.attempts


def test_slow_answers_time_out_and_are_unavailable(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.add_faults(Fault(delay=0.5), Fault(delay=0.5))
    policy = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.001, timeout=0.1)

    with pytest.raises(SourceUnavailable, match="ReadTimeout"):
        make_client(policy=policy).poll()

    # let the abandoned requests finish, so they are not recorded into the next test
    deadline = time.monotonic() + 5
    while len(standin.state.requests()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(standin.state.requests()) == 2


def test_slow_answer_within_the_timeout_is_fine(standin: Standin, make_client: MakeClient) -> None:
    standin.state.seed([item(1)])
    standin.state.configure(delay=0.05)

    assert ids(make_client().poll()) == ["1"]


def test_unreachable_host_is_unavailable(sleeps: Sleeps) -> None:
    from poller.sandbox.server import free_port

    client = InfluitiveClient(f"http://127.0.0.1:{free_port()}", TOKEN, ORG, policy=FAST,
                              sleep=sleeps)
    with pytest.raises(SourceUnavailable, match="ConnectError"):
        client.poll()
    assert len(sleeps) == FAST.attempts - 1


@pytest.mark.parametrize(
    ("garbage", "says"),
    [("html", "not JSON (HTTP 200, text/html"), ("truncated", "not JSON"),
     ("empty", "not JSON"), ("wrong_shape", "wrong shape")],
)
def test_garbage_first_page_is_unavailable(
    standin: Standin, make_client: MakeClient, garbage: Any, says: str
) -> None:
    standin.state.seed([item(1), item(2)])
    standin.state.add_faults(Fault(garbage=garbage))

    with pytest.raises(SourceUnavailable) as raised:
        make_client().poll()

    assert says in str(raised.value)
    assert str(raised.value).startswith("Influitive redemption list could not be read: page 1")


@pytest.mark.parametrize("garbage", ["html", "truncated", "wrong_shape"])
def test_garbage_later_page_returns_what_was_read(
    standin: Standin, make_client: MakeClient, garbage: Any
) -> None:
    standin.state.seed([item(1), item(2), item(3)])
    standin.state.configure(page_size=1)
    standin.state.add_faults(Fault(garbage=garbage, match="page=2"))

    with capture_logs() as logs:
        result = make_client().poll()

    assert (ids(result), result.complete, result.pages) == (["1"], False, 1)
    assert any(e["event"] == "influitive.poll.incomplete" and "page 2" in e["reason"]
               for e in logs)


def test_5xx_forever_on_a_later_page_returns_what_was_read(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1), item(2)])
    standin.state.configure(page_size=1)
    standin.state.add_faults(*[Fault(status=502, match="page=2")] * 3)

    result = make_client().poll()

    assert (ids(result), result.complete, result.pages, result.requests) == (["1"], False, 1, 4)


def test_requests_count_every_http_request(
    standin: Standin, make_client: MakeClient
) -> None:
    standin.state.seed([item(1), item(2)])
    standin.state.configure(page_size=1)
    standin.state.add_faults(Fault(status=500, match="page=2"))
    client = make_client()

    first = client.poll()
    second = client.poll()

    assert (first.requests, first.pages) == (3, 2)
    assert (second.requests, second.pages) == (2, 2)
