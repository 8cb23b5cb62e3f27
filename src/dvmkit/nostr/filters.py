"""NIP-01 filters: parsing, serialization and matching.

Within one filter every given field must match (AND); a list of filters matches an event when
any filter does (OR). ``since`` and ``until`` are inclusive. ``limit`` only bounds the initial
query of stored events, so :meth:`Filter.matches` ignores it. A tag filter ``#x`` matches the
first value of tags named ``x``, which is all relays index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dvmkit.errors import InvalidFilter
from dvmkit.nostr.event import MAX_CREATED_AT, Event
from dvmkit.nostr.keys import is_hex64
from dvmkit.nostr.kinds import MAX_KIND

# NIP-01: ids, authors, #e and #p must be exact 64-character lowercase hex.
_HEX_TAGS = frozenset({"e", "p"})
_KNOWN = frozenset({"ids", "authors", "kinds", "since", "until", "limit", "search"})


@dataclass(frozen=True, slots=True)
class Filter:
    """One NIP-01 filter. ``None`` means "any"; an empty set matches nothing."""

    ids: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    kinds: frozenset[int] | None = None
    tags: tuple[tuple[str, frozenset[str]], ...] = ()
    since: int | None = None
    until: int | None = None
    limit: int | None = None
    search: str | None = None

    @classmethod
    def build(
        cls,
        *,
        ids: Iterable[str] | None = None,
        authors: Iterable[str] | None = None,
        kinds: Iterable[int] | None = None,
        tags: Mapping[str, Iterable[str]] | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> Filter:
        """Build and validate a filter from plain iterables, e.g. ``tags={"p": [pubkey]}``."""
        data: dict[str, Any] = {}
        if ids is not None:
            data["ids"] = list(ids)
        if authors is not None:
            data["authors"] = list(authors)
        if kinds is not None:
            data["kinds"] = list(kinds)
        for letter, values in (tags or {}).items():
            data["#" + letter] = list(values)
        for name, value in (("since", since), ("until", until), ("limit", limit)):
            if value is not None:
                data[name] = value
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> Filter:
        """Parse a filter object from a REQ or COUNT message.

        Raises:
            InvalidFilter: unknown fields, wrong types, or malformed ids/keys.
        """
        if not isinstance(data, Mapping):
            raise InvalidFilter("a filter must be a JSON object")
        tags: list[tuple[str, frozenset[str]]] = []
        for key, value in data.items():
            if not isinstance(key, str):
                raise InvalidFilter("filter keys must be strings")
            if key.startswith("#"):
                letter = key[1:]
                if len(letter) != 1 or not letter.isascii() or not letter.isalpha():
                    raise InvalidFilter(f"tag filter {key!r} must be '#' and one letter")
                values = _strings(key, value)
                if letter in _HEX_TAGS:
                    _check_hex(key, values)
                tags.append((letter, frozenset(values)))
            elif key not in _KNOWN:
                raise InvalidFilter(f"unsupported filter field {key!r}")
        ids = _optional_hex(data, "ids")
        authors = _optional_hex(data, "authors")
        kinds: frozenset[int] | None = None
        if "kinds" in data:
            raw = data["kinds"]
            if not isinstance(raw, list) or any(
                type(k) is not int or not 0 <= k <= MAX_KIND for k in raw
            ):
                raise InvalidFilter(f"'kinds' must be a list of integers in [0, {MAX_KIND}]")
            kinds = frozenset(raw)
        search = data.get("search")
        if search is not None and not isinstance(search, str):
            raise InvalidFilter("'search' must be a string")
        return cls(
            ids=ids,
            authors=authors,
            kinds=kinds,
            tags=tuple(sorted(tags)),
            since=_optional_int(data, "since", MAX_CREATED_AT),
            until=_optional_int(data, "until", MAX_CREATED_AT),
            limit=_optional_int(data, "limit", 2**31 - 1),
            search=search,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ids is not None:
            out["ids"] = sorted(self.ids)
        if self.authors is not None:
            out["authors"] = sorted(self.authors)
        if self.kinds is not None:
            out["kinds"] = sorted(self.kinds)
        for letter, values in self.tags:
            out["#" + letter] = sorted(values)
        for name in ("since", "until", "limit", "search"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def tag_values(self, letter: str) -> frozenset[str] | None:
        for name, values in self.tags:
            if name == letter:
                return values
        return None

    def matches(self, event: Event) -> bool:
        """True when ``event`` satisfies every field of this filter (``limit`` aside)."""
        if self.ids is not None and event.id not in self.ids:
            return False
        if self.authors is not None and event.pubkey not in self.authors:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.since is not None and event.created_at < self.since:
            return False
        if self.until is not None and event.created_at > self.until:
            return False
        for letter, values in self.tags:
            if not any(
                len(tag) > 1 and tag[0] == letter and tag[1] in values for tag in event.tags
            ):
                return False
        return True


def matches_any(filters: Sequence[Filter], event: Event) -> bool:
    return any(f.matches(event) for f in filters)


def _strings(key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidFilter(f"{key!r} must be a list of strings")
    return value


def _check_hex(key: str, values: list[str]) -> None:
    for v in values:
        if not is_hex64(v):
            raise InvalidFilter(f"{key!r} values must be 64 lowercase hex characters")


def _optional_hex(data: Mapping[str, Any], key: str) -> frozenset[str] | None:
    if key not in data:
        return None
    values = _strings(key, data[key])
    _check_hex(key, values)
    return frozenset(values)


def _optional_int(data: Mapping[str, Any], key: str, maximum: int) -> int | None:
    if key not in data:
        return None
    value = data[key]
    if type(value) is not int or not 0 <= value <= maximum:
        raise InvalidFilter(f"{key!r} must be an integer in [0, {maximum}]")
    return value
