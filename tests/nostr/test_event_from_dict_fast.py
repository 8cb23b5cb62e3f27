"""event_from_dict_fast: the relay's lean shape check must accept exactly what from_dict accepts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvmkit.errors import InvalidEvent
from dvmkit.nostr.event import Event, event_from_dict_fast, sign_event
from dvmkit.nostr.keys import Keys

KEYS = Keys(bytes.fromhex("67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"))
VALID = sign_event(KEYS, kind=1, content="hi", tags=[["p", KEYS.public_key], ["t", "x"]])

# Values that are right for some field and wrong for others, plus near misses of each format.
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.sampled_from(
        [
            VALID.id,
            VALID.id.upper(),
            VALID.id[:-1],
            VALID.id + "0",
            VALID.id[:-2] + " 0",
            VALID.id[:-1] + "g",
            VALID.id[:-1] + "\u0660",  # a unicode digit
            VALID.sig,
            VALID.sig.upper(),
            VALID.sig[:-2] + "\t1",
            VALID.pubkey,
            2**64 - 1,
            2**64,
            65535,
            65536,
        ]
    ),
    st.lists(st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3), max_size=3),
)
fields = st.sampled_from(["id", "pubkey", "created_at", "kind", "tags", "content", "sig", "x"])


def _from_dict(data: object) -> Event | None:
    try:
        return Event.from_dict(data)
    except InvalidEvent:
        return None


def test_valid_event_is_parsed_equal_to_from_dict() -> None:
    data = VALID.to_dict()
    assert event_from_dict_fast(data) == Event.from_dict(data) == VALID


@settings(max_examples=2000)
@given(changes=st.dictionaries(fields, values, max_size=3), drop=st.sets(fields, max_size=2))
def test_agrees_with_from_dict_on_mutated_events(changes: dict[str, Any], drop: set[str]) -> None:
    data: dict[str, Any] = {**VALID.to_dict(), **changes}
    for name in drop:
        data.pop(name, None)
    # Accepts exactly what from_dict accepts, and builds the same event.
    assert event_from_dict_fast(data) == _from_dict(data)


@pytest.mark.parametrize("data", [None, [], "event", b"{}", 5, [VALID.to_dict()], {"id": VALID.id}])
def test_non_objects_and_missing_fields_are_none(data: object) -> None:
    assert event_from_dict_fast(data) is None
    with pytest.raises(InvalidEvent):
        Event.from_dict(data)


def test_checks_neither_id_nor_signature() -> None:
    # Those are the caller's next, costlier steps (the relay checks its limits in between).
    data = {**VALID.to_dict(), "content": "tampered"}
    event = event_from_dict_fast(data)
    assert event is not None
    assert not event.verify()
