"""NIP-01 events: ids, signatures, shape checks, and agreement with nostr-sdk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nostr_sdk
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvmkit.errors import InvalidEvent
from dvmkit.nostr.event import Event, UnsignedEvent, compute_id, parse_event, sign_event
from dvmkit.nostr.keys import Keys

VECTORS = Path(__file__).parent.parent / "vectors"
KEYS = Keys(bytes.fromhex("67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"))
SDK_KEYS = nostr_sdk.Keys.parse(KEYS.secret_hex())

# Any text without surrogates (JSON cannot carry lone surrogates as UTF-8): unicode, control
# characters, emoji, U+2028, the escapes NIP-01 names.
texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200)
tags = st.lists(st.lists(texts, min_size=1, max_size=5), max_size=12)
kinds = st.integers(min_value=0, max_value=65535)
times = st.integers(min_value=0, max_value=2**40)


def test_nip01_id_of_the_nip90_request_example() -> None:
    data = json.loads((VECTORS / "nips-examples-derived.json").read_text())["nip01_event_id"]
    ev = data["event"]
    tags_ = tuple(tuple(t) for t in ev["tags"])
    got = compute_id(ev["pubkey"], ev["created_at"], ev["kind"], tags_, ev["content"])
    assert got == data["expected_id"]


def test_serialization_escapes_exactly_as_nip01() -> None:
    content = 'a"b\\c\nd\re\tf\bg\fh\x00i\x1fj\x7fk\u2028l🎉'
    ev = sign_event(KEYS, kind=1, content=content, created_at=1)
    stdlib = json.dumps(
        [0, ev.pubkey, 1, 1, [], content], separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert (
        compute_id(ev.pubkey, 1, 1, (), content) == __import__("hashlib").sha256(stdlib).hexdigest()
    )
    assert parse_event(ev.to_json()) == ev


@settings(max_examples=1000)
@given(content=texts, tags_=tags, kind=kinds, created_at=times)
def test_our_events_verify_in_nostr_sdk_and_ids_agree(
    content: str, tags_: list[list[str]], kind: int, created_at: int
) -> None:
    ours = sign_event(KEYS, kind=kind, content=content, tags=tags_, created_at=created_at)
    theirs = nostr_sdk.Event.from_json(ours.to_json())
    assert theirs.verify()
    assert theirs.id().to_hex() == ours.id
    assert theirs.signature() == ours.sig


@settings(max_examples=1000)
@given(content=texts, tags_=tags, kind=kinds, created_at=times)
def test_nostr_sdk_events_verify_in_ours(
    content: str, tags_: list[list[str]], kind: int, created_at: int
) -> None:
    unsigned = nostr_sdk.UnsignedEvent.from_json(
        json.dumps(
            {
                "pubkey": KEYS.public_key,
                "created_at": created_at,
                "kind": kind,
                "tags": tags_,
                "content": content,
            }
        )
    )
    theirs = SDK_KEYS.sign_event(unsigned)
    ours = parse_event(theirs.as_json())
    assert ours.id == theirs.id().to_hex()
    assert ours.content == content
    assert [list(t) for t in ours.tags] == tags_
    assert ours.verify()


def _mutations(event: dict[str, Any]) -> list[tuple[str, Any]]:
    flipped_sig = ("0" if event["sig"][0] != "0" else "1") + event["sig"][1:]
    flipped_id = ("0" if event["id"][0] != "0" else "1") + event["id"][1:]
    other = Keys.generate().public_key
    return [
        ("id", flipped_id),
        ("pubkey", other),
        ("created_at", event["created_at"] + 1),
        ("kind", (event["kind"] + 1) % 65536),
        ("tags", [*event["tags"], ["t", "x"]]),
        ("content", event["content"] + " "),
        ("sig", flipped_sig),
    ]


@given(content=texts, tags_=tags, kind=kinds, created_at=times, which=st.integers(0, 6))
def test_any_single_field_mutation_fails_verification(
    content: str, tags_: list[list[str]], kind: int, created_at: int, which: int
) -> None:
    event = sign_event(KEYS, kind=kind, content=content, tags=tags_, created_at=created_at)
    data = event.to_dict()
    field, value = _mutations(data)[which]
    data[field] = value
    with pytest.raises(InvalidEvent):
        parse_event(orjson.dumps(data))
    assert not Event.from_dict(data).verify()


@given(content=texts, tags_=tags.filter(bool), which=st.data())
def test_mutating_any_tag_value_fails_verification(
    content: str, tags_: list[list[str]], which: st.DataObject
) -> None:
    event = sign_event(KEYS, kind=1, content=content, tags=tags_, created_at=1)
    data = event.to_dict()
    i = which.draw(st.integers(0, len(tags_) - 1))
    j = which.draw(st.integers(0, len(tags_[i]) - 1))
    data["tags"][i][j] += "x"
    with pytest.raises(InvalidEvent, match="id does not match"):
        parse_event(data)


def _valid() -> dict[str, Any]:
    return sign_event(KEYS, kind=1, content="hi", tags=[["p", KEYS.public_key]]).to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "ab"}, "id must be 64"),
        ({"id": "A" * 64}, "id must be 64"),
        ({"pubkey": 5}, "pubkey must be 64"),
        ({"sig": "0" * 127}, "sig must be 128"),
        ({"sig": "G" * 128}, "sig must be 128"),
        ({"created_at": "1"}, "created_at must be an integer"),
        ({"created_at": -1}, "created_at must be an integer"),
        ({"created_at": 2**64}, "created_at must be an integer"),
        ({"created_at": 1.5}, "created_at must be an integer"),
        ({"kind": True}, "kind must be an integer"),
        ({"kind": 70000}, "kind must be an integer"),
        ({"tags": {}}, "tags must be an array"),
        ({"tags": [[]]}, "tag 0 must be a non-empty"),
        ({"tags": ["p"]}, "tag 0 must be a non-empty"),
        ({"tags": [["p", 1]]}, "tag values must be strings"),
        ({"tags": [["p", None]]}, "tag values must be strings"),
        ({"content": None}, "content must be a string"),
        ({"content": ["x"]}, "content must be a string"),
    ],
)
def test_malformed_events_get_a_precise_error(change: dict[str, Any], message: str) -> None:
    data = {**_valid(), **change}
    with pytest.raises(InvalidEvent, match=message):
        parse_event(json.dumps(data))


@pytest.mark.parametrize("field", ["id", "pubkey", "created_at", "kind", "tags", "content", "sig"])
def test_missing_fields_are_named(field: str) -> None:
    data = _valid()
    del data[field]
    with pytest.raises(InvalidEvent, match=f"no '{field}' field"):
        parse_event(data)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b"null", b"42", b'"event"', b"\xff\xfe", b'{"id": "\\ud800"}', b"[" * 10000],
)
def test_non_event_json_is_rejected_cleanly(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(raw)


def test_oversized_event_parses_linearly_and_verifies() -> None:
    big = "x" * 2_000_000
    event = sign_event(KEYS, kind=1, content=big, tags=[["t", "a"]] * 5000, created_at=1)
    assert parse_event(event.to_json_bytes()).content == big


def test_tag_helpers() -> None:
    event = sign_event(
        KEYS,
        kind=5100,
        tags=[["i", "x", "text"], ["param", "a", "1"], ["param", "b", "2"], ["e"]],
        created_at=1,
    )
    assert event.tag("param") == ("param", "a", "1")
    assert event.tag_value("param") == "a"
    assert event.tag_value("e") is None
    assert event.tag("missing") is None
    assert event.tags_named("param") == [("param", "a", "1"), ("param", "b", "2")]
    assert event.tag_values("param") == ["a", "b"]


def test_unsigned_event_signs_to_the_same_id() -> None:
    rumor = UnsignedEvent(KEYS.public_key, 5, 1, (("t", "x"),), "hello")
    signed = rumor.sign(KEYS)
    assert signed.id == rumor.id
    assert signed.verify()
    assert json.loads(rumor.to_json())["id"] == rumor.id
    with pytest.raises(InvalidEvent, match="not the event's pubkey"):
        rumor.sign(Keys.generate())


def test_sign_event_rejects_bad_input() -> None:
    with pytest.raises(InvalidEvent, match="kind"):
        sign_event(KEYS, kind=-1)
    with pytest.raises(InvalidEvent, match="tag values must be strings"):
        sign_event(KEYS, kind=1, tags=[("p", 5)])  # type: ignore[list-item]
    with pytest.raises(InvalidEvent, match="non-empty"):
        sign_event(KEYS, kind=1, tags=[()])


def test_to_json_round_trips() -> None:
    event = sign_event(KEYS, kind=1, content="é\n", tags=[["a", "b"]], created_at=7)
    assert Event.from_json(event.to_json()) == event
    assert orjson.loads(event.to_json_bytes()) == event.to_dict()
