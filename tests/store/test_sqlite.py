"""What only the SQLite backend promises: its file format, pragmas and group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dvmkit.errors import StoreError
from dvmkit.store import SQLiteJobStore
from dvmkit.store.schema import VERSION

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
