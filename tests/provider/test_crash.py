"""kill -9 the provider mid-job, and after a result is stored but before it is sent.

The provider runs ``dvm_script.py`` in a child process; the relay runs here, on 127.0.0.1.
After a restart on the same job store and key, every job must end exactly once: one result
event id per job across everything the relay stored and everything a live subscriber saw,
and that id must be the one the store committed (DESIGN.md §5: the signed result is stored
before it is sent, and re-sent with the same id).

Legacy results (kind 6050) are stored by the relay and counted there; modern kind-25000
results are ephemeral, so a customer subscription that stays open across the restarts
counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import MODERN_KIND
from dvmkit.relay.pool import RelayPool, Subscription
from dvmkit.relay.server import Relay

from .dvm_script import CATEGORY, KIND
from .subprocess_dvm import DVMProcess

JOBS_PER_DIALECT = 3
WAIT = 30.0  # bound on every wait; generous for a loaded 2-core CI machine


def _requests(customer: Keys) -> list[Event]:
    legacy = [
        sign_event(customer, kind=KIND, tags=[["i", f"legacy {n}", "text"]])
        for n in range(JOBS_PER_DIALECT)
    ]
    modern = [
        sign_event(
            customer,
            kind=MODERN_KIND,
            content=f"modern {n}",
            tags=[["t", CATEGORY], ["category", CATEGORY]],
        )
        for n in range(JOBS_PER_DIALECT)
    ]
    return legacy + modern


def _answers_to(customer: Keys) -> dict[str, object]:
    return {"kinds": [KIND + 1000, 7000, MODERN_KIND], "#p": [customer.public_key]}


def _result_of(event: Event) -> str | None:
    """The request id ``event`` is the result of, or None for any other event."""
    if event.kind == KIND + 1000 or (
        event.kind == MODERN_KIND and event.tag_value("status") == "success"
    ):
        return event.tag_value("e")
    return None


async def _collect_results(sub: Subscription, results: dict[str, set[str]], want: set[str]) -> None:
    """Read ``sub`` until every request in ``want`` has a result; fail on an error status."""
    while not want <= results.keys():
        event = await anext(sub)
        assert event.tag_value("status") != "error", event.tags
        job = _result_of(event)
        if job is not None:
            results[job].add(event.id)


Jobs = dict[str, tuple[str, str | None, int]]
Results = dict[str, list[tuple[str, bool]]]


def _read_store(db: Path) -> tuple[Jobs, Results]:
    """Read the child's job store behind its back (read-only): each job as (state, result
    event id, attempts), and each job's result events in its outbox as (event id, sent).

    Every event the provider publishes about a job is committed to the outbox first, so the
    outbox holds every result it ever signed and could have sent."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        jobs = {
            row[0]: (row[1], row[2], row[3])
            for row in conn.execute("SELECT id, state, result_event_id, attempts FROM jobs")
        }
        results: Results = defaultdict(list)
        for job_id, raw, sent_at in conn.execute(
            "SELECT job_id, event, sent_at FROM outbox ORDER BY seq"
        ):
            event = Event.from_json(raw)
            if _result_of(event) is not None:
                results[job_id].append((event.id, sent_at is not None))
    finally:
        conn.close()
    return jobs, results


def _all_sent(db: Path) -> bool:
    return all(sent for items in _read_store(db)[1].values() for _, sent in items)


async def _until(check: Callable[[], bool], what: str) -> None:
    """Poll a condition on another process's file: there is nothing in-process to await."""
    async with asyncio.timeout(WAIT):
        while not check():  # noqa: ASYNC110 - another process's file: nothing to await
            await asyncio.sleep(0.02)
    assert check(), what


async def _stored_results(url: str, ids: list[str]) -> dict[str, set[str]]:
    """The legacy results the relay stored for ``ids``, by request id."""
    async with RelayPool(relays=[url]) as pool:
        events = await pool.fetch({"kinds": [KIND + 1000], "#e": ids}, timeout=WAIT)
    stored: dict[str, set[str]] = defaultdict(set)
    for event in events:
        job = _result_of(event)
        assert job is not None
        stored[job].add(event.id)
    return stored


async def test_sigkill_mid_job_runs_each_job_again_and_answers_once(tmp_path: Path) -> None:
    dvm_keys, customer = Keys.generate(), Keys.generate()
    db, log = tmp_path / "jobs.sqlite3", tmp_path / "dvm.log"
    requests = _requests(customer)
    ids = {r.id for r in requests}
    legacy_ids = [r.id for r in requests if r.kind == KIND]
    results: dict[str, set[str]] = defaultdict(set)

    async with (
        Relay(port=0, db_path=tmp_path / "relay.sqlite3") as relay,
        RelayPool(relays=[relay.url]) as pool,
        pool.subscribe(_answers_to(customer)) as sub,
    ):
        await asyncio.wait_for(sub.wait_stored(), WAIT)
        proc = DVMProcess(relays=[relay.url], db=db, keys=dvm_keys, log=log, gate=True)
        async with proc:
            for request in requests:
                assert (await pool.publish(request, timeout=WAIT)).ok
            async with asyncio.timeout(WAIT):
                assert await proc.started(len(ids)) == ids
            await proc.kill()  # every job is inside the handler now

        jobs, _ = _read_store(db)
        assert {job: (state, attempts) for job, (state, _, attempts) in jobs.items()} == {
            job: ("processing", 1) for job in ids
        }

        restarted = DVMProcess(relays=[relay.url], db=db, keys=dvm_keys, log=log, gate=True)
        async with restarted:
            async with asyncio.timeout(WAIT):
                # Resumed from the store: the modern requests were ephemeral and are gone
                # from the relay, so only the store can have brought them back.
                assert await restarted.started(len(ids)) == ids
            restarted.release()
            async with asyncio.timeout(WAIT):
                await _collect_results(sub, results, ids)
            await _until(lambda: _all_sent(db), "results still unsent")
            assert await restarted.terminate() == 0, restarted.stderr()

        jobs, signed = _read_store(db)
        stored = await _stored_results(relay.url, legacy_ids)

    for job in ids:
        state, result_id, attempts = jobs[job]
        assert (state, attempts) == ("success", 2)
        # One result ever signed and committed, sent; the live subscriber saw that one only.
        assert signed[job] == [(result_id, True)]
        assert results[job] == {result_id}
    assert {job: stored[job] for job in legacy_ids} == {job: {jobs[job][1]} for job in legacy_ids}


async def test_sigkill_after_result_stored_resends_the_same_result(tmp_path: Path) -> None:
    dvm_keys, customer = Keys.generate(), Keys.generate()
    db, log, relay_db = tmp_path / "jobs.sqlite3", tmp_path / "dvm.log", tmp_path / "relay.db"
    requests = _requests(customer)
    ids = {r.id for r in requests}
    legacy_ids = [r.id for r in requests if r.kind == KIND]

    async with contextlib.AsyncExitStack() as relay_up:
        relay = await relay_up.enter_async_context(Relay(port=0, db_path=relay_db))
        url = relay.url
        port = urlsplit(url).port
        assert port is not None
        proc = DVMProcess(relays=[url], db=db, keys=dvm_keys, log=log, gate=True)
        async with proc:
            async with RelayPool(relays=[url]) as pool:
                for request in requests:
                    assert (await pool.publish(request, timeout=WAIT)).ok
            async with asyncio.timeout(WAIT):
                assert await proc.started(len(ids)) == ids
            # Cut the provider off, then let the jobs finish: each result is committed to
            # the store, and its publish can only wait for a relay that is not there.
            await relay_up.aclose()
            proc.release()

            def all_stored_unsent() -> bool:
                jobs, results = _read_store(db)
                return all(
                    jobs[job][0] == "success" and results[job] == [(jobs[job][1], False)]
                    for job in ids
                )

            await _until(all_stored_unsent, "results were not committed, or were sent")
            await proc.kill()

    committed, before = _read_store(db)
    assert all(before[job] == [(committed[job][1], False)] for job in ids)  # still unsent

    results: dict[str, set[str]] = defaultdict(set)
    async with (
        Relay(port=port, db_path=relay_db) as relay,
        RelayPool(relays=[relay.url]) as pool,
        pool.subscribe(_answers_to(customer)) as sub,
    ):
        assert relay.url == url
        await asyncio.wait_for(sub.wait_stored(), WAIT)
        async with DVMProcess(relays=[url], db=db, keys=dvm_keys, log=log) as restarted:
            async with asyncio.timeout(WAIT):
                await _collect_results(sub, results, ids)
            await _until(lambda: _all_sent(db), "results still unsent")
            assert await restarted.terminate() == 0, restarted.stderr()
        jobs, signed = _read_store(db)
        stored = await _stored_results(url, legacy_ids)

    for job in ids:
        state, result_id, attempts = jobs[job]
        assert result_id == committed[job][1]  # the id committed before the kill
        assert (state, attempts) == ("success", 1)  # the handler did not run again
        assert signed[job] == [(result_id, True)]
        assert results[job] == {result_id}
    assert {job: stored[job] for job in legacy_ids} == {job: {jobs[job][1]} for job in legacy_ids}
