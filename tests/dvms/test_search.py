"""The search DVM: notes indexed from the relay, searched by words, authors and time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from dvmkit.customer.request import ParamValue
from dvmkit.dvms import search
from dvmkit.dvms.notes import NoteIndex
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys

from .conftest import (
    FAST,
    WAY_NAMES,
    ask,
    client_on,
    contents,
    customer_on,
    e_list,
    error_of,
    every_way,
    note,
    publish_all,
    result_of,
)

WORDS = ["bitcoin", "nostr", "relay", "coffee", "zap", "garden"]


def corpus(authors: list[Keys], start: int) -> list[Event]:
    """Notes of two words each, by turns of author and a second apart."""
    notes = []
    for n in range(24):
        text = f"{WORDS[n % 6]} and {WORDS[(n // 6) % 6]}, note {n}"
        notes.append(note(authors[n % len(authors)], text, start + n))
    return notes


def ids(answer: Event) -> list[str]:
    tags = result_of(answer)
    assert isinstance(tags, list)
    assert all(isinstance(t, list) and len(t) == 2 and t[0] == "e" for t in tags), tags
    return [t[1] for t in tags]


async def test_search_finds_notes_by_words_authors_and_time(relay_url: str) -> None:
    authors = [Keys.generate(), Keys.generate()]
    start = int(time.time()) - 100
    notes = corpus(authors, start)
    await publish_all(relay_url, notes)
    index = NoteIndex()
    with_both = {e.id for e in notes if "bitcoin" in e.content and "nostr" in e.content}
    with_zap = [e for e in notes if "zap" in e.content]
    async with (
        search.build(relays=[relay_url], index=index, limits=FAST).running(),
        customer_on(relay_url) as customer,
    ):
        both = await ask(customer, 5302, text="Bitcoin NOSTR")
        by_author = await ask(
            customer,
            5302,
            text="zap",
            params=[("users", orjson.dumps([["p", authors[0].public_key]]).decode())],
        )
        windowed = await ask(
            customer,
            5302,
            text="zap",
            params=[("since", str(start + 5)), ("until", str(start + 15)), ("max_results", "2")],
        )
        # Live indexing: a note published now is found once the index has it.
        fresh = note(authors[1], "a brand new garden of relays", int(time.time()))
        await customer.publish(fresh)
        async with asyncio.timeout(10):
            await index.wait_indexed(fresh.id)
        live = await ask(customer, 5302, text="brand new")
        # FTS5 syntax in the text is only words: no error, no injection.
        hostile = await ask(customer, 5302, text='"zap" AND (bitcoin* -- ^')
    assert with_both
    assert set(ids(both)) == with_both
    assert set(ids(by_author)) == {e.id for e in with_zap if e.pubkey == authors[0].public_key}
    in_window = {e.id for e in with_zap if start + 5 <= e.created_at <= start + 15}
    assert len(ids(windowed)) == min(2, len(in_window))
    assert set(ids(windowed)) <= in_window
    assert ids(live) == [fresh.id]
    zap_and_bitcoin = {e.id for e in with_zap if "bitcoin" in e.content}
    assert zap_and_bitcoin
    assert set(ids(hostile)) == zap_and_bitcoin


@pytest.mark.parametrize(
    ("text", "params", "code"),
    [
        ("zap", [("users", "not json")], "INVALID_PARAMETER"),
        ("zap", [("users", '{"p": 1}')], "INVALID_PARAMETER"),
        ("zap", [("users", '["npub1nope"]')], "INVALID_PARAMETER"),
        ("zap", [("users", "[[1, 2]]")], "INVALID_PARAMETER"),
        ("zap", [("users", orjson.dumps(["a" * 64] * 1001).decode())], "INVALID_PARAMETER"),
        ("zap", [("max_results", "0")], "INVALID_PARAMETER"),
        ("zap", [("max_results", "1000000")], "INVALID_PARAMETER"),
        ("zap", [("since", "-5")], "INVALID_PARAMETER"),
        ("zap", [("until", "soon")], "INVALID_PARAMETER"),
        ("!!! ??? ...", [], "BAD_REQUEST"),
    ],
)
async def test_malformed_searches_get_precise_errors(
    relay_url: str, text: str, params: list[tuple[str, str]], code: str
) -> None:
    async with (
        search.build(relays=[relay_url], limits=FAST).running(),
        customer_on(relay_url) as customer,
    ):
        answer = await ask(customer, 5302, text=text, params=params)
    assert error_of(answer)[0] == code


async def test_the_index_can_live_in_a_file(tmp_path: Path, relay_url: str) -> None:
    author = Keys.generate()
    stored = note(author, "persistent garden", int(time.time()) - 10)
    await publish_all(relay_url, [stored])
    path = tmp_path / "idx" / "notes.sqlite3"
    async with (
        search.build(relays=[relay_url], db=path, limits=FAST).running(),
        customer_on(relay_url) as customer,
    ):
        answer = await ask(customer, 5302, text="garden")
    assert ids(answer) == [stored.id]
    reopened = NoteIndex(path)
    assert reopened.search("persistent", limit=5) == [stored.id]
    reopened.close()


async def test_search_through_the_customer_client_every_way(any_relay_url: str) -> None:
    relay = any_relay_url
    authors = [Keys.generate(), Keys.generate()]
    start = int(time.time()) - 1_000
    # Every note three words long, each word once: equal relevance, so newest first.
    words = ["garden", "relay", "coffee"]
    notes = [note(authors[n % 2], f"{words[n % 3]} note {n}", start + n) for n in range(18)]
    await publish_all(relay, notes)
    gardens = sorted(
        (e for e in notes if "garden" in e.content.split()), key=lambda e: -e.created_at
    )
    since, until = start + 2, start + 14
    narrowed = [
        e.id
        for e in gardens
        if e.pubkey == authors[0].public_key and since <= e.created_at <= until
    ][:2]
    params: dict[str, ParamValue] = {
        "users": orjson.dumps([authors[0].public_key]).decode(),
        "since": since,
        "until": until,
        "max_results": 2,
    }
    dvm = search.build(relays=[relay], limits=FAST)
    async with dvm.running(), client_on(relay) as client:
        every = await every_way(client, dvm, input="Garden")
        some = await every_way(client, dvm, input="garden", params=params)
    assert len(narrowed) == 2
    assert contents(every) == dict.fromkeys(WAY_NAMES, e_list([e.id for e in gardens]))
    assert contents(some) == dict.fromkeys(WAY_NAMES, e_list(narrowed))
