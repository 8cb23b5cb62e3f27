"""kill -9 while writing: every write whose await returned is in the file afterwards.

The writer (crash_writer.py) reports each commit on stdout only after the store answered it,
so what the parent read before the kill is a lower bound of what must survive.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from dvmkit.store import JobState, SQLiteJobStore

WRITER = Path(__file__).with_name("crash_writer.py")
REPORTS = 3000  # lines to read before the kill; the writer is far from done by then


async def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[list[str]] = []
    try:
        async with asyncio.timeout(60):
            while len(lines) < REPORTS:
                line = await proc.stdout.readline()
                assert line, (await proc.communicate())[1].decode()[-2000:]
                lines.append(line.decode().split())
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-stream, not finished

    inserted = {job: event for verb, job, event in lines if verb == "insert"}
    succeeded = {job: event for verb, job, event in lines if verb == "success"}
    assert inserted
    assert succeeded
    async with SQLiteJobStore(path) as store:
        for job_id, started in inserted.items():
            record = await store.get(job_id)
            assert record is not None
            events = [item.event_id for item in await store.job_events(job_id)]
            assert events[0] == started
            if job_id in succeeded:
                assert record.state is JobState.SUCCESS
                assert record.result_event_id == succeeded[job_id]
                assert events == [started, succeeded[job_id]]
        # Nothing was marked sent, so every event of every stored job is pending, in order.
        pending = await store.pending_outbox(limit=1_000_000)
        pending_ids = {item.event_id for item in pending}
        assert set(inserted.values()) | set(succeeded.values()) <= pending_ids
        # Jobs committed after the last line read are there too, and are consistent.
        for record in await store.unfinished():
            assert record.state is JobState.PROCESSING
            assert record.result_event_id is None
