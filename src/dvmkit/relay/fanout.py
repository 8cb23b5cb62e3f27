"""Live subscriptions and the index that finds which ones a new event matches.

Each filter is filed under its most selective field (ids, then authors, then a tag, then
kinds); a filter with none of those goes to a catch-all list. A new event is checked only
against the filters filed under its own id, author, kind and tag values, plus the catch-all
list, so fan-out does not scan every subscription in the common DVM case (``#p``, ``#e`` or
``kinds`` filters).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from dvmkit.nostr.event import Event
from dvmkit.nostr.filters import Filter

if TYPE_CHECKING:
    from dvmkit.relay.peer import Peer


#: ("id", v), ("author", v), ("kind", k) or ("tag", letter, v); only tag keys have three parts.
_Key = tuple[str, str] | tuple[str, int] | tuple[str, str, str]


@dataclass(eq=False, slots=True)
class Subscription:
    """One REQ of one connection; compared by identity."""

    peer: Peer
    sub_id: str
    filters: tuple[Filter, ...]
    #: ``["EVENT",<sub_id>,`` ready to be joined with an event's JSON.
    prefix: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.prefix = b'["EVENT",' + orjson.dumps(self.sub_id) + b","


@dataclass(eq=False, slots=True)
class _Entry:
    sub: Subscription
    filter: Filter


class SubscriptionIndex:
    """Finds the live subscriptions an event matches."""

    def __init__(self) -> None:
        self._by_key: defaultdict[_Key, set[_Entry]] = defaultdict(set)
        self._catch_all: set[_Entry] = set()
        self._keys: dict[Subscription, list[tuple[_Key | None, _Entry]]] = {}
        self._tag_letters: defaultdict[str, int] = defaultdict(int)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, sub: Subscription) -> None:
        filed: list[tuple[_Key | None, _Entry]] = []
        for flt in sub.filters:
            entry = _Entry(sub, flt)
            keys = _index_keys(flt)
            if keys is None:
                self._catch_all.add(entry)
                filed.append((None, entry))
                continue
            for key in keys:
                self._by_key[key].add(entry)
                filed.append((key, entry))
                if len(key) == 3:
                    self._tag_letters[str(key[1])] += 1
        self._keys[sub] = filed

    def remove(self, sub: Subscription) -> None:
        for key, entry in self._keys.pop(sub, ()):
            if key is None:
                self._catch_all.discard(entry)
                continue
            bucket = self._by_key.get(key)
            if bucket is not None:
                bucket.discard(entry)
                if not bucket:
                    del self._by_key[key]
            if len(key) == 3:
                letter = str(key[1])
                self._tag_letters[letter] -= 1
                if not self._tag_letters[letter]:
                    del self._tag_letters[letter]

    def matching(self, event: Event) -> list[Subscription]:
        """The subscriptions with at least one filter matching ``event``, each once."""
        found: dict[Subscription, None] = {}
        by_key = self._by_key

        def check(entries: set[_Entry] | None) -> None:
            if entries:
                for entry in entries:
                    if entry.sub not in found and entry.filter.matches(event):
                        found[entry.sub] = None

        check(self._catch_all)
        check(by_key.get(("id", event.id)))
        check(by_key.get(("author", event.pubkey)))
        check(by_key.get(("kind", event.kind)))
        letters = self._tag_letters
        if letters:
            for tag in event.tags:
                if len(tag) > 1 and tag[0] in letters:
                    check(by_key.get(("tag", tag[0], tag[1])))
        return list(found)


def _index_keys(flt: Filter) -> list[_Key] | None:
    """Keys under which to file ``flt``; None for the catch-all list.

    An empty list for a field means the filter matches nothing, so it is filed nowhere.
    """
    if flt.ids is not None:
        return [("id", v) for v in flt.ids]
    if flt.authors is not None:
        return [("author", v) for v in flt.authors]
    if flt.tags:
        letter, values = min(flt.tags, key=lambda item: len(item[1]))
        return [("tag", letter, v) for v in values]
    if flt.kinds is not None:
        return [("kind", k) for k in flt.kinds]
    return None
