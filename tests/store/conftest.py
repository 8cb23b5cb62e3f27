"""The backends the job-store conformance suite runs against.

``store_factory`` opens a new store object on the same database each time it is called, so
tests can close and reopen. Adding a backend (Postgres) is one more ``params`` entry and one
more branch here; the tests do not change.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dvmkit.store import JobStore, SQLiteJobStore

from .helpers import Clock, FakeClock, StoreFactory


@pytest.fixture(params=["sqlite"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "sqlite":
        path = tmp_path / "jobs.sqlite3"

        def sqlite(*, clock: Clock = time.time) -> JobStore:
            return SQLiteJobStore(path, clock=clock)

        return sqlite
    raise AssertionError(f"unknown backend {request.param}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
