"""NIP-42 AUTH events: built by us, checked by us and by nostr-sdk."""

from __future__ import annotations

import json

import nostr_sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import InvalidEvent
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.nostr.nip42 import (
    AUTH_KIND,
    make_auth_event,
    same_relay,
    verify_auth_event,
)

KEYS = Keys(bytes.fromhex("11" * 32))
URL = "wss://relay.example.com"
NOW = 1_700_000_000


def test_auth_event_has_kind_relay_and_challenge_tags() -> None:
    event = make_auth_event(KEYS, URL, "chal-1", created_at=NOW)
    assert event.kind == AUTH_KIND == 22242
    assert event.tag_value("relay") == URL
    assert event.tag_value("challenge") == "chal-1"
    assert event.created_at == NOW
    assert event.content == ""
    assert event.verify()


def test_auth_event_verifies_in_nostr_sdk() -> None:
    event = make_auth_event(KEYS, URL, "chal-2", created_at=NOW)
    theirs = nostr_sdk.Event.from_json(event.to_json())
    assert theirs.verify()
    assert theirs.kind().as_u16() == AUTH_KIND
    assert theirs.author().to_hex() == KEYS.public_key


def test_verify_returns_pubkey() -> None:
    event = make_auth_event(KEYS, URL, "c", created_at=NOW)
    assert verify_auth_event(event, URL, "c", now=NOW + 30) == KEYS.public_key


def test_verify_accepts_decoded_json_and_text() -> None:
    event = make_auth_event(KEYS, URL, "c", created_at=NOW)
    assert verify_auth_event(event.to_dict(), URL, "c", now=NOW) == KEYS.public_key
    assert verify_auth_event(event.to_json(), URL, "c", now=NOW) == KEYS.public_key


def test_verify_accepts_equivalent_relay_url_spellings() -> None:
    event = make_auth_event(KEYS, "wss://Relay.Example.com:443/", "c", created_at=NOW)
    assert verify_auth_event(event, URL, "c", now=NOW) == KEYS.public_key


def test_wrong_challenge_is_rejected() -> None:
    event = make_auth_event(KEYS, URL, "c", created_at=NOW)
    with pytest.raises(InvalidEvent, match="challenge"):
        verify_auth_event(event, URL, "other", now=NOW)


def test_wrong_relay_is_rejected() -> None:
    event = make_auth_event(KEYS, "wss://evil.example.com", "c", created_at=NOW)
    with pytest.raises(InvalidEvent, match="another relay"):
        verify_auth_event(event, URL, "c", now=NOW)


def test_missing_tags_are_rejected() -> None:
    no_relay = sign_event(KEYS, kind=AUTH_KIND, tags=[["challenge", "c"]], created_at=NOW)
    with pytest.raises(InvalidEvent, match="another relay"):
        verify_auth_event(no_relay, URL, "c", now=NOW)
    no_challenge = sign_event(KEYS, kind=AUTH_KIND, tags=[["relay", URL]], created_at=NOW)
    with pytest.raises(InvalidEvent, match="challenge"):
        verify_auth_event(no_challenge, URL, "c", now=NOW)


def test_wrong_kind_is_rejected() -> None:
    event = sign_event(KEYS, kind=1, tags=[["relay", URL], ["challenge", "c"]], created_at=NOW)
    with pytest.raises(InvalidEvent, match="kind 22242"):
        verify_auth_event(event, URL, "c", now=NOW)


@pytest.mark.parametrize("offset", [-601, 601, -10_000])
def test_stale_or_future_timestamp_is_rejected(offset: int) -> None:
    event = make_auth_event(KEYS, URL, "c", created_at=NOW + offset)
    with pytest.raises(InvalidEvent, match="too far"):
        verify_auth_event(event, URL, "c", now=NOW)


def test_window_is_configurable() -> None:
    event = make_auth_event(KEYS, URL, "c", created_at=NOW - 100)
    with pytest.raises(InvalidEvent):
        verify_auth_event(event, URL, "c", now=NOW, window=60)
    assert verify_auth_event(event, URL, "c", now=NOW, window=100) == KEYS.public_key


def test_forged_signature_is_rejected() -> None:
    data = make_auth_event(KEYS, URL, "c", created_at=NOW).to_dict()
    data["sig"] = ("0" if data["sig"][0] != "0" else "1") + data["sig"][1:]
    with pytest.raises(InvalidEvent, match="signature"):
        verify_auth_event(data, URL, "c", now=NOW)


def test_tampered_challenge_breaks_the_id() -> None:
    data = make_auth_event(KEYS, URL, "c", created_at=NOW).to_dict()
    data["tags"] = [["relay", URL], ["challenge", "d"]]
    with pytest.raises(InvalidEvent, match="id does not match"):
        verify_auth_event(data, URL, "d", now=NOW)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({"kind": AUTH_KIND}),
        b"\xff\xfe",
        "x" * 100_000,
    ],
)
def test_malformed_input_raises_invalid_event(raw: str | bytes) -> None:
    with pytest.raises(InvalidEvent):
        verify_auth_event(raw, URL, "c", now=NOW)


@given(challenge=st.text(max_size=200), created=st.integers(0, 2**40))
def test_round_trip_for_any_challenge(challenge: str, created: int) -> None:
    event = make_auth_event(KEYS, URL, challenge, created_at=created)
    assert verify_auth_event(event, URL, challenge, now=created) == KEYS.public_key


@pytest.mark.parametrize(
    ("tagged", "ours", "same"),
    [
        ("wss://relay.example.com", "wss://relay.example.com:7777", True),  # behind a proxy
        ("ws://localhost:10547", "ws://127.0.0.1:10547", True),
        ("ws://[::1]:1", "ws://127.0.0.1:2", True),
        ("wss://anything.example", "ws://0.0.0.0:10547", True),
        ("wss://evil.example.com", "wss://relay.example.com", False),
        ("https://relay.example.com", "wss://relay.example.com", False),
        ("ws://[::1", "ws://127.0.0.1:1", False),
    ],
)
def test_same_relay_compares_hosts(tagged: str, ours: str, same: bool) -> None:
    assert same_relay(tagged, ours) is same
