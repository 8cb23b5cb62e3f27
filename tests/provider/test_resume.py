"""What a DVM does on start with what an earlier run left in its job store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import Dialect
from dvmkit.provider import engine
from dvmkit.relay.pool import RelayPool
from dvmkit.store import JobRecord, JobState, OutboxEvent, SQLiteJobStore

from .conftest import WAIT, make_dvm


async def test_every_unsent_event_is_sent_again_not_only_the_first_page(
    our_relay_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page of two stands for the real page: five unsent events take three store calls.
    monkeypatch.setattr(engine, "_OUTBOX_PAGE", 2)
    dvm_keys, customer = Keys.generate(), Keys.generate()
    db = tmp_path / "jobs.sqlite3"
    unsent = [sign_event(dvm_keys, kind=1, content=f"unsent {n}") for n in range(5)]
    async with SQLiteJobStore(db) as store:
        for n, event in enumerate(unsent):
            request = sign_event(customer, kind=5050, tags=[["i", f"job {n}", "text"]])
            record = JobRecord(
                id=request.id,
                dialect=Dialect.LEGACY,
                customer=customer.public_key,
                kind=request.kind,
                request=request.to_json(),
                state=JobState.SUCCESS,  # finished: only its event is left to send
                created_at=time.time(),
                updated_at=time.time(),
            )
            assert await store.insert(record, outbox=[OutboxEvent.from_event(event)])

    dvm = make_dvm(our_relay_url, keys=dvm_keys, store_path=db)

    @dvm.job
    async def echo(input: str) -> str:
        return input

    # The DVM resumes before it listens: once running, the outbox was sent.
    async with dvm.running(), RelayPool(relays=[our_relay_url]) as pool:
        stored = await pool.fetch({"ids": [e.id for e in unsent]}, timeout=WAIT)
    assert sorted(e.id for e in stored) == sorted(e.id for e in unsent)
