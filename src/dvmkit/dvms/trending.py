"""``trending``: recent notes ranked by the reactions, reposts and zaps seen (kind 5300).

The DVM indexes kind-1 notes and the engagement that points at them (reactions weigh 1,
reposts 2, zap receipts 3; downvotes are not counted) from its relays, and ranks the notes
written since ``since`` (default: the last 24 hours). Params: ``max_results`` (1-1000, default
20), ``since`` (unix seconds); ``user`` (the registry's "recommend for") is accepted and
ignored: the ranking is the same for everyone. Result: a JSON array of ``["e", id]`` tags,
highest score first.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dvmkit.dvms.notes import NoteIndex, check_max_results, check_time, e_tags
from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM

DAY = 86_400


def build(
    *,
    relays: list[str] | tuple[str, ...],
    keys: Keys | None = None,
    index: NoteIndex | None = None,
    db: str | Path = ":memory:",
    lookback: int | None = 7 * DAY,
    window: int = DAY,
    **options: Any,
) -> DVM:
    """The trending DVM.

    Args:
        relays: where it listens, publishes and watches notes and engagement.
        keys: its identity (a fresh one when omitted).
        index: the note index to use (``db`` and ``lookback`` then do not apply).
        db: the index's SQLite file, or ``":memory:"``.
        lookback: index stored events at most this many seconds old; all when None.
        window: seconds back a request without ``since`` looks.
        options: passed on to :class:`~dvmkit.provider.DVM` (``limits``, ``store_path``, ...).
    """
    notes = index if index is not None else NoteIndex(db, lookback=lookback)
    dvm = DVM(
        name="dvmkit trending",
        about="Recent notes ranked by the reactions, reposts and zaps they got",
        categories=["discovery"],
        legacy_kinds=[5300],
        relays=relays,
        keys=keys,
        examples=[{"params": {"max_results": "10"}}],
        **options,
    )
    dvm.background(notes.feed)

    @dvm.job
    async def trending(
        max_results: int = 20, since: int | None = None, user: str | None = None
    ) -> list[list[str]]:
        limit = check_max_results(max_results)
        start = check_time("since", since)
        if start is None:
            start = int(time.time()) - window
        await notes.ready.wait()  # bounded by the job's timeout
        return e_tags([note for note, _score in notes.trending(limit=limit, since=start)])

    return dvm
