"""NIP-13 proof of work: count an id's leading zero bits, and mine a ``nonce`` tag for them.

NIP-13 measures work as the number of leading zero bits of the event id and records it in a
``["nonce", "<nonce>", "<target difficulty>"]`` tag, so a miner cannot pass off a lucky low
target as a high one. Mining changes only that tag: the id is the sha256 of the NIP-01
serialization, so the bytes before and after the nonce value are fixed and hashed once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from dvmkit.errors import InvalidEvent
from dvmkit.nostr.event import Tags, UnsignedEvent, serialize

#: Hashes tried between two checks of ``should_stop`` (a few milliseconds of work).
BATCH = 4096


def leading_zero_bits(event_id: str | bytes) -> int:
    """The number of leading zero bits of an id (hex string or 32 bytes), NIP-13's difficulty.

    Raises:
        InvalidEvent: ``event_id`` is not hex.
    """
    if isinstance(event_id, str):
        try:
            raw = bytes.fromhex(event_id)
        except ValueError:
            raise InvalidEvent("an event id must be hex") from None
    else:
        raw = event_id
    bits = 0
    for byte in raw:
        if byte:
            return bits + 8 - byte.bit_length()
        bits += 8
    return bits


def committed_target(tags: Tags) -> int | None:
    """The target difficulty a ``nonce`` tag commits to (its third value), or None."""
    for tag in tags:
        if tag[0] == "nonce" and len(tag) >= 3:
            try:
                return int(tag[2])
            except ValueError:
                return None
    return None


def has_work(event_id: str, tags: Tags, difficulty: int) -> bool:
    """True when the id has ``difficulty`` leading zero bits and the nonce tag commits to at
    least that target (NIP-13: reject events whose committed target is below what you ask)."""
    target = committed_target(tags)
    return target is not None and target >= difficulty and leading_zero_bits(event_id) >= difficulty


def with_nonce(event: UnsignedEvent, nonce: int, target: int) -> UnsignedEvent:
    """``event`` with its nonce tag (any earlier one replaced) set to ``nonce`` and ``target``."""
    tags = (*tuple(t for t in event.tags if t[0] != "nonce"), ("nonce", str(nonce), str(target)))
    return UnsignedEvent(event.pubkey, event.created_at, event.kind, tags, event.content)


def mine(
    event: UnsignedEvent,
    difficulty: int,
    *,
    start: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
    batch: int = BATCH,
) -> UnsignedEvent | None:
    """Find a nonce that gives ``event`` an id with ``difficulty`` leading zero bits.

    The pubkey, created_at, kind, content and other tags are kept, so the owner of the
    pubkey can sign the result. Blocking CPU work: run it in a thread or process.

    Args:
        event: the event to mine (an earlier nonce tag is replaced).
        difficulty: leading zero bits wanted, 0-256.
        start: the first nonce tried.
        should_stop: polled every ``batch`` hashes; when it returns True mining stops.

    Returns:
        The mined event, or None when ``should_stop`` ended the search first.

    Raises:
        ValueError: ``difficulty`` is outside 0-256.
    """
    if not 0 <= difficulty <= 256:
        raise ValueError("difficulty must be between 0 and 256 bits")
    head, tail = _split(with_nonce(event, 0, difficulty))
    prefix = hashlib.sha256(head)
    full, rest = divmod(difficulty, 8)
    zero = bytes(full)
    limit = 0x100 >> rest  # the next byte must be below this
    nonce = start
    while not should_stop():
        for nonce in range(nonce, nonce + batch):  # noqa: B020 - resumes where it stopped
            h = prefix.copy()
            h.update(b"%d" % nonce + tail)
            digest = h.digest()
            if digest[:full] == zero and (rest == 0 or digest[full] < limit):
                return with_nonce(event, nonce, difficulty)
        nonce += 1
    return None


def _split(template: UnsignedEvent) -> tuple[bytes, bytes]:
    """The serialization before and after the nonce value (quotes included in each side)."""
    for n in range(1_000):
        # A mark made of control characters, which JSON escapes; tried until it occurs once
        # (another tag or the content could hold the same text).
        mark = f"\x00{n}\x00"
        tags = (*template.tags[:-1], ("nonce", mark, template.tags[-1][2]))
        raw = serialize(template.pubkey, template.created_at, template.kind, tags, template.content)
        quoted = serialize("", 0, 0, (), mark)[len(b'[0,"",0,0,[],') : -1]
        if raw.count(quoted) == 1:
            head, _, tail = raw.partition(quoted)
            return head + b'"', b'"' + tail
    raise InvalidEvent("the event cannot be mined: it repeats every nonce placeholder")
