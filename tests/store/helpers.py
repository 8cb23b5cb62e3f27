"""Values shared by the job-store tests: a hand-moved clock, plausible jobs, signed events."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import Dialect
from dvmkit.store import JobRecord, JobState, JobStore, OutboxEvent

Clock = Callable[[], float]
T0 = 1_763_600_000.0
PROVIDER = Keys.generate()


class StoreFactory(Protocol):
    """Opens a new store object on the same database at every call."""

    def __call__(self, *, clock: Clock = time.time) -> JobStore: ...


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_id() -> str:
    return os.urandom(32).hex()


def make_record(
    *,
    id: str | None = None,
    state: JobState = JobState.RECEIVED,
    created_at: float = T0,
    customer: str = "a" * 64,
    **fields: Any,
) -> JobRecord:
    """A plausible job: a legacy 5050 text-generation request, plus any field overrides."""
    jid = new_id() if id is None else id
    request = (
        f'{{"id":"{jid}","pubkey":"{customer}","created_at":1763600000,"kind":5050,'
        '"tags":[["i","Write a haiku","text"],["param","max_tokens","64"]],'
        f'"content":"","sig":"{"b" * 128}"}}'
    )
    record = JobRecord(
        id=jid,
        dialect=Dialect.LEGACY,
        customer=customer,
        kind=5050,
        request=request,
        state=state,
        created_at=created_at,
        updated_at=created_at,
    )
    return dataclasses.replace(record, **fields)


def feedback(job_id: str, status: str, *, relays: tuple[str, ...] = ()) -> OutboxEvent:
    """A real signed kind 7000 feedback event for the outbox."""
    event = sign_event(
        PROVIDER,
        kind=7000,
        content="",
        tags=[["status", status], ["e", job_id], ["p", "a" * 64]],
        created_at=int(T0),
    )
    return OutboxEvent.from_event(event, relays)
