"""The default job store: one SQLite file in WAL mode, written by one thread.

::

    async with SQLiteJobStore("jobs.sqlite3") as store:
        if await store.insert(record, outbox=[OutboxEvent.from_event(processing)]):
            ...
        await store.transition(job_id, expect=JobState.PROCESSING, to=JobState.SUCCESS,
                               result_event_id=result.id, outbox=[OutboxEvent.from_event(result)])

All database work happens on the store's thread (:mod:`dvmkit.store.worker`), which commits
the writes of many coroutines together. Use one store per file: a second process writing the
same file would wait on SQLite's lock (``busy_timeout``) and then fail.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from dvmkit.store import schema
from dvmkit.store.base import (
    KEEP,
    OWED,
    JobRecord,
    JobStore,
    Keep,
    OutboxEvent,
    OutboxItem,
    PaymentEntry,
    StoreStats,
)
from dvmkit.store.lifecycle import JobState, check_transition
from dvmkit.store.worker import Worker

__all__ = ["SQLiteJobStore"]

_EXPIRABLE = (JobState.RECEIVED.value, JobState.PAYMENT_REQUIRED.value, JobState.QUEUED.value)
_FIELDS = (
    "expires_at",
    "price_msat",
    "paid_msat",
    "payment_ref",
    "error_code",
    "error_message",
    "result_event_id",
    "payment_method",
    "refund",
)


class SQLiteJobStore(JobStore):
    """A :class:`~dvmkit.store.base.JobStore` in a SQLite file (or in memory).

    The methods are documented on :class:`~dvmkit.store.base.JobStore`.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        synchronous: Literal["normal", "full"] = "normal",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the store; ``async with`` opens it.

        Args:
            path: the database file, created if missing; ``None`` keeps the jobs in memory
                (tests only: they are gone when the store closes).
            synchronous: ``"normal"`` survives a crash of the process; ``"full"`` also a
                power loss, at the price of an fsync per transaction.
            clock: where ``updated_at`` (and outbox times) come from.
        """
        if synchronous not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        self.path = None if path is None else Path(path)
        self._synchronous = synchronous
        self._clock = clock
        name = "dvmkit-store" if path is None else f"dvmkit-store:{self.path}"
        self._worker = Worker(self._connect, name=name)

    def __repr__(self) -> str:
        return f"SQLiteJobStore({str(self.path) if self.path else ':memory:'!r})"

    def _connect(self) -> sqlite3.Connection:
        # Runs on the worker thread, which then owns the connection.
        db = sqlite3.connect(
            ":memory:" if self.path is None else str(self.path), isolation_level=None
        )
        try:
            if self.path is not None:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            db.execute("PRAGMA busy_timeout=5000")
            schema.create(db)
        except BaseException:
            db.close()
            raise
        return db

    async def __aenter__(self) -> Self:
        await self._worker.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._worker.stop()

    # -- writes -------------------------------------------------------------------------------

    async def insert(self, record: JobRecord, *, outbox: Sequence[OutboxEvent] = ()) -> bool:
        events = tuple(outbox)
        clock = self._clock

        def op(db: sqlite3.Connection) -> bool:
            if db.execute(schema.INSERT_JOB, schema.job_row(record)).rowcount != 1:
                return False
            if events:
                db.executemany(schema.INSERT_OUTBOX, schema.outbox_rows(record.id, events, clock()))
            return True

        return await self._worker.submit(op, write=True, what="insert", job_id=record.id)

    async def transition(
        self,
        job_id: str,
        *,
        expect: JobState | Collection[JobState],
        to: JobState,
        outbox: Sequence[OutboxEvent] = (),
        expires_at: float | Keep | None = KEEP,
        price_msat: int | Keep = KEEP,
        paid_msat: int | Keep = KEEP,
        payment_ref: str | Keep | None = KEEP,
        error_code: str | Keep | None = KEEP,
        error_message: str | Keep | None = KEEP,
        result_event_id: str | Keep | None = KEEP,
        payment_method: str | Keep | None = KEEP,
        refund: str | Keep | None = KEEP,
        payment: PaymentEntry | None = None,
        add_attempt: bool = False,
    ) -> bool:
        states = (expect,) if isinstance(expect, JobState) else tuple(expect)
        check_transition(states, to)
        if payment is not None and payment.job_id != job_id:
            # The ledger row is the job's: a mismatch is a caller's bug, not a payment to hide.
            raise ValueError(f"payment {payment.key} is for job {payment.job_id}, not {job_id}")
        given = (
            expires_at,
            price_msat,
            paid_msat,
            payment_ref,
            error_code,
            error_message,
            result_event_id,
            payment_method,
            refund,
        )
        sets = ["state = ?", "updated_at = ?"]
        values: list[Any] = [to.value, 0.0]  # updated_at is read from the clock at commit
        for name, value in zip(_FIELDS, given, strict=True):
            if value is not KEEP:
                sets.append(f"{name} = ?")
                values.append(value)
        if add_attempt:
            sets.append("attempts = attempts + 1")
        sql = (
            f"UPDATE jobs SET {', '.join(sets)}"
            f" WHERE id = ? AND state IN ({', '.join('?' * len(states))})"
        )
        values.append(job_id)
        values.extend(JobState(s).value for s in states)
        events = tuple(outbox)
        clock = self._clock

        def op(db: sqlite3.Connection) -> bool:
            now = clock()
            values[1] = now
            if payment is not None:
                row = (payment.key, job_id, payment.method, payment.amount_msat, now)
                if db.execute(schema.INSERT_PAYMENT, row).rowcount != 1:
                    return False  # this payment was entered before: it counts once
            if db.execute(sql, values).rowcount != 1:
                if payment is not None:
                    db.execute("DELETE FROM payments WHERE key = ?", (payment.key,))
                return False
            if events:
                db.executemany(schema.INSERT_OUTBOX, schema.outbox_rows(job_id, events, now))
            return True

        return await self._worker.submit(op, write=True, what="transition", job_id=job_id)

    async def late_payment(self, payment: PaymentEntry) -> bool:
        clock = self._clock
        marks = ", ".join("?" * len(schema.FINISHED))
        update = (
            "UPDATE jobs SET paid_msat = ?, payment_method = ?, refund = ?, updated_at = ?"
            f" WHERE id = ? AND paid_msat = 0 AND state IN ({marks})"
        )

        def op(db: sqlite3.Connection) -> bool:
            now = clock()
            row = (payment.key, payment.job_id, payment.method, payment.amount_msat, now)
            if db.execute(schema.INSERT_PAYMENT, row).rowcount != 1:
                return False
            values = (payment.amount_msat, payment.method, OWED, now, payment.job_id)
            if db.execute(update, (*values, *schema.FINISHED)).rowcount != 1:
                db.execute("DELETE FROM payments WHERE key = ?", (payment.key,))
                return False
            return True

        return await self._worker.submit(op, write=True, what="late_payment", job_id=payment.job_id)

    async def mark_sent(self, event_ids: Iterable[str]) -> int:
        ids = [(event_id,) for event_id in event_ids]
        clock = self._clock

        def op(db: sqlite3.Connection) -> int:
            now = clock()
            cursor = db.executemany(
                "UPDATE outbox SET sent_at = ? WHERE event_id = ? AND sent_at IS NULL",
                [(now, event_id) for (event_id,) in ids],
            )
            return max(cursor.rowcount, 0)

        if not ids:
            return 0
        return await self._worker.submit(op, write=True, what="mark_sent")

    async def expire_due(self, now: float) -> list[str]:
        clock = self._clock
        marks = ", ".join("?" * len(_EXPIRABLE))
        where = f"expires_at <= ? AND paid_msat = 0 AND state IN ({marks})"

        def op(db: sqlite3.Connection) -> list[str]:
            due = [
                row[0]
                for row in db.execute(
                    f"SELECT id FROM jobs WHERE {where} ORDER BY expires_at, id",
                    (now, *_EXPIRABLE),
                )
            ]
            if due:
                db.execute(
                    f"UPDATE jobs SET state = ?, updated_at = ? WHERE {where}",
                    (JobState.EXPIRED.value, clock(), now, *_EXPIRABLE),
                )
            return due

        return await self._worker.submit(op, write=True, what="expire_due")

    async def purge(self, *, older_than: float) -> int:
        marks = ", ".join("?" * len(schema.FINISHED))

        def op(db: sqlite3.Connection) -> int:
            # A job with an unsent event stays: its result has not reached anyone yet.
            doomed = (
                f"SELECT id FROM jobs WHERE state IN ({marks}) AND updated_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM outbox"
                " WHERE outbox.job_id = jobs.id AND sent_at IS NULL)"
            )
            params = (*schema.FINISHED, older_than)
            db.execute(f"DELETE FROM outbox WHERE job_id IN ({doomed})", params)
            return db.execute(f"DELETE FROM jobs WHERE id IN ({doomed})", params).rowcount

        return await self._worker.submit(op, write=True, what="purge")

    # -- reads --------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        def op(db: sqlite3.Connection) -> JobRecord | None:
            row = db.execute(f"{schema.SELECT_JOBS} WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else schema.to_record(row)

        return await self._worker.submit(op, write=False, what="get", job_id=job_id)

    async def counts(self) -> dict[JobState, int]:
        def op(db: sqlite3.Connection) -> dict[JobState, int]:
            found = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state"))
            return {state: found.get(state.value, 0) for state in JobState}

        return await self._worker.submit(op, write=False, what="counts")

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        customer: str | None = None,
        refund: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        clauses, params = [], []
        if state is not None:
            clauses.append("state = ?")
            params.append(JobState(state).value)
        if customer is not None:
            clauses.append("customer = ?")
            params.append(customer)
        if refund is not None:
            clauses.append("refund = ?")
            params.append(refund)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"{schema.SELECT_JOBS}{where} ORDER BY created_at DESC, id LIMIT ?"

        def op(db: sqlite3.Connection) -> list[JobRecord]:
            return [schema.to_record(row) for row in db.execute(sql, (*params, limit))]

        return await self._worker.submit(op, write=False, what="list_jobs")

    async def payments(self, job_id: str | None = None) -> list[PaymentEntry]:
        sql = f"SELECT {schema.PAYMENT_COLUMNS} FROM payments"
        params: tuple[str, ...] = ()
        if job_id is not None:
            sql, params = f"{sql} WHERE job_id = ?", (job_id,)

        def op(db: sqlite3.Connection) -> list[PaymentEntry]:
            rows = db.execute(f"{sql} ORDER BY created_at, key", params)
            return [schema.to_payment(row) for row in rows]

        return await self._worker.submit(op, write=False, what="payments")

    async def unfinished(self) -> list[JobRecord]:
        sql = (
            f"{schema.SELECT_JOBS} WHERE state IN ({', '.join('?' * len(schema.UNFINISHED))})"
            " ORDER BY created_at, id"
        )

        def op(db: sqlite3.Connection) -> list[JobRecord]:
            return [schema.to_record(row) for row in db.execute(sql, schema.UNFINISHED)]

        return await self._worker.submit(op, write=False, what="unfinished")

    async def pending_outbox(self, *, limit: int = 1000, after: int = 0) -> list[OutboxItem]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        sql = (
            f"SELECT {schema.OUTBOX_COLUMNS} FROM outbox"
            " WHERE sent_at IS NULL AND seq > ? ORDER BY seq LIMIT ?"
        )

        def op(db: sqlite3.Connection) -> list[OutboxItem]:
            return [schema.to_item(row) for row in db.execute(sql, (after, limit))]

        return await self._worker.submit(op, write=False, what="pending_outbox")

    async def job_events(self, job_id: str) -> list[OutboxItem]:
        sql = f"SELECT {schema.OUTBOX_COLUMNS} FROM outbox WHERE job_id = ? ORDER BY seq"

        def op(db: sqlite3.Connection) -> list[OutboxItem]:
            return [schema.to_item(row) for row in db.execute(sql, (job_id,))]

        return await self._worker.submit(op, write=False, what="job_events", job_id=job_id)

    def stats(self) -> StoreStats:
        w = self._worker
        return StoreStats(
            backend="sqlite",
            pending=w.pending,
            transactions=w.transactions,
            writes=w.writes,
            reads=w.reads,
            failures=w.failures,
            largest_batch=w.largest_batch,
        )
