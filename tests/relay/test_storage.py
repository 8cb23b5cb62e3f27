"""EventStore on its own: replacement, deletion, expiration, large filters, persistence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.relay.storage import EventStore, SaveOutcome

NOW = 1_700_000_000


@pytest.fixture
def store() -> Iterator[EventStore]:
    # Closed explicitly: Python 3.13 warns about sqlite connections left to the collector.
    opened = EventStore()
    try:
        yield opened
    finally:
        opened.close()


def save(store: EventStore, event: Event, expiration: int | None = None) -> SaveOutcome:
    with store.transaction():
        return store.save(event, event.to_json_bytes(), expiration=expiration)


def query(store: EventStore, *filters: Filter, now: int = NOW) -> list[Event]:
    raws = store.query(filters, now=now, default_limit=500, max_limit=5000)
    return [Event.from_json(raw) for raw in raws]


def test_save_query_count_and_duplicate(store: EventStore) -> None:
    keys = Keys.generate()
    event = sign_event(
        keys, kind=1, content="x", tags=[["t", "a"], ["e", "f" * 64]], created_at=NOW
    )
    assert save(store, event) is SaveOutcome.STORED
    assert save(store, event) is SaveOutcome.DUPLICATE
    assert query(store, Filter.build(tags={"t": ["a"]})) == [event]
    assert query(store, Filter.build(tags={"t": ["b"]})) == []
    assert (
        store.count([Filter.build(kinds=[1]), Filter.build(authors=[keys.public_key])], now=NOW)
        == 1
    )
    assert len(store) == 1


def test_empty_lists_match_nothing(store: EventStore) -> None:
    save(store, sign_event(Keys.generate(), kind=1, created_at=NOW))
    assert query(store, Filter.build(kinds=[])) == []
    assert query(store, Filter.build(tags={"t": []})) == []
    assert store.count([Filter.build(ids=[])], now=NOW) == 0


def test_long_value_lists_and_huge_timestamps(store: EventStore) -> None:
    keys = [Keys.generate() for _ in range(3)]
    events = [sign_event(k, kind=1, created_at=NOW) for k in keys]
    for event in events:
        save(store, event)
    authors = [k.public_key for k in keys] + [f"{i:064x}" for i in range(500)]
    flt = Filter.build(authors=authors, since=0, until=2**64 - 1)
    assert {e.id for e in query(store, flt)} == {e.id for e in events}


def test_replaceable_rules(store: EventStore) -> None:
    keys = Keys.generate()
    new = sign_event(keys, kind=3, created_at=NOW)
    old = sign_event(keys, kind=3, created_at=NOW - 1)
    assert save(store, new) is SaveOutcome.STORED
    assert save(store, old) is SaveOutcome.SUPERSEDED
    assert query(store, Filter.build(kinds=[3])) == [new]


def test_expired_rows_are_hidden_then_purged(store: EventStore) -> None:
    event = sign_event(Keys.generate(), kind=1, created_at=NOW)
    save(store, event, expiration=NOW + 10)
    assert query(store, Filter(), now=NOW) == [event]
    assert query(store, Filter(), now=NOW + 10) == []
    assert store.purge_expired(NOW + 10) == 1
    assert len(store) == 0


def test_deletion_of_a_deletion_has_no_effect(store: EventStore) -> None:
    keys = Keys.generate()
    note = sign_event(keys, kind=1, created_at=NOW)
    save(store, note)
    deletion = sign_event(keys, kind=5, tags=[["e", note.id]], created_at=NOW)
    save(store, deletion)
    undo = sign_event(keys, kind=5, tags=[["e", deletion.id]], created_at=NOW + 1)
    save(store, undo)
    assert {e.id for e in query(store, Filter())} == {deletion.id, undo.id}


def test_file_store_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite3"
    store = EventStore(path)
    events = [sign_event(Keys.generate(), kind=1, created_at=NOW) for _ in range(5)]
    for event in events:
        save(store, event)
    store.close()
    reopened = EventStore(path)
    assert {e.id for e in query(reopened, Filter())} == {e.id for e in events}
    reopened.close()
