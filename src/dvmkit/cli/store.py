"""``dvm jobs``: what a DVM's job store holds — its jobs, and what it owes.

Reads the SQLite store a ``dvm serve`` writes (``--db``, ``$DVMKIT_DB``, or the one file in
``.dvmkit/``); one JSON object per job on stdout, newest first. ``--owed`` lists the paid jobs
that failed and were not refunded: money the operator owes its customers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dvmkit.cli.common import EXIT_BAD_INPUT, emit, error
from dvmkit.errors import DVMError

if TYPE_CHECKING:
    from dvmkit.store import JobRecord

_DEFAULT_DIR = Path(".dvmkit")


def jobs_command(
    db: Annotated[
        Path | None,
        typer.Option("--db", envvar="DVMKIT_DB", help="the job store [default: .dvmkit/*.jobs]"),
    ] = None,
    owed: Annotated[bool, typer.Option("--owed", help="only paid jobs owed a refund")] = False,
    state: Annotated[str | None, typer.Option("--state", help="only jobs in this state")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many", min=0)] = 100,
) -> None:
    """List a DVM's jobs (JSON lines, newest first); ``--owed``: what it owes customers."""
    # The store (and asyncio) load only for this command: `dvm` starts fast for the others.
    import asyncio

    from dvmkit.store import OWED, JobState, SQLiteJobStore

    try:
        path = _store_path(db)
        wanted = None if state is None else JobState(state)
    except ValueError:
        states = ", ".join(s.value for s in JobState)
        error(f"unknown state {state!r}: one of {states}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except FileNotFoundError as exc:
        error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None

    async def read() -> list[JobRecord]:
        async with SQLiteJobStore(path) as store:
            return await store.list_jobs(state=wanted, refund=OWED if owed else None, limit=limit)

    try:
        records = asyncio.run(read())
    except DVMError as exc:
        error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for record in records:
        emit(describe(record))


def describe(record: JobRecord) -> dict[str, Any]:
    """A job as ``dvm jobs`` prints it: no request body (it may be private), no secrets."""
    out: dict[str, Any] = {
        "id": record.id,
        "state": record.state.value,
        "dialect": record.dialect.value,
        "kind": record.kind,
        "customer": record.customer,
        "created_at": int(record.created_at),
        "price_msat": record.price_msat,
        "paid_msat": record.paid_msat,
    }
    optional = {
        "payment_method": record.payment_method,
        "refund": record.refund,
        "error_code": record.error_code,
        "error_message": record.error_message,
        "result": record.result_event_id,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def _store_path(db: Path | None) -> Path:
    if db is not None:
        if not db.exists():
            raise FileNotFoundError(f"no job store at {db}")
        return db
    found = sorted(_DEFAULT_DIR.glob("*.jobs.sqlite3"))
    if len(found) != 1:
        where = "none" if not found else ", ".join(map(str, found))
        raise FileNotFoundError(
            f"name the job store with --db (or $DVMKIT_DB): found {where} in {_DEFAULT_DIR}/"
        )
    return found[0]
