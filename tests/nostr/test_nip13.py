"""NIP-13 proof of work: difficulty counting and mining, checked against nostr-sdk."""

from __future__ import annotations

import nostr_sdk
import orjson
import pytest

from dvmkit.errors import InvalidEvent
from dvmkit.nostr import nip13
from dvmkit.nostr.event import UnsignedEvent
from dvmkit.nostr.keys import Keys


def template(content: str = "hello", tags: tuple[tuple[str, ...], ...] = ()) -> UnsignedEvent:
    return UnsignedEvent(Keys.generate().public_key, 1_700_000_000, 1, tags, content)


def test_leading_zero_bits_of_the_nip13_example() -> None:
    example = "000000000e9d97a1ab09fc381030b346cdd7a142ad57e6df0b46dc9bef6c7e2d"
    assert nip13.leading_zero_bits(example) == 36
    assert nip13.leading_zero_bits(bytes.fromhex(example)) == 36
    assert nip13.leading_zero_bits("00" * 32) == 256
    assert nip13.leading_zero_bits("ff" + "00" * 31) == 0
    assert nip13.leading_zero_bits("01" + "00" * 31) == 7


@pytest.mark.parametrize("raw", ["zz", "0", "not hex"])
def test_leading_zero_bits_rejects_non_hex(raw: str) -> None:
    with pytest.raises(InvalidEvent):
        nip13.leading_zero_bits(raw)


@pytest.mark.parametrize("difficulty", [0, 1, 8, 13])
def test_mined_ids_have_the_work_nostr_sdk_counts(difficulty: int) -> None:
    event = template(tags=(("t", "pow"), ("nonce", "999", "1")))
    mined = nip13.mine(event, difficulty)
    assert mined is not None
    assert [t for t in mined.tags if t[0] == "nonce"] == [
        next(t for t in mined.tags if t[0] == "nonce")
    ]
    assert mined.tags[0] == ("t", "pow")
    assert (mined.pubkey, mined.created_at, mined.content) == (
        event.pubkey,
        event.created_at,
        event.content,
    )
    theirs = nostr_sdk.UnsignedEvent.from_json(mined.to_json())
    assert theirs.id().to_hex() == mined.id
    assert nostr_sdk.get_leading_zero_bits(bytes.fromhex(mined.id)) >= difficulty
    assert nip13.has_work(mined.id, mined.tags, difficulty)


def test_events_nostr_sdk_mined_pass_our_check() -> None:
    keys = nostr_sdk.Keys.generate()
    builder = nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "mined by nostr-sdk")
    unsigned = builder.finalize_unsigned(keys.public_key())
    mined = unsigned.mine(nostr_sdk.SingleThreadPow(), 10)
    ours = UnsignedEvent.from_dict(orjson.loads(mined.as_json()))
    assert ours.id == mined.id().to_hex()
    assert nip13.has_work(ours.id, ours.tags, 10)
    assert not nip13.has_work(ours.id, ours.tags, 11)  # the committed target is 10


def test_a_lower_committed_target_does_not_count() -> None:
    event = nip13.with_nonce(template(), 5, 4)
    assert nip13.committed_target(event.tags) == 4
    assert not nip13.has_work("00" * 32, event.tags, 8)
    assert nip13.committed_target((("nonce", "5", "x"),)) is None


def test_content_that_looks_like_the_placeholder_is_mined_correctly() -> None:
    event = template(content="\x000\x00 and \x001\x00", tags=(("x", "\x000\x00"),))
    mined = nip13.mine(event, 8)
    assert mined is not None
    assert mined.content == event.content
    assert nip13.leading_zero_bits(mined.id) >= 8


def test_mining_stops_when_asked() -> None:
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    assert nip13.mine(template(), 200, should_stop=stop, batch=16) is None
    assert calls == 3


@pytest.mark.parametrize("difficulty", [-1, 257])
def test_difficulty_out_of_range(difficulty: int) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        nip13.mine(template(), difficulty)
