"""NIP-19: the NIP's examples, round trips, nostr-sdk agreement, malformed input."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import nostr_sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import Bech32Error
from dvmkit.nostr import bech32, nip19
from dvmkit.nostr.keys import Keys

EXAMPLES = json.loads(
    (Path(__file__).parent.parent / "vectors" / "nips-examples-derived.json").read_text()
)["nip19"]

hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
relay = st.from_regex(
    r"wss://[a-z]{1,20}\.(com|net|io)(:[1-9][0-9]{1,3})?(/[a-z]{1,10})?", fullmatch=True
)
relays = st.lists(relay, max_size=4).map(tuple)


def test_npub_examples() -> None:
    for example in EXAMPLES["npub"]:
        assert nip19.decode(example["bech32"]) == nip19.Decoded("npub", example["hex"])
        assert nip19.encode_npub(example["hex"]) == example["bech32"]


def test_nsec_example() -> None:
    (example,) = EXAMPLES["nsec"]
    assert nip19.decode(example["bech32"]).value == example["hex"]
    assert nip19.encode_nsec(example["hex"]) == example["bech32"]
    assert Keys.parse(example["bech32"]).public_key == example["derived_pubkey_hex"]


def test_nprofile_example() -> None:
    (example,) = EXAMPLES["nprofile"]
    profile = nip19.Profile(example["pubkey"], tuple(example["relays"]))
    assert nip19.decode(example["bech32"]) == nip19.Decoded("nprofile", profile)
    assert nip19.encode_nprofile(profile) == example["bech32"]


@given(pubkey=hex32, relays=relays)
def test_nprofile_agrees_with_nostr_sdk(pubkey: str, relays: tuple[str, ...]) -> None:
    ours = nip19.encode_nprofile(nip19.Profile(pubkey, relays))
    theirs = nostr_sdk.Nip19Profile.from_bech32(ours)
    assert theirs.public_key().to_hex() == pubkey
    assert len(theirs.relays()) == len(relays)
    # nostr-sdk normalises relay URLs, so compare with the URLs it says it holds.
    normalised = tuple(str(r) for r in theirs.relays())
    assert nip19.decode(theirs.to_bech32()).value == nip19.Profile(pubkey, normalised)


@given(
    event_id=hex32, relays=relays, author=st.none() | hex32, kind=st.none() | st.integers(0, 65535)
)
def test_nevent_round_trips_and_agrees_with_nostr_sdk(
    event_id: str, relays: tuple[str, ...], author: str | None, kind: int | None
) -> None:
    pointer = nip19.EventPointer(event_id, relays, author, kind)
    text = nip19.encode_nevent(pointer)
    assert nip19.decode(text) == nip19.Decoded("nevent", pointer)
    theirs = nostr_sdk.Nip19Event.from_bech32(text)
    assert theirs.event_id().to_hex() == event_id
    assert (theirs.author().to_hex() if theirs.author() else None) == author


@given(identifier=st.text(max_size=100), pubkey=hex32, kind=st.integers(0, 65535), relays=relays)
def test_naddr_round_trips_and_agrees_with_nostr_sdk(
    identifier: str, pubkey: str, kind: int, relays: tuple[str, ...]
) -> None:
    if len(identifier.encode()) > 255:
        return
    pointer = nip19.AddressPointer(identifier, pubkey, kind, relays)
    text = nip19.encode_naddr(pointer)
    assert nip19.decode(text) == nip19.Decoded("naddr", pointer)
    theirs = nostr_sdk.Nip19Coordinate.from_bech32(text)
    assert theirs.coordinate().identifier() == identifier
    assert theirs.coordinate().public_key().to_hex() == pubkey


@given(data=hex32)
def test_simple_entities_match_nostr_sdk(data: str) -> None:
    assert nip19.encode_note(data) == nostr_sdk.EventId.parse(data).to_bech32()


def test_long_tlv_strings_beyond_90_characters_decode() -> None:
    many = tuple(f"wss://relay{i}.example.com" for i in range(10))
    text = nip19.encode_nprofile(nip19.Profile("ab" * 32, many))
    assert len(text) > 90
    assert nip19.decode(text).value == nip19.Profile("ab" * 32, many)


def test_unknown_tlv_types_are_ignored() -> None:
    data = bytes((0, 32)) + bytes(32) + bytes((9, 3)) + b"xyz"
    decoded = nip19.decode(bech32.encode("nprofile", data))
    assert decoded.value == nip19.Profile("00" * 32)


def test_nostr_uri_prefix_is_accepted() -> None:
    example = EXAMPLES["npub"][0]
    assert nip19.decode("nostr:" + example["bech32"]).value == example["hex"]


def test_encode_inverts_decode() -> None:
    for example in EXAMPLES["npub"] + EXAMPLES["nprofile"]:
        assert nip19.encode(nip19.decode(example["bech32"])) == example["bech32"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "separator"),
        ("npub1", "separator"),
        ("npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjpth", "checksum"),
        ("npub10ELFcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg", "mixes"),
        ("npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptb", "invalid character"),
        (bech32.encode("npub", bytes(31)), "32 bytes"),
        (bech32.encode("nfoo", bytes(32)), "unknown NIP-19 prefix"),
        (bech32.encode("nprofile", bytes((0, 40, 1))), "truncated"),
        (bech32.encode("nprofile", bytes((0,))), "truncated"),
        (bech32.encode("nprofile", bytes((1, 1)) + b"x"), "missing pubkey"),
        (bech32.encode("nprofile", bytes((0, 31)) + bytes(31)), "pubkey must be 32 bytes"),
        (bech32.encode("nprofile", bytes((0, 32)) + bytes(32) + bytes((1, 1, 0xFF))), "ASCII"),
        (bech32.encode("nevent", bytes((0, 32)) + bytes(32) + bytes((3, 2, 0, 1))), "kind"),
        (bech32.encode("naddr", bytes((0, 1)) + b"d"), "missing author"),
        (
            bech32.encode(
                "naddr", bytes((0, 1, 0xFF, 2, 32)) + bytes(32) + bytes((3, 4, 0, 0, 0, 1))
            ),
            "UTF-8",
        ),
        ("n" * 6000, "limited to 5000"),
    ],
)
def test_malformed_input_gets_a_precise_error(text: str, message: str) -> None:
    with pytest.raises(Bech32Error, match=message):
        nip19.decode(text)


@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_but_bech32error(text: str) -> None:
    with contextlib.suppress(Bech32Error):
        nip19.decode(text)


def test_encoders_reject_bad_values() -> None:
    with pytest.raises(Bech32Error, match="64 lowercase hex"):
        nip19.encode_npub("xyz")
    with pytest.raises(Bech32Error, match="kind"):
        nip19.encode_naddr(nip19.AddressPointer("d", "ab" * 32, -1))
    with pytest.raises(Bech32Error, match="255 bytes"):
        nip19.encode_naddr(nip19.AddressPointer("d" * 300, "ab" * 32, 1))
    with pytest.raises(Bech32Error, match="ASCII"):
        nip19.encode_nprofile(nip19.Profile("ab" * 32, ("wss://é",)))
