"""The console's actions: a preview says what will happen before anything is done; each
action runs the same function as its ``ledger`` command and leaves the same events, with
the signed-in person as the actor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from poller.console.app import available
from poller.domain.states import State
from tests.adapters.console.conftest import World, csrf_of, login, make_world

MESSAGE = "We cannot send conference tickets this year; your points are back."


def entry(world: World, rid: str):  # type: ignore[no-untyped-def]
    found = world.runtime.ledger.get("influitive", rid)
    assert found is not None
    return found


def post(client, path: str, csrf: str, **fields: str):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf": csrf, **fields}, follow_redirects=False)


def test_refuse_previews_then_sends_exactly_that_message_once(world: World) -> None:
    client = world.client()
    csrf = login(client, "olivia")
    base = "/console/redemptions/influitive/4815"
    preview = post(client, f"{base}/refuse/preview", csrf, message=MESSAGE)
    assert preview.status_code == 200
    assert "a refund will be made" in preview.text and "No order is placed." in preview.text
    assert MESSAGE.replace("'", "&#39;") in preview.text
    assert entry(world, "4815").state is State.HELD  # a preview changes nothing
    assert [d for d in world.box.influitive.decisions() if d.id == "4815"] == []
    done = post(client, f"{base}/refuse", csrf_of(preview.text), message=MESSAGE)
    assert done.status_code == 303 and done.headers["location"] == base
    assert entry(world, "4815").state is State.REFUSED
    sent = [d for d in world.box.influitive.decisions() if d.id == "4815"]
    assert [(d.verb, d.message) for d in sent] == [("refuse", MESSAGE)]
    page = client.get(base).text
    assert "Refuse: refusing" in page and "Influitive has your message" in page
    last = world.runtime.ledger.events(entry(world, "4815").pk)
    assert any(e.actor == "olivia" and MESSAGE in e.detail for e in last)


def test_refuse_needs_a_message(world: World) -> None:
    client = world.client()
    csrf = login(client, "olivia")
    response = post(client, "/console/redemptions/influitive/4815/refuse/preview", csrf,
                    message="  ")
    assert response.status_code == 303
    assert "Write the message" in client.get(response.headers["location"]).text


def test_retry_after_a_top_up_orders_at_the_next_cycle(world: World) -> None:
    assert entry(world, "4820").state is State.WAITING
    world.box.tango.set_balance("1000")
    client = world.client()
    csrf = login(client, "olivia")
    base = "/console/redemptions/influitive/4820"
    preview = post(client, f"{base}/retry/preview", csrf)
    assert "an order will be placed (20.00 USD, tango)" in preview.text
    post(client, f"{base}/retry", csrf_of(preview.text))
    after = entry(world, "4820")
    assert after.state is State.WAITING and after.next_attempt_at is None
    assert after.attempts == 0
    world.runtime.worker.run_cycle()
    assert entry(world, "4820").state is State.FULFILLED


def test_mark_fulfilled_for_the_manual_vendor(world: World) -> None:
    client = world.client()
    csrf = login(client, "olivia")
    base = "/console/redemptions/influitive/4822"
    note = "Your hoodie left our office today by post."
    preview = post(client, f"{base}/fulfill/preview", csrf, message=note)
    assert "No order is placed and no points are refunded." in preview.text
    post(client, f"{base}/fulfill", csrf_of(preview.text), message=note)
    assert entry(world, "4822").state is State.FULFILLED
    assert [(d.verb, d.message) for d in world.box.influitive.decisions()
            if d.id == "4822"] == [("fulfill", note)]


def test_an_action_the_vendor_blocks_is_shown_and_changes_nothing(world: World) -> None:
    client = world.client()
    csrf = login(client, "olivia")
    # 4820 has a key but no order at Tango: reorder needs a failed order.
    response = post(client, "/console/redemptions/influitive/4820/reorder", csrf)
    page = client.get(response.headers["location"]).text
    assert "Reorder was not done" in page and "has no order under key" in page
    assert entry(world, "4820").state is State.WAITING


def test_available_actions() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from poller.domain.model import LedgerEntry

    now = datetime.now(UTC)
    held = LedgerEntry(pk=1, source="influitive", redemption_id="1", state=State.HELD,
                       payload={}, created_at=now, updated_at=now)
    assert available(held) == ["retry", "refuse", "fulfill"]
    keyed = replace(held, state=State.WAITING, idempotency_key="k", vendor="tango")
    assert available(keyed) == ["retry", "reorder", "refuse"]
    manual = replace(held, state=State.PENDING, vendor="manual", idempotency_key="k")
    assert available(manual) == ["refuse", "fulfill"]
    assert available(replace(held, state=State.FULFILLED)) == []


# --- the console and the CLI leave the same events -----------------------------------------


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[World]:
    """A second world like ``world``: same stand-ins' seeds, same cycle, its own ledger."""
    other = tmp_path / "twin"
    other.mkdir()
    yield from make_world(other)


def story(world: World, rid: str) -> list[tuple[str | None, str, str]]:
    return [(e.from_state.value if e.from_state else None, e.to_state.value, e.detail)
            for e in world.runtime.ledger.events(entry(world, rid).pk)]


def actors(world: World, rid: str) -> list[str | None]:
    return [e.actor for e in world.runtime.ledger.events(entry(world, rid).pk)]


@pytest.mark.parametrize(("action", "rid", "cli_args"), [
    ("refuse", "4815", ["-m", MESSAGE]),
    ("retry", "4820", []),
    ("fulfill", "4822", ["-m", "Sent by post."]),
])
def test_console_and_cli_leave_identical_events_apart_from_the_actor(
    world: World, twin: World, action: str, rid: str, cli_args: list[str],
) -> None:
    before = len(story(world, rid))
    assert [e[:2] for e in story(world, rid)] == [e[:2] for e in story(twin, rid)]
    client = world.client()
    csrf = login(client, "olivia")
    message = cli_args[1] if cli_args else ""
    post(client, f"/console/redemptions/influitive/{rid}/{action}", csrf, message=message)
    result = twin.cli("ledger", action, rid, *cli_args, "--by", "cli-person")
    assert result.returncode == 0, result.stderr
    assert len(story(world, rid)) > before
    assert story(world, rid)[before:] == story(twin, rid)[before:]
    assert actors(world, rid)[before] == "olivia"
    assert actors(twin, rid)[before] == "cli-person"
