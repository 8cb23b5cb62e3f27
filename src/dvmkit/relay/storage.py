"""The relay's event store: SQLite in WAL mode, with NIP-01 replacement and NIP-09 deletion.

One :class:`EventStore` belongs to one relay and is used from the event loop's thread only.
Writes happen inside :meth:`EventStore.transaction`; the relay groups every event that arrived
in one event-loop tick into one transaction and acknowledges them only after it commits, so an
``OK true`` survives a crash or ``kill -9`` (WAL with ``synchronous=NORMAL`` loses committed
transactions only on power loss, not when the process dies).

Single-letter tags (first value only, as NIP-01 indexes them) go into a side table so that
``#x`` filters are index lookups.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from dvmkit.nostr.event import Event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.kinds import KindClass, kind_class

#: NIP-59 gift wrap kinds, which NIP-59 asks relays to serve only to their recipient.
WRAP_KINDS = (1059, 21059)
_MAX_INT = 2**63 - 1  # SQLite integers are signed 64-bit; filters allow up to 2**64 - 1
_INLINE_VALUES = 64  # longer lists go through one json_each() parameter

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    pubkey TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    d_tag TEXT,
    expiration INTEGER,
    raw BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_address ON events(kind, pubkey, d_tag)
    WHERE d_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_pubkey ON events(pubkey, kind, created_at);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, created_at);
CREATE INDEX IF NOT EXISTS events_created ON events(created_at);
CREATE INDEX IF NOT EXISTS events_expiration ON events(expiration)
    WHERE expiration IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_value ON tags(name, value, seq);
CREATE INDEX IF NOT EXISTS tags_seq ON tags(seq);
CREATE TABLE IF NOT EXISTS deleted_ids (
    id TEXT PRIMARY KEY,
    pubkey TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deleted_addresses (
    kind INTEGER NOT NULL,
    pubkey TEXT NOT NULL,
    d_tag TEXT NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (kind, pubkey, d_tag)
) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


class SaveOutcome(enum.Enum):
    """What :meth:`EventStore.save` did with an event."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # this id is already stored
    SUPERSEDED = "superseded"  # a newer replaceable/addressable version is stored
    DELETED = "deleted"  # its author deleted it (NIP-09) before it arrived


def address_d_tag(event: Event) -> str | None:
    """The ``d`` part of the event's replacement address, or None for non-replaceable kinds."""
    cls = kind_class(event.kind)
    if cls is KindClass.REPLACEABLE:
        return ""
    if cls is KindClass.ADDRESSABLE:
        return event.tag_value("d") or ""
    return None


class EventStore:
    """SQLite event store (a file in WAL mode, or in memory when ``path`` is None)."""

    def __init__(self, path: str | Path | None = None) -> None:
        """Open or create the store.

        Args:
            path: the database file; ``None`` keeps everything in memory.

        Raises:
            sqlite3.Error: the file cannot be opened or is not a database.
        """
        self.path = None if path is None else Path(path)
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        #: Whether deleted_ids may have rows; only ever goes from False to True.
        self._deleted_ids = (
            self._db.execute("SELECT 1 FROM deleted_ids LIMIT 1").fetchone() is not None
        )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the body in one write transaction; commit on success, roll back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writes -------------------------------------------------------------------------------

    def save(self, event: Event, raw: bytes, *, expiration: int | None = None) -> SaveOutcome:
        """Store a verified, non-ephemeral event, applying NIP-01 replacement and NIP-09.

        Args:
            event: the verified event.
            raw: its JSON, served back verbatim.
            expiration: its NIP-40 expiration time, if any.

        Returns:
            What happened; only ``STORED`` means the event is now served.
        """
        db = self._db
        d_tag = address_d_tag(event)
        # NIP-09: a deletion request against a deletion request has no effect. The table is
        # empty on most relays, and then there is nothing to look up.
        if (
            self._deleted_ids
            and event.kind != 5
            and db.execute(
                "SELECT 1 FROM deleted_ids WHERE id = ? AND pubkey = ?", (event.id, event.pubkey)
            ).fetchone()
        ):
            # A stored event is never in deleted_ids (the deletion removed it), so checking
            # this before the duplicate check gives the same answers.
            return SaveOutcome.DELETED
        if d_tag is None:
            # Regular events: the unique id index finds duplicates as part of the insert.
            cursor = db.execute(
                "INSERT INTO events (id, pubkey, created_at, kind, d_tag, expiration, raw)"
                " VALUES (?, ?, ?, ?, NULL, ?, ?) ON CONFLICT (id) DO NOTHING",
                (event.id, event.pubkey, event.created_at, event.kind, expiration, raw),
            )
            if not cursor.rowcount:
                return SaveOutcome.DUPLICATE
            seq = cursor.lastrowid
        else:
            if db.execute("SELECT 1 FROM events WHERE id = ?", (event.id,)).fetchone():
                return SaveOutcome.DUPLICATE
            row = db.execute(
                "SELECT until FROM deleted_addresses WHERE kind = ? AND pubkey = ? AND d_tag = ?",
                (event.kind, event.pubkey, d_tag),
            ).fetchone()
            if row is not None and event.created_at <= row[0]:
                return SaveOutcome.DELETED
            old = db.execute(
                "SELECT seq, id, created_at FROM events"
                " WHERE kind = ? AND pubkey = ? AND d_tag = ?",
                (event.kind, event.pubkey, d_tag),
            ).fetchone()
            if old is not None:
                # NIP-01: the newest wins; on equal created_at the lowest id is kept.
                old_seq, old_id, old_created_at = old
                if event.created_at < old_created_at or (
                    event.created_at == old_created_at and event.id > old_id
                ):
                    return SaveOutcome.SUPERSEDED
                self._delete_seq(old_seq)
            seq = db.execute(
                "INSERT INTO events (id, pubkey, created_at, kind, d_tag, expiration, raw)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.id, event.pubkey, event.created_at, event.kind, d_tag, expiration, raw),
            ).lastrowid
        tags = [(seq, tag[0], tag[1]) for tag in event.tags if len(tag) > 1 and len(tag[0]) == 1]
        if len(tags) == 1:
            db.execute("INSERT INTO tags (seq, name, value) VALUES (?, ?, ?)", tags[0])
        elif tags:
            db.executemany("INSERT INTO tags (seq, name, value) VALUES (?, ?, ?)", tags)
        if event.kind == 5:
            self._apply_deletion(event)
        return SaveOutcome.STORED

    def _apply_deletion(self, request: Event) -> None:
        """NIP-09: delete what ``e`` and ``a`` tags name, if it belongs to the requester."""
        db = self._db
        for target in request.tag_values("e"):
            self._deleted_ids = True
            db.execute(
                "INSERT OR IGNORE INTO deleted_ids (id, pubkey) VALUES (?, ?)",
                (target, request.pubkey),
            )
            row = db.execute(
                "SELECT seq FROM events WHERE id = ? AND pubkey = ? AND kind != 5",
                (target, request.pubkey),
            ).fetchone()
            if row is not None:
                self._delete_seq(row[0])
        for address in request.tag_values("a"):
            parts = address.split(":", 2)
            if len(parts) != 3 or parts[1] != request.pubkey or not parts[0].isdigit():
                continue
            kind, d_tag = int(parts[0]), parts[2]
            # NIP-09: delete all versions up to the request's created_at, and keep refusing
            # versions that old, since they may be re-broadcast later.
            db.execute(
                "INSERT INTO deleted_addresses (kind, pubkey, d_tag, until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET until = max(until, excluded.until)",
                (kind, request.pubkey, d_tag, request.created_at),
            )
            for (seq,) in db.execute(
                "SELECT seq FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ?"
                " AND created_at <= ?",
                (kind, request.pubkey, d_tag, request.created_at),
            ).fetchall():
                self._delete_seq(seq)

    def _delete_seq(self, seq: int) -> None:
        self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
        self._db.execute("DELETE FROM tags WHERE seq = ?", (seq,))

    def purge_expired(self, now: int) -> int:
        """Delete events whose NIP-40 expiration has passed; return how many."""
        with self.transaction():
            rows = self._db.execute(
                "SELECT seq FROM events WHERE expiration IS NOT NULL AND expiration <= ?", (now,)
            ).fetchall()
            for (seq,) in rows:
                self._delete_seq(seq)
        return len(rows)

    # -- reads --------------------------------------------------------------------------------

    def query(
        self,
        filters: Sequence[Filter],
        *,
        now: int,
        default_limit: int,
        max_limit: int,
        wrap_recipients: frozenset[str] | None = None,
    ) -> list[bytes]:
        """Stored events matching any filter, newest first (ties: lowest id first).

        Args:
            filters: NIP-01 filters, OR-ed.
            now: the current time; events expired by then are not returned (NIP-40).
            default_limit: events per filter when the filter has no ``limit``.
            max_limit: cap on each filter's ``limit`` and on the whole answer.
            wrap_recipients: when not None, gift wraps (1059) are returned only if p-tagged
                to one of these pubkeys (NIP-59).

        Returns:
            The events' JSON, at most ``max_limit`` of them.
        """
        found: dict[str, tuple[int, bytes]] = {}
        for flt in filters:
            built = _where(flt, now, wrap_recipients)
            if built is None:
                continue
            where, params = built
            limit = min(default_limit if flt.limit is None else flt.limit, max_limit)
            if limit == 0:
                continue
            sql = (
                f"SELECT id, created_at, raw FROM events WHERE {where}"
                " ORDER BY created_at DESC, id ASC LIMIT ?"
            )
            for event_id, created_at, raw in self._db.execute(sql, (*params, limit)):
                found[event_id] = (created_at, raw)
        ordered = sorted(found.items(), key=lambda item: (-item[1][0], item[0]))
        return [raw for _, (_, raw) in ordered[:max_limit]]

    def count(
        self,
        filters: Sequence[Filter],
        *,
        now: int,
        wrap_recipients: frozenset[str] | None = None,
    ) -> int:
        """NIP-45: how many stored events match any filter (``limit`` is ignored)."""
        parts: list[str] = []
        params: list[Any] = []
        for flt in filters:
            built = _where(flt, now, wrap_recipients)
            if built is not None:
                parts.append(f"SELECT seq FROM events WHERE {built[0]}")
                params.extend(built[1])
        if not parts:
            return 0
        sql = f"SELECT count(*) FROM ({' UNION '.join(parts)})"
        row = self._db.execute(sql, params).fetchone()
        return int(row[0])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])


def _in(column: str, values: frozenset[str] | frozenset[int], params: list[Any]) -> str:
    if len(values) <= _INLINE_VALUES:
        params.extend(values)
        return f"{column} IN ({','.join('?' * len(values))})"
    params.append(orjson.dumps(list(values)))
    return f"{column} IN (SELECT value FROM json_each(?))"


def _where(
    flt: Filter, now: int, wrap_recipients: frozenset[str] | None
) -> tuple[str, list[Any]] | None:
    """SQL conditions for one filter, or None when it can match nothing."""
    if any(
        values is not None and not values for values in (flt.ids, flt.authors, flt.kinds)
    ) or any(not values for _, values in flt.tags):
        return None  # an empty list matches nothing
    params: list[Any] = []
    clauses = []
    if flt.ids is not None:
        clauses.append(_in("id", flt.ids, params))
    if flt.authors is not None:
        clauses.append(_in("pubkey", flt.authors, params))
    if flt.kinds is not None:
        clauses.append(_in("kind", flt.kinds, params))
    if flt.since is not None:
        clauses.append("created_at >= ?")
        params.append(min(flt.since, _MAX_INT))
    if flt.until is not None:
        clauses.append("created_at <= ?")
        params.append(min(flt.until, _MAX_INT))
    for letter, values in flt.tags:
        params.append(letter)
        inner = _in("value", values, params)
        clauses.append(f"seq IN (SELECT seq FROM tags WHERE name = ? AND {inner})")
    clauses.append("(expiration IS NULL OR expiration > ?)")
    params.append(now)
    if wrap_recipients is not None:
        params.extend(WRAP_KINDS)
        if wrap_recipients:
            inner = _in("value", wrap_recipients, params)
            clauses.append(
                "(kind NOT IN (?, ?) OR seq IN"
                f" (SELECT seq FROM tags WHERE name = 'p' AND {inner}))"
            )
        else:
            clauses.append("kind NOT IN (?, ?)")
    return " AND ".join(clauses), params
