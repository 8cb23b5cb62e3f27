"""Differential filter test, as strfry does: random filters over a random corpus, our relay's
answers against a naive reference matcher written here, independently of ``Filter.matches``.
"""

from __future__ import annotations

import random
import time
from typing import Any

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys

from .wire import wire

NOW = int(time.time())
KINDS = [1, 7, 5100, 6100, 7000, 10002, 30078]
LETTERS = ["e", "p", "t", "d"]
DEFAULT_LIMIT = 500  # RelayLimits().default_limit; the corpus is smaller, so never reached


def reference_survivors(events: list[Event]) -> list[Event]:
    """Which events a NIP-01 relay keeps: the newest (then lowest id) per replaceable address."""
    best: dict[tuple[Any, ...], Event] = {}
    kept: list[Event] = []
    for event in events:
        if event.kind == 10002 or event.kind == 30078:
            d = ""
            if event.kind == 30078:
                d = next((t[1] for t in event.tags if t[0] == "d" and len(t) > 1), "")
            key = (event.kind, event.pubkey, d)
            current = best.get(key)
            if current is None or (event.created_at, _desc(event.id)) > (
                current.created_at,
                _desc(current.id),
            ):
                best[key] = event
        else:
            kept.append(event)
    return kept + list(best.values())


def _desc(event_id: str) -> tuple[int, ...]:
    # Larger tuple for a lower id, so that max() keeps the lowest id on equal created_at.
    return tuple(-int(c, 16) for c in event_id)


def reference_match(flt: dict[str, Any], event: Event) -> bool:
    for key, value in flt.items():
        if key == "ids" and event.id not in value:
            return False
        if key == "authors" and event.pubkey not in value:
            return False
        if key == "kinds" and event.kind not in value:
            return False
        if key == "since" and event.created_at < value:
            return False
        if key == "until" and event.created_at > value:
            return False
        if key.startswith("#"):
            firsts = [t[1] for t in event.tags if len(t) >= 2 and t[0] == key[1]]
            if not set(firsts) & set(value):
                return False
    return True


def reference_answer(filters: list[dict[str, Any]], stored: list[Event]) -> list[str]:
    chosen: dict[str, Event] = {}
    for flt in filters:
        matching = [e for e in stored if reference_match(flt, e)]
        matching.sort(key=lambda e: (-e.created_at, e.id))
        for event in matching[: flt.get("limit", DEFAULT_LIMIT)]:
            chosen[event.id] = event
    return [e.id for e in sorted(chosen.values(), key=lambda e: (-e.created_at, e.id))]


def random_corpus(rng: random.Random) -> list[Event]:
    authors = [Keys(rng.randbytes(32)) for _ in range(5)]
    values = {
        "e": [f"{rng.getrandbits(256):064x}" for _ in range(4)],
        "p": [a.public_key for a in authors],
        "t": ["a", "b", "c"],
        "d": ["x", "y"],
    }
    events = []
    for i in range(160):
        tags = []
        for _ in range(rng.randint(0, 4)):
            letter = rng.choice(LETTERS)
            tag = [letter, rng.choice(values[letter])]
            if rng.random() < 0.3:
                tag.append("extra")
            tags.append(tag)
        if rng.random() < 0.2:
            tags.append(["T", "upper"])
        events.append(
            sign_event(
                rng.choice(authors),
                kind=rng.choice(KINDS),
                content=f"event {i}",
                tags=tags,
                created_at=NOW - rng.randint(0, 40),
            )
        )
    return events


def random_filter(rng: random.Random, corpus: list[Event]) -> dict[str, Any]:
    flt: dict[str, Any] = {}
    if rng.random() < 0.2:
        flt["ids"] = [e.id for e in rng.sample(corpus, rng.randint(0, 6))]
    if rng.random() < 0.4:
        flt["authors"] = sorted({e.pubkey for e in rng.sample(corpus, rng.randint(1, 3))})
    if rng.random() < 0.5:
        flt["kinds"] = rng.sample(KINDS, rng.randint(1, 3))
    for letter in ("e", "p", "t", "d", "T"):
        if rng.random() < 0.2:
            pool = sorted({t[1] for e in corpus for t in e.tags if t[0] == letter})
            flt["#" + letter] = rng.sample(pool, min(len(pool), rng.randint(1, 2)))
    if rng.random() < 0.3:
        flt["since"] = NOW - rng.randint(0, 40)
    if rng.random() < 0.3:
        flt["until"] = NOW - rng.randint(0, 40)
    if rng.random() < 0.4:
        flt["limit"] = rng.randint(0, 30)
    return flt


async def test_random_filters_match_the_reference(our_relay: str) -> None:
    rng = random.Random(20251121)
    corpus = random_corpus(rng)
    async with wire(our_relay) as conn:
        for event in corpus:
            ok = await conn.publish(event)
            assert ok[1] == event.id
        stored = reference_survivors(corpus)
        checked = 0
        for n in range(400):
            filters = [random_filter(rng, corpus) for _ in range(rng.randint(1, 3))]
            got, end = await conn.fetch(f"q{n}", *filters)
            assert end == ["EOSE", f"q{n}"]
            assert [e["id"] for e in got] == reference_answer(filters, stored), filters
            unlimited = [{k: v for k, v in f.items() if k != "limit"} for f in filters]
            expected_count = len(reference_answer(unlimited, stored))
            assert await conn.count(f"c{n}", *filters) == [
                "COUNT",
                f"c{n}",
                {"count": expected_count},
            ]
            checked += bool(got)
        assert checked > 100  # the random filters are not all empty
