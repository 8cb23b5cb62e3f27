"""The SQLite job store's tables, and the conversion between rows and records.

Two tables: ``jobs`` (one row per request id) and ``outbox`` (the signed events announcing
each transition, in write order). ``PRAGMA user_version`` names the schema version so that a
later dvmkit can migrate a file, and an older one refuses a file it does not understand.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from dvmkit.errors import StoreError
from dvmkit.protocol.job import Dialect
from dvmkit.store.base import JobRecord, OutboxEvent, OutboxItem, PaymentEntry
from dvmkit.store.lifecycle import TERMINAL_STATES, JobState

VERSION = 3

# A rowid table rather than WITHOUT ROWID: requests can be tens of kilobytes, and SQLite
# advises WITHOUT ROWID only for small rows.
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
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
    attempts INTEGER NOT NULL,
    envelope TEXT,
    payment_method TEXT,
    refund TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, updated_at);
CREATE INDEX IF NOT EXISTS jobs_customer ON jobs(customer, created_at);
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    relays TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_job ON outbox(job_id, seq);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS jobs_refund ON jobs(refund, updated_at) WHERE refund IS NOT NULL;
CREATE TABLE IF NOT EXISTS payments (
    key TEXT NOT NULL PRIMARY KEY,
    job_id TEXT NOT NULL,
    method TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_job ON payments(job_id);
"""

JOB_COLUMNS = (
    "id, dialect, customer, kind, request, state, created_at, updated_at, expires_at,"
    " price_msat, paid_msat, payment_ref, error_code, error_message, result_event_id, attempts,"
    " envelope, payment_method, refund"
)
INSERT_JOB = (
    f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join('?' * 19)}) ON CONFLICT (id) DO NOTHING"
)
SELECT_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs"
OUTBOX_COLUMNS = "seq, job_id, event_id, event, relays, created_at, sent_at"
# A repeated event id (the same signed event enqueued twice) keeps the first copy.
INSERT_OUTBOX = (
    "INSERT INTO outbox (job_id, event_id, event, relays, created_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO NOTHING"
)
UNFINISHED = tuple(sorted(s.value for s in JobState if s not in TERMINAL_STATES))
FINISHED = tuple(sorted(s.value for s in TERMINAL_STATES))


def create(db: sqlite3.Connection) -> None:
    """Create the tables in an empty file, or check that an existing file's are ours.

    Raises:
        StoreError: the file was written by a newer dvmkit.
        sqlite3.Error: the file is not a database.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > VERSION:
        raise StoreError(
            f"the job database has schema version {version}; this dvmkit reads up to"
            f" {VERSION}: upgrade dvmkit"
        )
    if version < VERSION:
        db.execute("BEGIN IMMEDIATE")
        try:
            if version == 1:
                # Version 2 added the envelope of private (gift-wrapped) jobs.
                db.execute("ALTER TABLE jobs ADD COLUMN envelope TEXT")
            if 1 <= version <= 2:
                # Version 3 added how a job was paid, its refund mark and the payment ledger.
                db.execute("ALTER TABLE jobs ADD COLUMN payment_method TEXT")
                db.execute("ALTER TABLE jobs ADD COLUMN refund TEXT")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def job_row(record: JobRecord) -> tuple[Any, ...]:
    """The INSERT_JOB parameters for a record."""
    return (
        record.id,
        Dialect(record.dialect).value,
        record.customer,
        record.kind,
        record.request,
        JobState(record.state).value,
        record.created_at,
        record.updated_at,
        record.expires_at,
        record.price_msat,
        record.paid_msat,
        record.payment_ref,
        record.error_code,
        record.error_message,
        record.result_event_id,
        record.attempts,
        record.envelope,
        record.payment_method,
        record.refund,
    )


def to_record(row: tuple[Any, ...]) -> JobRecord:
    """A JobRecord from a row selected with JOB_COLUMNS."""
    return JobRecord(
        row[0],
        Dialect(row[1]),
        row[2],
        row[3],
        row[4],
        JobState(row[5]),
        *row[6:],
    )


def outbox_rows(job_id: str, events: tuple[OutboxEvent, ...], now: float) -> list[tuple[Any, ...]]:
    """The INSERT_OUTBOX parameters for a job's events."""
    return [
        (job_id, e.event_id, e.event_json, orjson.dumps(e.relays).decode(), now) for e in events
    ]


def to_item(row: tuple[Any, ...]) -> OutboxItem:
    """An OutboxItem from a row selected with OUTBOX_COLUMNS."""
    return OutboxItem(row[0], row[1], row[2], row[3], tuple(orjson.loads(row[4])), row[5], row[6])


PAYMENT_COLUMNS = "key, job_id, method, amount_msat, created_at"
# A key already there inserts nothing (rowcount 0), and the transition presenting it fails.
INSERT_PAYMENT = f"INSERT OR IGNORE INTO payments ({PAYMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?)"


def to_payment(row: tuple[Any, ...]) -> PaymentEntry:
    """A PaymentEntry from a row selected with PAYMENT_COLUMNS."""
    return PaymentEntry(row[0], row[1], row[2], row[3], row[4])
