"""Heartbeats, kind 11998: ours, nostrdvm's and #2465's, and Amethyst's liveness rule."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import Event
from dvmkit.protocol.heartbeat import heartbeat_event, parse_heartbeat

from .sdk import NOW, OTHER, PROVIDER, checked_by_sdk, sdk_event

ME = PROVIDER.public_key


def test_our_beat_has_the_tags_amethyst_reads() -> None:
    unsigned = heartbeat_event(provider=ME, created_at=NOW, d="translator-1", load=0.25, queue=3)
    assert unsigned.kind == 11998
    assert unsigned.tags == (
        ("status", "online"),
        ("expiration", str(NOW + 900)),
        ("d", "translator-1"),
        ("load", "0.25"),
    )
    assert json.loads(unsigned.content) == {"status": "online", "load": 0.25, "queue": 3}
    theirs = checked_by_sdk(unsigned, PROVIDER)
    assert theirs.kind().is_replaceable()
    # nostr-sdk reads our expiration tag: a beat from 2025 is expired, a fresh one is not.
    assert theirs.is_expired()
    fresh = heartbeat_event(provider=ME, created_at=int(time.time()), d="x", load=0, queue=0)
    assert not checked_by_sdk(fresh, PROVIDER).is_expired()
    beat = parse_heartbeat(unsigned.sign(PROVIDER))
    assert (beat.pubkey, beat.d, beat.status) == (ME, "translator-1", "online")
    assert (beat.load, beat.queue) == (0.25, 3)
    assert (beat.created_at, beat.expiration) == (NOW, NOW + 900)
    assert beat.note == ""


def test_expiration_follows_the_interval_and_load_is_clamped() -> None:
    busy = heartbeat_event(provider=ME, created_at=NOW, d="x", load=3, queue=0, interval=60)
    assert busy.tags[1] == ("expiration", str(NOW + 180))
    assert busy.tags[3] == ("load", "1.00")
    idle = heartbeat_event(provider=ME, created_at=NOW, d="x", load=-0.5, queue=0)
    assert parse_heartbeat(idle.sign(PROVIDER)).load == 0.0


def test_alive_while_the_last_beat_is_at_most_900_seconds_old() -> None:
    beat = parse_heartbeat(
        heartbeat_event(provider=ME, created_at=NOW, d="x", load=0, queue=0, interval=400).sign(
            PROVIDER
        )
    )
    assert beat.is_alive(NOW)
    assert beat.is_alive(NOW + 900)
    assert not beat.is_alive(NOW + 901)
    assert beat.is_alive(NOW + 1000, window=1000)
    # Expired beats are dead whatever the window.
    short = parse_heartbeat(
        heartbeat_event(provider=ME, created_at=NOW, d="x", load=0, queue=0, interval=10).sign(
            PROVIDER
        )
    )
    assert short.is_alive(NOW + 29)
    assert not short.is_alive(NOW + 30)


def test_nostrdvm_beat_from_nostr_sdk() -> None:
    tags = [["status", "Alive and kicking"], ["d", "abc123"], ["expiration", str(NOW + 300)]]
    beat = parse_heartbeat(sdk_event(OTHER, kind=11998, tags=tags, content="Alive and kicking"))
    assert (beat.d, beat.status, beat.note) == ("abc123", "Alive and kicking", "Alive and kicking")
    assert (beat.load, beat.queue, beat.expiration) == (None, None, NOW + 300)


def test_pr_2465_beat_with_only_an_expiration() -> None:
    beat = parse_heartbeat(sdk_event(OTHER, kind=11998, tags=[["expiration", str(NOW + 300)]]))
    assert (beat.d, beat.status, beat.load, beat.queue, beat.note) == (None, None, None, None, "")
    assert beat.is_alive(NOW + 299)


def test_1941_beat_with_a_load_tag() -> None:
    tags = [["d", "x"], ["status", "busy", "3 jobs"], ["load", "0.5"]]
    beat = parse_heartbeat(sdk_event(OTHER, kind=11998, tags=tags, content="working"))
    assert (beat.status, beat.load, beat.note) == ("busy", 0.5, "working")


@pytest.mark.parametrize(
    ("content", "tags", "expected"),
    [
        ("{bad json", [], {"note": "{bad json", "load": None}),
        ("[1, 2]", [], {"note": "[1, 2]"}),
        ('{"load": "0.3", "queue": "4"}', [], {"load": 0.3, "queue": 4, "note": ""}),
        ('{"load": 5, "queue": -1}', [], {"load": None, "queue": None}),
        ('{"load": true, "queue": true, "status": 7}', [], {"load": None, "queue": None}),
        ("", [["load", "nan"]], {"load": None}),
        ("", [["load", "inf"]], {"load": None}),
        ("", [["load", "1" * 100]], {"load": None}),
        ("", [["queue", "9" * 100]], {"queue": None}),
        ("", [["expiration", "9" * 5000]], {"expiration": None}),
        ("x" * 100_000, [], {"note": "x" * 1024}),
        ("[" * 5000, [], {"note": "[" * 1024}),
        ('{"status": "online"}', [], {"status": "online"}),
    ],
)
def test_hostile_beats_read_what_they_can(
    content: str, tags: list[list[str]], expected: dict[str, Any]
) -> None:
    beat = parse_heartbeat(sdk_event(OTHER, kind=11998, tags=tags, content=content))
    for field, value in expected.items():
        assert getattr(beat, field) == value, field


def test_other_kinds_are_not_heartbeats() -> None:
    with pytest.raises(ProtocolError, match="not a heartbeat"):
        parse_heartbeat(sdk_event(OTHER, kind=1998))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"d": ""}, "non-empty d"),
        ({"load": float("nan")}, "finite number"),
        ({"load": float("inf")}, "finite number"),
        ({"load": True}, "finite number"),
        ({"queue": -1}, "non-negative"),
        ({"queue": 1.5}, "non-negative"),
        ({"interval": 0}, "positive"),
    ],
)
def test_heartbeat_builder_refuses_bad_values(kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {"provider": ME, "created_at": NOW, "d": "d", "load": 0.1, "queue": 0}
    with pytest.raises(ProtocolError, match=fragment):
        heartbeat_event(**{**args, **kwargs})


texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)
tags = st.lists(
    st.tuples(st.sampled_from(["d", "status", "load", "queue", "expiration"]) | texts, texts).map(
        list
    ),
    max_size=6,
)


@settings(max_examples=300)
@given(tags=tags, content=texts | texts.map(lambda t: "{" + t))
def test_arbitrary_beats_never_raise(tags: list[list[str]], content: str) -> None:
    event = Event("00" * 32, OTHER.public_key, NOW, 11998, tuple(map(tuple, tags)), content, "")
    beat = parse_heartbeat(event)
    assert beat.load is None or 0.0 <= beat.load <= 1.0
    assert beat.queue is None or beat.queue >= 0
    assert len(beat.note) <= 1024
