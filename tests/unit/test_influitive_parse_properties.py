"""Properties of the tolerant parsing (core ``parse_page`` / ``parse_redemption``) and of the
client's per-page item handling on arbitrary JSON-ish input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.sources.influitive.wire import (
    Unkeyable,
    parse_items,
    parse_page,
    parse_redemption,
    redemption_key,
)

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["", " ", "-", "--5", "²", "1.5", "0", "-3", "@", "a@b", "\x00", "٣"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
ids = (
    st.integers() | st.text(max_size=30) | st.floats() | st.booleans() | st.none()
    | st.just("x" * 201) | json_values
)
contact = st.fixed_dictionaries({}, optional={
    "id": ids, "email": json_values, "first_name": json_values, "last_name": json_values,
    "name": json_values,
}) | json_values
FIELDS = {
    "id": ids, "uuid": json_values, "reward_id": json_values, "reward_name": json_values,
    "reward": st.fixed_dictionaries({}, optional={"id": json_values, "name": json_values})
    | json_values,
    "contact_id": ids, "contact": contact, "points": json_values, "quantity": json_values,
    "stage": json_values, "created_at": json_values, "shipping": json_values,
    "reward_metadata": json_values,
}
items = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({}, optional=FIELDS),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
contacts = st.lists(contact, max_size=4)
page_items = st.lists(items | json_values, max_size=6)
pages = (
    st.builds(lambda i, c: {"reward_redemptions": i, "contacts": c}, page_items, contacts)
    | st.builds(lambda i: {"data": i}, page_items)
    | page_items
    | json_values
)
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def keyable(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return None
    try:
        return redemption_key(item)
    except Unkeyable:
        return None


@SETTINGS
@given(pages)
def test_parse_page_raises_only_value_error(body: Any) -> None:
    try:
        raw_items, by_id = parse_page(body)
    except ValueError:
        return
    assert isinstance(raw_items, list)
    assert all(isinstance(k, str) and isinstance(v, Mapping) for k, v in by_id.items())


@SETTINGS
@given(items, contacts)
def test_parse_redemption_raises_only_unkeyable_or_value_error(
    item: dict[str, Any], side: list[Any]
) -> None:
    by_id = parse_page({"reward_redemptions": [], "contacts": side})[1]
    try:
        redemption = parse_redemption(item, by_id)
    except Unkeyable:
        assert keyable(item) is None  # only an item without a usable id is unkeyable
        return
    except ValueError:
        # Allowed by the contract; happens for keyable items (e.g. quantity "--5"), which the
        # client keeps anyway (see test_client_never_loses_a_keyable_item).
        assert keyable(item) is not None
        return
    assert redemption.id == redemption_key(item)
    assert redemption.quantity >= 1
    assert isinstance(redemption.problems, tuple)


@SETTINGS
@given(st.builds(lambda i, c: {"reward_redemptions": i, "contacts": c}, page_items, contacts)
       | page_items)
def test_client_never_loses_a_keyable_item(body: Any) -> None:
    raw = body if isinstance(body, list) else body["reward_redemptions"]

    page = parse_items(body)

    expected = [keyable(i) for i in raw if keyable(i) is not None]
    assert [r.id for r in page.redemptions] == expected
    assert len(page.redemptions) + len(page.rejected) == len(raw)
    assert all(r.startswith("page 1 item ") for r in page.rejected)


@pytest.mark.parametrize("value", ["--5", "²", "9" * 5000])
def test_core_parse_redemption_keeps_odd_quantities(value: str) -> None:
    redemption = parse_redemption({"id": 1, "quantity": value, "points": value})
    assert redemption.problems
