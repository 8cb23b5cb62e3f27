"""NIP-01 filters: parsing strictly, matching exactly."""

from __future__ import annotations

from typing import Any

import pytest

from dvmkit.errors import InvalidFilter
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter, matches_any
from dvmkit.nostr.keys import Keys

ALICE, BOB = Keys.generate(), Keys.generate()


def make(keys: Keys = ALICE, kind: int = 1, created_at: int = 100, **kw: Any) -> Event:
    return sign_event(keys, kind=kind, created_at=created_at, **kw)


def test_every_field_is_anded() -> None:
    ev = make(tags=[["p", BOB.public_key], ["t", "pow"]])
    f = Filter.build(
        ids=[ev.id],
        authors=[ALICE.public_key],
        kinds=[1],
        tags={"p": [BOB.public_key], "t": ["pow", "other"]},
        since=100,
        until=100,
    )
    assert f.matches(ev)
    for changed in (
        Filter.build(authors=[BOB.public_key]),
        Filter.build(kinds=[2]),
        Filter.build(tags={"t": ["nope"]}),
        Filter.build(since=101),
        Filter.build(until=99),
        Filter.build(ids=[make(created_at=5).id]),
    ):
        assert not changed.matches(ev)


def test_since_and_until_are_inclusive_and_limit_does_not_affect_matching() -> None:
    ev = make(created_at=50)
    assert Filter.build(since=50, until=50, limit=0).matches(ev)


def test_tag_filters_match_only_the_first_value_of_a_tag() -> None:
    ev = make(tags=[["t", "a", "b"]])
    assert Filter.build(tags={"t": ["a"]}).matches(ev)
    assert not Filter.build(tags={"t": ["b"]}).matches(ev)


def test_a_tag_without_a_value_never_matches_a_tag_filter() -> None:
    assert not Filter.build(tags={"e": [BOB.public_key]}).matches(make(tags=[["e"]]))


def test_empty_lists_match_nothing_and_empty_filter_matches_everything() -> None:
    ev = make()
    assert not Filter.build(kinds=[]).matches(ev)
    assert not Filter.build(ids=[]).matches(ev)
    assert Filter().matches(ev)
    assert Filter.from_dict({}).matches(ev)


def test_filters_in_a_list_are_ored() -> None:
    ev = make(kind=7)
    assert matches_any([Filter.build(kinds=[1]), Filter.build(kinds=[7])], ev)
    assert not matches_any([Filter.build(kinds=[1]), Filter.build(kinds=[2])], ev)
    assert not matches_any([], ev)


def test_round_trip_through_dict() -> None:
    data = {
        "ids": ["a" * 64],
        "authors": [ALICE.public_key],
        "kinds": [1, 5000],
        "#e": ["b" * 64],
        "#t": ["x"],
        "since": 1,
        "until": 2,
        "limit": 3,
    }
    f = Filter.from_dict(data)
    assert f.to_dict() == data
    assert Filter.from_dict(f.to_dict()) == f
    assert f.tag_values("t") == frozenset({"x"})
    assert f.tag_values("z") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({"ids": "a"}, "'ids' must be a list of strings"),
        ({"ids": ["abc"]}, "64 lowercase hex"),
        ({"authors": ["A" * 64]}, "64 lowercase hex"),
        ({"#e": ["short"]}, "64 lowercase hex"),
        ({"#p": [5]}, "list of strings"),
        ({"kinds": [1.0]}, "'kinds' must be a list of integers"),
        ({"kinds": [True]}, "'kinds' must be a list of integers"),
        ({"kinds": [70000]}, "'kinds' must be a list of integers"),
        ({"kinds": 1}, "'kinds' must be a list of integers"),
        ({"since": "1"}, "'since' must be an integer"),
        ({"until": -1}, "'until' must be an integer"),
        ({"limit": None}, "'limit' must be an integer"),
        ({"#": ["x"]}, "'#' and one letter"),
        ({"#ab": ["x"]}, "'#' and one letter"),
        ({"#1": ["x"]}, "'#' and one letter"),
        ({"#é": ["x"]}, "'#' and one letter"),
        ({"bogus": 1}, "unsupported filter field 'bogus'"),
        ({"search": 5}, "'search' must be a string"),
    ],
)
def test_malformed_filters_get_a_precise_error(data: object, message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        Filter.from_dict(data)
