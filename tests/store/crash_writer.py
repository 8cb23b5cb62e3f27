"""Run by test_crash.py in a subprocess: write jobs until killed, reporting each commit.

``python crash_writer.py DB_PATH`` runs job cycles from 32 concurrent writers without end.
After each awaited write returns it prints one line, flushed at once:

    insert <job id> <event id>     the job and its "processing" event are committed
    success <job id> <event id>    the job is in success with this result event

The parent SIGKILLs it mid-stream; every line printed must then be found in the database.
"""

from __future__ import annotations

import asyncio
import os
import sys

from dvmkit.protocol.job import Dialect
from dvmkit.store import JobRecord, JobState, OutboxEvent, SQLiteJobStore

S = JobState


def _say(*words: str) -> None:
    sys.stdout.write(" ".join(words) + "\n")
    sys.stdout.flush()


async def _writer(store: SQLiteJobStore) -> None:
    while True:
        job_id = os.urandom(32).hex()
        record = JobRecord(job_id, Dialect.MODERN, "c" * 64, 25000, "{}", S.PROCESSING, 1.0, 1.0)
        started = OutboxEvent(os.urandom(32).hex(), '{"status":"processing"}', ("ws://x",))
        assert await store.insert(record, outbox=[started])
        _say("insert", job_id, started.event_id)
        result = OutboxEvent(os.urandom(32).hex(), '{"status":"success"}' + "r" * 2000, ())
        assert await store.transition(
            job_id,
            expect=S.PROCESSING,
            to=S.SUCCESS,
            result_event_id=result.event_id,
            outbox=[result],
        )
        _say("success", job_id, result.event_id)


async def main(path: str) -> None:
    async with SQLiteJobStore(path) as store, asyncio.TaskGroup() as tg:
        for _ in range(32):
            tg.create_task(_writer(store))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
