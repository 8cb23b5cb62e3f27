"""What only the SQLite backend promises: its file format, pragmas and group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dvmkit.errors import StoreError
from dvmkit.store import JobState, SQLiteJobStore
from dvmkit.store.schema import VERSION, job_row

from .helpers import make_record


async def test_the_file_is_in_wal_mode_with_our_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    async with SQLiteJobStore(path) as store:
        await store.insert(make_record())
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (VERSION,)
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
    finally:
        db.close()


async def test_concurrent_writes_share_transactions(tmp_path: Path) -> None:
    records = [make_record() for _ in range(500)]
    async with SQLiteJobStore(tmp_path / "jobs.sqlite3") as store:
        assert all(await asyncio.gather(*(store.insert(r) for r in records)))
        stats = store.stats()
        assert stats.backend == "sqlite"
        assert stats.writes == 500
        assert stats.largest_batch > 1
        assert stats.transactions < 500


async def test_in_memory_store_works_and_forgets(tmp_path: Path) -> None:
    record = make_record()
    async with SQLiteJobStore() as store:
        assert await store.insert(record)
        assert await store.get(record.id) == record
    async with SQLiteJobStore() as store:
        assert await store.get(record.id) is None
    assert repr(store) == "SQLiteJobStore(':memory:')"


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.write_bytes(b"this is not a database, just some text\n" * 100)
    with pytest.raises(StoreError, match="open failed: sqlite: file is not a database"):
        async with SQLiteJobStore(path):
            pass


async def test_a_directory_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unable to open database file"):
        async with SQLiteJobStore(tmp_path / "missing" / "jobs.sqlite3"):
            pass


async def test_a_newer_schema_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match=f"schema version {VERSION + 1}.*upgrade dvmkit"):
        async with SQLiteJobStore(path):
            pass


def test_synchronous_must_be_known() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteJobStore(synchronous="off")  # type: ignore[arg-type]


# The file format of dvmkit's schema version 1, as it wrote it (before private jobs).
SCHEMA_1 = """
CREATE TABLE jobs (
    id TEXT NOT NULL PRIMARY KEY,
    dialect TEXT NOT NULL,
    customer TEXT NOT NULL,
    kind INTEGER NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL,
    price_msat INTEGER NOT NULL,
    paid_msat INTEGER NOT NULL,
    payment_ref TEXT,
    error_code TEXT,
    error_message TEXT,
    result_event_id TEXT,
    attempts INTEGER NOT NULL
);
CREATE INDEX jobs_state ON jobs(state, updated_at);
CREATE INDEX jobs_customer ON jobs(customer, created_at);
CREATE INDEX jobs_expiry ON jobs(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    relays TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX outbox_job ON outbox(job_id, seq);
CREATE INDEX outbox_pending ON outbox(seq) WHERE sent_at IS NULL;
PRAGMA user_version = 1;
"""


# Version 2 added the envelope column; version 3 the payment fields and the ledger.
SCHEMA_2 = SCHEMA_1.replace(
    "PRAGMA user_version = 1;",
    "ALTER TABLE jobs ADD COLUMN envelope TEXT;\nPRAGMA user_version = 2;",
)


@pytest.mark.parametrize(("version", "script", "width"), [(1, SCHEMA_1, 16), (2, SCHEMA_2, 17)])
async def test_an_older_file_is_migrated_and_its_jobs_kept(
    tmp_path: Path, version: int, script: str, width: int
) -> None:
    path = tmp_path / "jobs.sqlite3"
    envelope = None if version == 1 else "simple:21059"
    old = make_record(
        state=JobState.SUCCESS, attempts=1, result_event_id="e" * 64, envelope=envelope
    )
    db = sqlite3.connect(path)
    try:
        db.executescript(script)
        db.execute(
            f"INSERT INTO jobs VALUES ({', '.join('?' * width)})",
            job_row(old)[:width],  # the columns that version had
        )
        db.commit()
    finally:
        db.close()

    private = make_record(envelope="nip59:1059")
    async with SQLiteJobStore(path) as store:
        migrated = await store.get(old.id)
        assert migrated == old
        assert migrated is not None
        assert migrated.envelope == envelope
        assert await store.insert(private)
        assert await store.get(private.id) == private
    async with SQLiteJobStore(path) as store:  # reopened: nothing to migrate twice
        assert await store.get(old.id) == old
        assert await store.get(private.id) == private
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (VERSION,)
        columns = [row[1] for row in db.execute("PRAGMA table_info(jobs)")]
        assert columns[-3:] == ["envelope", "payment_method", "refund"]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert "payments" in tables
    finally:
        db.close()
