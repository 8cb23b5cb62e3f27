"""The note index behind the ``search`` and ``trending`` DVMs: notes and what people did to them.

Kind-1 notes go into SQLite with an FTS5 full-text index; reactions (kind 7, NIP-25), reposts
(kind 6, NIP-18) and zap receipts (kind 9735, NIP-57) are recorded against the note they
point at. The index is fed by a subscription on the DVM's relays (:meth:`NoteIndex.feed`,
registered with :meth:`~dvmkit.provider.DVM.background`), stored events first, then live.
SQLite calls run on the event loop: each is one small statement on a local database.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from dvmkit.errors import JobError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import is_hex64
from dvmkit.relay.pool import RelayPool

NOTE = 1
REPOST = 6
REACTION = 7
ZAP = 9735
#: How much one engagement of each kind weighs in the trending score.
WEIGHTS = {REACTION: 1, REPOST: 2, ZAP: 3}
#: Words of a query used, at most (each is an FTS5 term; more only slows the match).
MAX_TERMS = 32
#: The most results one job may ask for.
MAX_RESULTS = 1_000
_WORD = re.compile(r"\w+", re.UNICODE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    n INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, pubkey TEXT NOT NULL,
    created_at INTEGER NOT NULL, content TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS notes_time ON notes (created_at);
CREATE VIRTUAL TABLE IF NOT EXISTS notes_fts USING fts5(
    content, content='notes', content_rowid='n');
CREATE TABLE IF NOT EXISTS engagement (
    source TEXT PRIMARY KEY, target TEXT NOT NULL, kind INTEGER NOT NULL,
    created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS engagement_target ON engagement (target);
"""


class NoteIndex:
    """Notes, full-text searchable, with their reactions, reposts and zaps.

    Args:
        path: the SQLite file, or ``":memory:"``.
        lookback: when feeding, ask relays for stored events this many seconds old at most;
            None asks for everything they keep.
    """

    def __init__(self, path: str | Path = ":memory:", *, lookback: int | None = None) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.executescript(_SCHEMA)
        self.lookback = lookback
        #: Set once the relays have sent their stored events (or could not).
        self.ready = asyncio.Event()
        self._changed = asyncio.Condition()

    def close(self) -> None:
        self._db.close()

    # -- writing --------------------------------------------------------------------------------

    def add(self, event: Event) -> bool:
        """Index one event; returns whether it was new and of a kind the index keeps."""
        if event.kind == NOTE:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO notes (id, pubkey, created_at, content) VALUES (?,?,?,?)",
                (event.id, event.pubkey, event.created_at, event.content),
            )
            if cur.rowcount != 1:
                return False
            self._db.execute(
                "INSERT INTO notes_fts (rowid, content) VALUES (?, ?)",
                (cur.lastrowid, event.content),
            )
            return True
        target = engaged_note(event)
        if target is None:
            return False
        cur = self._db.execute(
            "INSERT OR IGNORE INTO engagement (source, target, kind, created_at) VALUES (?,?,?,?)",
            (event.id, target, event.kind, event.created_at),
        )
        return cur.rowcount == 1

    async def feed(self, pool: RelayPool) -> None:
        """Index notes and engagement from ``pool``'s relays until cancelled."""
        flt: dict[str, object] = {"kinds": [NOTE, REPOST, REACTION, ZAP]}
        if self.lookback is not None:
            flt["since"] = int(time.time()) - self.lookback
        async with pool.subscribe(flt) as sub:
            async for event in sub.stored():
                self.add(event)
            self.ready.set()
            await self._notify()
            async for event in sub:
                if self.add(event):
                    await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_indexed(self, event_id: str) -> None:
        """Wait until the event ``event_id`` is in the index; bound it with a timeout."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.has(event_id))

    def has(self, event_id: str) -> bool:
        for table, column in (("notes", "id"), ("engagement", "source")):
            row = self._db.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (event_id,))
            if row.fetchone() is not None:
                return True
        return False

    # -- reading --------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int,
        since: int | None = None,
        until: int | None = None,
        authors: Sequence[str] = (),
    ) -> list[str]:
        """Ids of the notes that contain every word of ``query``, best match first.

        Raises:
            ValueError: the query has no words.
        """
        terms = _WORD.findall(query)[:MAX_TERMS]
        if not terms:
            raise ValueError("the search text has no words")
        # Each word quoted as an FTS5 string: the customer's text is never FTS5 syntax.
        match = " ".join('"' + t.replace('"', '""') + '"' for t in terms)
        sql = (
            "SELECT notes.id FROM notes_fts JOIN notes ON notes.n = notes_fts.rowid"
            " WHERE notes_fts MATCH ?"
        )
        args: list[object] = [match]
        if since is not None:
            sql += " AND notes.created_at >= ?"
            args.append(since)
        if until is not None:
            sql += " AND notes.created_at <= ?"
            args.append(until)
        if authors:
            sql += f" AND notes.pubkey IN ({','.join('?' * len(authors))})"
            args.extend(authors)
        sql += " ORDER BY bm25(notes_fts), notes.created_at DESC LIMIT ?"
        args.append(limit)
        return [row[0] for row in self._db.execute(sql, args)]

    def trending(self, *, limit: int, since: int) -> list[tuple[str, int]]:
        """Notes written since ``since`` with the highest engagement score, and their score."""
        weight = " ".join(f"WHEN {kind} THEN {w}" for kind, w in WEIGHTS.items())
        sql = (
            f"SELECT notes.id, SUM(CASE engagement.kind {weight} ELSE 0 END) AS score"
            " FROM notes JOIN engagement ON engagement.target = notes.id"
            " WHERE notes.created_at >= ? GROUP BY notes.id"
            " ORDER BY score DESC, notes.created_at DESC, notes.id LIMIT ?"
        )
        return [(row[0], int(row[1])) for row in self._db.execute(sql, (since, limit))]


def engaged_note(event: Event) -> str | None:
    """The note a reaction, repost or zap receipt is about, or None."""
    targets = [v for v in event.tag_values("e") if is_hex64(v)]
    if not targets:
        return None
    if event.kind == REACTION:
        # NIP-25: "-" is a downvote, not engagement worth ranking; the reacted-to note is the
        # last e tag (earlier ones may be the thread's root and parents).
        return None if event.content == "-" else targets[-1]
    if event.kind in (REPOST, ZAP):
        return targets[0]  # NIP-18 / NIP-57: the reposted or zapped event
    return None


def check_max_results(value: int) -> int:
    """Raises: JobError INVALID_PARAMETER unless 1 <= value <= MAX_RESULTS."""
    if not 1 <= value <= MAX_RESULTS:
        raise JobError("INVALID_PARAMETER", f"param 'max_results' must be 1 to {MAX_RESULTS}")
    return value


def check_time(name: str, value: int | None) -> int | None:
    """Raises: JobError INVALID_PARAMETER for a negative timestamp."""
    if value is not None and value < 0:
        raise JobError("INVALID_PARAMETER", f"param {name!r} must be a unix time (seconds)")
    return value


def e_tags(ids: Sequence[str]) -> list[list[str]]:
    """A NIP-90 result list: ``[["e", id], ...]`` (kinds 6300 and 6302)."""
    return [["e", event_id] for event_id in ids]
