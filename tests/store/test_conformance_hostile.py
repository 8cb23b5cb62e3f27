"""JobStore conformance, hostile part: odd values come back exactly, bad ones fail alone.

Every backend must pass this file too (the backends are the ``store_factory`` params).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvmkit.errors import DVMError, StoreError
from dvmkit.store import JobRecord, JobState, OutboxEvent

from .helpers import StoreFactory, feedback, make_record, new_id

S = JobState
ODD = [
    "",
    "\x00",
    "nul\x00in\x00the\x00middle",
    "\x00" * 1000,
    "\x01\x1f\x7f\u0085\u2028\u2029",
    "ünïcødé — 日本語 — עברית — 🧑‍🚀🏳️‍🌈",
    "\ufeffbom",
    "\U0010ffff",
    "'; DROP TABLE jobs; --",
    '{"not": "an event"',
    " " * 10,
]


async def test_odd_strings_come_back_exactly(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        for odd in ODD:
            record = make_record(
                id=odd + new_id(),
                customer=odd,
                request=odd,
                payment_ref=odd,
                error_code=odd,
                error_message=odd,
                result_event_id=odd,
            )
            event = OutboxEvent(odd + new_id(), odd, (odd, "ws://127.0.0.1:1", odd))
            assert await store.insert(record, outbox=[event])
            assert await store.get(record.id) == record
            (item,) = await store.job_events(record.id)
            assert (item.event_id, item.event_json, item.relays) == (
                event.event_id,
                event.event_json,
                event.relays,
            )
            assert await store.list_jobs(customer=odd) == [record]


async def test_a_huge_request_comes_back_exactly(store_factory: StoreFactory) -> None:
    content = ("x" * 1000 + "\x00é🧑‍🚀") * 5000  # ~5 MB
    request = f'{{"kind":5050,"content":"{content}"}}'
    record = make_record(request=request)
    result = OutboxEvent(new_id(), content, ())
    async with store_factory() as store:
        assert await store.insert(dataclasses.replace(record, state=S.PROCESSING))
        assert await store.transition(record.id, expect=S.PROCESSING, to=S.SUCCESS, outbox=[result])
        got = await store.get(record.id)
        assert got is not None
        assert got.request == request
        assert (await store.pending_outbox())[0].event_json == content


async def test_extreme_numbers_come_back_exactly(store_factory: StoreFactory) -> None:
    record = make_record(
        kind=2**63 - 1,
        price_msat=2**63 - 1,
        paid_msat=-(2**63),
        attempts=2**31,
        created_at=0.0,
        updated_at=1e300,
        expires_at=-1.5,
    )
    async with store_factory() as store:
        assert await store.insert(record)
        assert await store.get(record.id) == record


text = st.text(max_size=200)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    request=text,
    message=st.none() | text,
    relays=st.lists(text, max_size=4).map(tuple),
    event_json=text,
)
def test_any_text_round_trips(
    store_factory: StoreFactory,
    request: str,
    message: str | None,
    relays: tuple[str, ...],
    event_json: str,
) -> None:
    record = make_record(request=request, error_message=message, payment_ref=message)
    event = OutboxEvent(new_id(), event_json, relays)

    async def round_trip() -> tuple[JobRecord | None, tuple[str, tuple[str, ...]]]:
        async with store_factory() as store:
            await store.insert(record, outbox=[event])
            (item,) = await store.job_events(record.id)
            return await store.get(record.id), (item.event_json, item.relays)

    assert asyncio.run(round_trip()) == (record, (event_json, relays))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"request": "lone \ud800 surrogate"}, "not valid Unicode"),
        ({"error_message": "\udfff"}, "not valid Unicode"),
        ({"kind": 2**64}, "64 bits"),
        ({"price_msat": -(2**63) - 1}, "64 bits"),
        ({"state": "bogus"}, "bogus"),
        ({"dialect": "klingon"}, "klingon"),
        ({"payment_ref": ["not", "a", "string"]}, "failed"),
    ],
)
async def test_an_unstorable_value_fails_alone_with_a_store_error(
    store_factory: StoreFactory, bad: dict[str, Any], reason: str
) -> None:
    good = [make_record() for _ in range(20)]
    hostile = make_record(**bad)
    async with store_factory() as store:
        # Submitted together, so a group-committing backend puts them in one batch.
        results = await asyncio.gather(
            *(store.insert(r) for r in good[:10]),
            store.insert(hostile),
            *(store.insert(r) for r in good[10:]),
            return_exceptions=True,
        )
        error = results.pop(10)
        assert isinstance(error, StoreError)
        assert isinstance(error, DVMError)
        assert reason in str(error)
        assert error.job_id == hostile.id
        assert results == [True] * 20
        for record in good:
            assert await store.get(record.id) == record
        assert await store.get(hostile.id) is None
        assert store.stats().failures >= 1


async def test_an_unstorable_outbox_event_undoes_its_transition(
    store_factory: StoreFactory,
) -> None:
    record = make_record(state=S.PROCESSING)
    bad_event = OutboxEvent(new_id(), "result \ud800", ())
    async with store_factory() as store:
        await store.insert(record)
        with pytest.raises(StoreError, match="Unicode"):
            await store.transition(record.id, expect=S.PROCESSING, to=S.SUCCESS, outbox=[bad_event])
        assert await store.get(record.id) == record
        assert await store.pending_outbox() == []
        # The job can still finish properly.
        good = feedback(record.id, "success")
        assert await store.transition(record.id, expect=S.PROCESSING, to=S.SUCCESS, outbox=[good])


async def test_a_closed_or_unopened_store_refuses_work(store_factory: StoreFactory) -> None:
    store = store_factory()
    with pytest.raises(StoreError, match="not open"):
        await store.get(new_id())
    async with store:
        await store.insert(make_record())
    with pytest.raises(StoreError, match="not open"):
        await store.insert(make_record())
    with pytest.raises(StoreError, match="not open"):
        await store.counts()
    with pytest.raises(StoreError, match="only once"):
        async with store:
            pass


async def test_closing_flushes_writes_already_submitted(store_factory: StoreFactory) -> None:
    records = [make_record() for _ in range(200)]
    async with asyncio.TaskGroup() as tg:
        async with store_factory() as store:
            tasks = [tg.create_task(store.insert(r)) for r in records]
            await asyncio.sleep(0)  # let every task submit its write; no timing involved
        # The store closed with writes in flight: every one was committed and answered.
        assert all(task.done() and task.result() for task in tasks)
    async with store_factory() as store:
        assert (await store.counts())[S.RECEIVED] == 200


async def test_a_cancelled_caller_s_write_still_lands(store_factory: StoreFactory) -> None:
    record = make_record()
    async with store_factory() as store:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(store.insert(record))
            await asyncio.sleep(0)  # the insert is submitted
            task.cancel()
        assert task.cancelled()
        # Documented: cancelling the wait does not take the write back.
        assert await store.get(record.id) == record
        assert not await store.insert(record)
