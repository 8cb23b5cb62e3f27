"""One thread that owns a SQLite connection and group-commits the writes of many coroutines.

Coroutines submit operations (functions of the connection) through a queue and await a
future. The thread takes everything queued at once, runs all the writes in one transaction,
commits, and only then answers their futures (one hop back to the event loop per batch), so
an acknowledged write is on disk: WAL with ``synchronous=NORMAL`` keeps every committed
transaction across a crash or ``kill -9`` (only a power loss can take the last ones; use
``synchronous="full"`` for that). Reads submitted in the same batch run after the commit.

While one batch commits, the next one queues up: under load, thousands of jobs share a few
transactions instead of paying one commit each.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dvmkit.errors import StoreError

Op = Callable[[sqlite3.Connection], Any]
Answer = tuple["asyncio.Future[Any]", BaseException | None, Any]

T = TypeVar("T")

MAX_BATCH = 4096  # bounds one transaction's size and the wait of its first caller


class _Request:
    __slots__ = ("future", "job_id", "op", "what", "write")

    def __init__(
        self, op: Op, write: bool, future: asyncio.Future[Any], what: str, job_id: str | None
    ) -> None:
        self.op = op
        self.write = write
        self.future = future
        self.what = what
        self.job_id = job_id


class Worker:
    """The thread, its queue, and its counters (read by ``stats()``)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[Any] | None = None
        self._stopped: asyncio.Future[Any] | None = None
        self._closed = False
        self.pending = 0
        self.transactions = 0
        self.writes = 0
        self.reads = 0
        self.failures = 0
        self.largest_batch = 0

    async def start(self) -> None:
        """Start the thread and open the connection in it.

        Raises:
            StoreError: the database cannot be opened.
        """
        if self._loop is not None:
            raise StoreError("a job store can be opened only once")
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._stopped = self._loop.create_future()
        self._thread.start()
        try:
            await asyncio.shield(self._ready)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Run every operation already submitted, close the connection, end the thread."""
        if self._stopped is None:
            return
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        # Shielded: the thread finishes the queued writes whatever happens to this caller.
        await asyncio.shield(self._stopped)
        self._thread.join()

    def submit(
        self,
        op: Callable[[sqlite3.Connection], T],
        *,
        write: bool,
        what: str,
        job_id: str | None = None,
    ) -> asyncio.Future[T]:
        """Queue ``op`` and return a future of its result (awaitable by the caller).

        Raises:
            StoreError: the store is not open, or is closed.
        """
        if self._closed or self._loop is None:
            raise StoreError("the job store is not open", job_id=job_id)
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Request(op, write, future, what, job_id))
        self.pending += 1
        return future

    # -- the thread ---------------------------------------------------------------------------

    def _post(self, answers: list[Answer]) -> None:
        assert self._loop is not None
        # The loop may be gone if its owner never awaited close(); nobody is waiting then.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver, answers)

    def _deliver(self, answers: list[Answer]) -> None:
        for future, exc, value in answers:
            if future is not self._ready and future is not self._stopped:
                self.pending -= 1
            if future.done():  # the caller was cancelled; its write may still have committed
                continue
            if exc is None:
                future.set_result(value)
            else:
                future.set_exception(exc)

    def _main(self) -> None:
        assert self._ready is not None
        assert self._stopped is not None
        try:
            db = self._connect()
        except BaseException as exc:
            self._closed = True
            self._post([(self._ready, _translate(exc, "open", None), None)])
            self._post([(self._stopped, None, None)])
            return
        self._post([(self._ready, None, None)])
        stopping = False
        try:
            while not stopping:
                batch: list[_Request] = []
                item = self._queue.get()
                while True:
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                writes = [r for r in batch if r.write]
                answers = self._write(db, writes) if writes else []
                answers.extend(self._read(db, r) for r in batch if not r.write)
                if answers:
                    self._post(answers)
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            self._post([(self._stopped, None, None)])

    def _write(self, db: sqlite3.Connection, batch: list[_Request]) -> list[Answer]:
        try:
            db.execute("BEGIN IMMEDIATE")
            values = [r.op(db) for r in batch]
            db.execute("COMMIT")
        except Exception as exc:
            _rollback(db)
            if len(batch) == 1:
                self.failures += 1
                return [(batch[0].future, _translate(exc, batch[0].what, batch[0].job_id), None)]
            # Replay each write alone, so that one bad value fails only its own caller.
            answers: list[Answer] = []
            for request in batch:
                answers.extend(self._write(db, [request]))
            return answers
        self.transactions += 1
        self.writes += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        return [(r.future, None, v) for r, v in zip(batch, values, strict=True)]

    def _read(self, db: sqlite3.Connection, request: _Request) -> Answer:
        try:
            value = request.op(db)
        except Exception as exc:
            self.failures += 1
            return (request.future, _translate(exc, request.what, request.job_id), None)
        self.reads += 1
        return (request.future, None, value)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _translate(exc: BaseException, what: str, job_id: str | None) -> BaseException:
    """The one place foreign exceptions from the database become StoreErrors."""
    if isinstance(exc, StoreError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, UnicodeError):
        reason = "a string is not valid Unicode text (lone surrogate?)"
    elif isinstance(exc, OverflowError):
        reason = "an integer does not fit in 64 bits"
    elif isinstance(exc, sqlite3.Error):
        reason = f"sqlite: {exc}"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    error = StoreError(f"{what} failed: {reason}", job_id=job_id)
    error.__cause__ = exc
    return error
