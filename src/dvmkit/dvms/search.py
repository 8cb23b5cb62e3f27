"""``search``: full-text search over the notes a DVM indexes from its relays (kind 5302).

Request: the search text as input (an ``i`` tag of type ``text``, or the content). Params, as
the NIP-90 registry's kind 5302 names them: ``max_results`` (1-1000, default 20), ``since``
and ``until`` (unix seconds), ``users`` (a JSON list of pubkeys, hex or npub, or of ``p``
tags). Result: a JSON array of ``["e", id]`` tags, best match first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from dvmkit.dvms.notes import NoteIndex, check_max_results, check_time, e_tags
from dvmkit.errors import DVMError, JobError
from dvmkit.nostr.keys import Keys, parse_public_key
from dvmkit.provider import DVM

#: The most authors one ``users`` param may name.
MAX_USERS = 1_000


def build(
    *,
    relays: list[str] | tuple[str, ...],
    keys: Keys | None = None,
    index: NoteIndex | None = None,
    db: str | Path = ":memory:",
    lookback: int | None = None,
    **options: Any,
) -> DVM:
    """The search DVM.

    Args:
        relays: where it listens, publishes and indexes notes from.
        keys: its identity (a fresh one when omitted).
        index: the note index to use (``db`` and ``lookback`` then do not apply).
        db: the index's SQLite file, or ``":memory:"``.
        lookback: index stored notes at most this many seconds old; all when None.
        options: passed on to :class:`~dvmkit.provider.DVM` (``limits``, ``store_path``, ...).
    """
    notes = index if index is not None else NoteIndex(db, lookback=lookback)
    dvm = DVM(
        name="dvmkit search",
        about="Full-text search over the notes on its relays",
        categories=["search"],
        legacy_kinds=[5302],
        relays=relays,
        keys=keys,
        examples=[{"input": "bitcoin", "params": {"max_results": "10"}}],
        **options,
    )
    dvm.background(notes.feed)

    @dvm.job
    async def search(
        input: str,
        max_results: int = 20,
        since: int | None = None,
        until: int | None = None,
        users: str | None = None,
    ) -> list[list[str]]:
        limit = check_max_results(max_results)
        check_time("since", since)
        check_time("until", until)
        authors = parse_users(users) if users is not None else []
        await notes.ready.wait()  # bounded by the job's timeout
        try:
            ids = notes.search(input, limit=limit, since=since, until=until, authors=authors)
        except ValueError as exc:
            raise JobError("BAD_REQUEST", f"{exc}: send the words to look for") from None
        return e_tags(ids)

    return dvm


def parse_users(text: str) -> list[str]:
    """The pubkeys of a ``users`` param: a JSON list of pubkeys (hex or npub) or ``p`` tags.

    Raises:
        JobError: INVALID_PARAMETER naming what is wrong.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise JobError("INVALID_PARAMETER", "param 'users' must be a JSON list") from None
    if not isinstance(value, list) or len(value) > MAX_USERS:
        raise JobError(
            "INVALID_PARAMETER", f"param 'users' must be a JSON list of at most {MAX_USERS}"
        )
    out: list[str] = []
    for n, item in enumerate(value):
        if isinstance(item, list) and len(item) >= 2 and item[0] == "p":
            item = item[1]
        try:
            if not isinstance(item, str):
                raise TypeError
            out.append(parse_public_key(item))
        except (DVMError, TypeError):
            raise JobError(
                "INVALID_PARAMETER",
                f"param 'users' item {n} is not a pubkey (hex, npub or a p tag)",
            ) from None
    return list(dict.fromkeys(out))
