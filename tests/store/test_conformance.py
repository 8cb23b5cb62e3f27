"""The JobStore conformance suite: every backend must pass all of it (see conftest.py).

Hostile values and failures are in test_conformance_hostile.py.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from dvmkit.store import KEEP, OWED, REFUNDED, JobState, JobStore, OutboxItem, PaymentEntry

from .helpers import T0, FakeClock, StoreFactory, feedback, make_record, new_id

S = JobState


async def test_insert_then_get_returns_the_record(store_factory: StoreFactory) -> None:
    record = make_record(expires_at=T0 + 60, price_msat=21_000, payment_ref="lnbc210n1...")
    async with store_factory() as store:
        assert await store.insert(record)
        assert await store.get(record.id) == record
        assert await store.get(new_id()) is None


async def test_insert_is_idempotent_and_keeps_the_first(store_factory: StoreFactory) -> None:
    first = make_record()
    again = dataclasses.replace(first, kind=5999, state=S.ERROR, request="{}")
    announced = feedback(first.id, "processing")
    async with store_factory() as store:
        assert await store.insert(first, outbox=[announced])
        assert not await store.insert(again, outbox=[feedback(first.id, "error")])
        assert await store.get(first.id) == first
        events = await store.job_events(first.id)
        assert [i.event_json for i in events] == [announced.event_json]


async def test_concurrent_inserts_of_one_request_store_it_once(
    store_factory: StoreFactory,
) -> None:
    # The same request from many relays at once: exactly one insert wins.
    record = make_record()
    async with store_factory() as store:
        results = await asyncio.gather(*(store.insert(record) for _ in range(100)))
        assert results.count(True) == 1
        assert (await store.counts())[S.RECEIVED] == 1


async def test_transition_moves_sets_fields_and_stamps_time(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    record = make_record(expires_at=T0 + 60, price_msat=5)
    async with store_factory(clock=clock) as store:
        await store.insert(record)
        clock.now = T0 + 7.25
        moved = await store.transition(
            record.id, expect=S.RECEIVED, to=S.PAYMENT_REQUIRED, payment_ref="lnbc50n1x"
        )
        assert moved
        clock.now = T0 + 9.5
        assert await store.transition(
            record.id,
            expect={S.PAYMENT_REQUIRED},
            to=S.PAID,
            paid_msat=5,
            expires_at=None,
            error_message=KEEP,
        )
        got = await store.get(record.id)
        assert got == dataclasses.replace(
            record,
            state=S.PAID,
            updated_at=T0 + 9.5,
            payment_ref="lnbc50n1x",
            paid_msat=5,
            expires_at=None,
        )


async def test_transition_counts_attempts_only_when_asked(store_factory: StoreFactory) -> None:
    record = make_record(state=S.QUEUED)
    async with store_factory() as store:
        await store.insert(record)
        assert await store.transition(record.id, expect=S.QUEUED, to=S.PROCESSING, add_attempt=True)
        assert await store.transition(record.id, expect=S.PROCESSING, to=S.PROCESSING)
        assert await store.transition(record.id, expect=S.PROCESSING, to=S.QUEUED)
        assert await store.transition(record.id, expect=S.QUEUED, to=S.PROCESSING, add_attempt=True)
        got = await store.get(record.id)
        assert got is not None
        assert got.attempts == 2


async def test_transition_from_another_state_changes_nothing(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    record = make_record()
    async with store_factory(clock=clock) as store:
        await store.insert(record)
        clock.now = T0 + 1
        assert await store.transition(record.id, expect=S.RECEIVED, to=S.CANCELLED)
        clock.now = T0 + 2
        late = await store.transition(
            record.id,
            expect={S.RECEIVED, S.QUEUED},
            to=S.PROCESSING,
            add_attempt=True,
            outbox=[feedback(record.id, "processing")],
        )
        assert not late
        assert await store.get(record.id) == dataclasses.replace(
            record, state=S.CANCELLED, updated_at=T0 + 1
        )
        assert await store.job_events(record.id) == []
        assert not await store.transition(new_id(), expect=S.RECEIVED, to=S.QUEUED)


async def test_forbidden_transitions_raise_before_writing(store_factory: StoreFactory) -> None:
    record = make_record(state=S.SUCCESS)
    async with store_factory() as store:
        await store.insert(record)
        with pytest.raises(ValueError, match="cannot move from success to processing"):
            await store.transition(record.id, expect=S.SUCCESS, to=S.PROCESSING)
        with pytest.raises(ValueError, match="cannot move from paid to expired"):
            await store.transition(record.id, expect={S.QUEUED, S.PAID}, to=S.EXPIRED)
        with pytest.raises(ValueError, match="expect names no state"):
            await store.transition(record.id, expect=(), to=S.ERROR)
        assert await store.get(record.id) == record


async def test_racing_transitions_have_exactly_one_winner(store_factory: StoreFactory) -> None:
    record = make_record(state=S.PROCESSING)
    async with store_factory() as store:
        await store.insert(record)
        # 100 coroutines race: 50 want success, 50 want cancelled, each with its own event.
        moves = [
            (S.SUCCESS if i % 2 else S.CANCELLED, feedback(record.id, f"attempt {i}"))
            for i in range(100)
        ]
        results = await asyncio.gather(
            *(
                store.transition(record.id, expect=S.PROCESSING, to=to, outbox=[event])
                for to, event in moves
            )
        )
        assert results.count(True) == 1
        winner_to, winner_event = moves[results.index(True)]
        got = await store.get(record.id)
        assert got is not None
        assert got.state is winner_to
        # Only the winner's announcement was written.
        assert [i.event_id for i in await store.job_events(record.id)] == [winner_event.event_id]


async def test_outbox_keeps_write_order_until_marked_sent(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    a, b = make_record(), make_record()
    relays = ("ws://127.0.0.1:7777", "wss://relay.example.com")
    a1, b1 = feedback(a.id, "processing", relays=relays), feedback(b.id, "processing")
    a2, b2 = feedback(a.id, "success"), feedback(b.id, "error")
    async with store_factory(clock=clock) as store:
        await store.insert(dataclasses.replace(a, state=S.PROCESSING), outbox=[a1])
        await store.insert(dataclasses.replace(b, state=S.PROCESSING), outbox=[b1])
        await store.transition(a.id, expect=S.PROCESSING, to=S.SUCCESS, outbox=[a2])
        await store.transition(b.id, expect=S.PROCESSING, to=S.ERROR, outbox=[b2])
        pending = await store.pending_outbox()
        assert [(i.job_id, i.event_id) for i in pending] == [
            (a.id, a1.event_id),
            (b.id, b1.event_id),
            (a.id, a2.event_id),
            (b.id, b2.event_id),
        ]
        assert pending[0].relays == relays
        assert pending[0].event_json == a1.event_json
        assert all(i.sent_at is None and i.created_at == T0 for i in pending)
        assert [i.seq for i in pending] == sorted(i.seq for i in pending)
        # Paging: limit and after.
        assert await store.pending_outbox(limit=2) == pending[:2]
        assert await store.pending_outbox(after=pending[1].seq) == pending[2:]
        assert await store.pending_outbox(limit=0) == []

        clock.now = T0 + 3
        assert await store.mark_sent([a1.event_id, b2.event_id, new_id()]) == 2
        assert await store.mark_sent([a1.event_id]) == 0
        assert await store.mark_sent([]) == 0
        assert [i.event_id for i in await store.pending_outbox()] == [b1.event_id, a2.event_id]
        # A job's own events stay readable after sending (to answer a re-published request).
        events = await store.job_events(a.id)
        assert [(i.event_id, i.sent_at) for i in events] == [
            (a1.event_id, T0 + 3),
            (a2.event_id, None),
        ]


async def test_the_same_signed_event_is_queued_once(store_factory: StoreFactory) -> None:
    record = make_record()
    event = feedback(record.id, "processing")
    async with store_factory() as store:
        await store.insert(record, outbox=[event, event])
        await store.transition(record.id, expect=S.RECEIVED, to=S.RECEIVED, outbox=[event])
        assert [i.event_id for i in await store.pending_outbox()] == [event.event_id]


async def test_counts_and_list_jobs(store_factory: StoreFactory) -> None:
    alice, bob = "a" * 64, "b" * 64
    records = [
        make_record(customer=alice, created_at=T0 + 1),
        make_record(customer=bob, created_at=T0 + 2, state=S.SUCCESS),
        make_record(customer=alice, created_at=T0 + 3, state=S.SUCCESS),
        make_record(customer=bob, created_at=T0 + 4, state=S.QUEUED),
    ]
    async with store_factory() as store:
        assert await store.counts() == dict.fromkeys(JobState, 0)
        for record in records:
            await store.insert(record)
        counts = await store.counts()
        assert counts == {**dict.fromkeys(JobState, 0), S.RECEIVED: 1, S.SUCCESS: 2, S.QUEUED: 1}
        assert await store.list_jobs() == records[::-1]
        assert await store.list_jobs(limit=2) == records[:1:-1]
        assert await store.list_jobs(state=S.SUCCESS) == [records[2], records[1]]
        assert await store.list_jobs(customer=alice) == [records[2], records[0]]
        assert await store.list_jobs(customer=bob, state=S.QUEUED) == [records[3]]
        assert await store.list_jobs(customer="c" * 64) == []
        with pytest.raises(ValueError, match="limit"):
            await store.list_jobs(limit=-1)


async def test_everything_survives_a_reopen(store_factory: StoreFactory) -> None:
    done, running, waiting = (make_record(created_at=T0 + i) for i in range(3))
    events = [feedback(r.id, "processing") for r in (done, running, waiting)]
    async with store_factory() as store:
        await store.insert(dataclasses.replace(done, state=S.PROCESSING), outbox=events[:1])
        await store.transition(done.id, expect=S.PROCESSING, to=S.SUCCESS, result_event_id="e")
        await store.insert(dataclasses.replace(running, state=S.PROCESSING), outbox=events[1:2])
        await store.insert(dataclasses.replace(waiting, state=S.PAYMENT_REQUIRED))
        await store.mark_sent([events[0].event_id])
    async with store_factory() as store:
        unfinished = await store.unfinished()
        assert [(r.id, r.state) for r in unfinished] == [
            (running.id, S.PROCESSING),
            (waiting.id, S.PAYMENT_REQUIRED),
        ]
        pending = await store.pending_outbox()
        assert [(i.job_id, i.event_json) for i in pending] == [(running.id, events[1].event_json)]
        got = await store.get(done.id)
        assert got is not None
        assert (got.state, got.result_event_id) == (S.SUCCESS, "e")


async def test_expire_due_expires_only_unpaid_waiting_jobs(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    due = T0 + 100
    expiring = [
        make_record(state=S.RECEIVED, expires_at=due - 50),
        make_record(state=S.QUEUED, expires_at=due - 1),
        make_record(state=S.PAYMENT_REQUIRED, expires_at=due),  # inclusive bound
    ]
    staying = [
        make_record(state=S.RECEIVED, expires_at=due + 0.5),  # not yet
        make_record(state=S.RECEIVED),  # no deadline
        make_record(state=S.QUEUED, expires_at=due - 1, paid_msat=1000),  # paid: never
        make_record(state=S.PAID, expires_at=due - 1, paid_msat=1000),
        make_record(state=S.PROCESSING, expires_at=due - 1),
        make_record(state=S.SUCCESS, expires_at=due - 1),
    ]
    async with store_factory(clock=clock) as store:
        for record in expiring + staying:
            await store.insert(record)
        clock.now = due + 5
        expired = await store.expire_due(due)
        assert expired == [r.id for r in expiring]  # soonest deadline first
        for record in expiring:
            assert await store.get(record.id) == dataclasses.replace(
                record, state=S.EXPIRED, updated_at=due + 5
            )
        for record in staying:
            assert await store.get(record.id) == record
        assert await store.expire_due(due) == []


async def test_purge_deletes_old_finished_jobs_but_never_unsent_results(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    old_sent = make_record(state=S.SUCCESS, updated_at=T0)
    old_unsent = make_record(state=S.ERROR, updated_at=T0)
    old_running = make_record(state=S.PROCESSING, updated_at=T0)
    recent = make_record(state=S.CANCELLED, updated_at=T0 + 500)
    sent, unsent = feedback(old_sent.id, "success"), feedback(old_unsent.id, "error")
    async with store_factory(clock=clock) as store:
        await store.insert(old_sent, outbox=[sent])
        await store.insert(old_unsent, outbox=[unsent])
        await store.insert(old_running)
        await store.insert(recent)
        await store.mark_sent([sent.event_id])
        assert await store.purge(older_than=T0 + 100) == 1
        assert await store.get(old_sent.id) is None
        assert await store.job_events(old_sent.id) == []
        for kept in (old_unsent, old_running, recent):
            assert await store.get(kept.id) == kept
        assert [i.event_id for i in await store.pending_outbox()] == [unsent.event_id]
        # Once purged, the id is free: the same request would be a new job.
        assert await store.insert(old_sent)


async def _cycle(store: JobStore, index: int) -> OutboxItem:
    record = make_record(created_at=T0 + index)
    assert await store.insert(record, outbox=[feedback(record.id, "processing")])
    assert await store.transition(record.id, expect=S.RECEIVED, to=S.PROCESSING, add_attempt=True)
    result = feedback(record.id, "success")
    assert await store.transition(
        record.id,
        expect=S.PROCESSING,
        to=S.SUCCESS,
        result_event_id=result.event_id,
        outbox=[result],
    )
    events = await store.job_events(record.id)
    assert await store.mark_sent([e.event_id for e in events]) == 2
    return events[-1]


async def test_a_burst_of_3000_concurrent_jobs_loses_nothing(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        results = await asyncio.gather(*(_cycle(store, i) for i in range(3000)))
        counts = await store.counts()
        assert counts[S.SUCCESS] == 3000
        assert sum(counts.values()) == 3000
        assert await store.pending_outbox() == []
        for item in results[::100]:
            got = await store.get(item.job_id)
            assert got is not None
            assert got.result_event_id == item.event_id
        stats = store.stats()
        assert stats.pending == 0
        assert stats.failures == 0
        assert stats.writes >= 4 * 3000


async def test_a_payment_enters_the_ledger_with_its_transition_and_counts_once(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    first = make_record(state=S.PAYMENT_REQUIRED, price_msat=21_000)
    second = make_record(state=S.PAYMENT_REQUIRED, price_msat=21_000)
    paid = PaymentEntry("a" * 64, first.id, "bolt11", 21_000)
    async with store_factory(clock=clock) as store:
        await store.insert(first)
        await store.insert(second)
        clock.now = T0 + 3
        assert await store.transition(
            first.id,
            expect=S.PAYMENT_REQUIRED,
            to=S.PAID,
            paid_msat=21_000,
            payment_method="bolt11",
            payment=paid,
        )
        # The same payment presented for another job (or again for this one) moves nothing.
        again = dataclasses.replace(paid, job_id=second.id)
        assert not await store.transition(
            second.id, expect=S.PAYMENT_REQUIRED, to=S.PAID, paid_msat=21_000, payment=again
        )
        assert not await store.transition(first.id, expect=S.PAID, to=S.PAID, payment=paid)
        got = await store.get(first.id)
        assert got is not None
        assert (got.state, got.paid_msat, got.payment_method) == (S.PAID, 21_000, "bolt11")
        assert (await store.get(second.id)) == second
        assert await store.payments() == [dataclasses.replace(paid, created_at=T0 + 3)]
        assert await store.payments(second.id) == []


async def test_a_payment_for_a_job_that_moved_on_is_not_entered(
    store_factory: StoreFactory,
) -> None:
    record = make_record(state=S.CANCELLED)
    entry = PaymentEntry("b" * 64, record.id, "cashu", 1000)
    async with store_factory() as store:
        await store.insert(record)
        assert not await store.transition(
            record.id, expect=S.PAYMENT_REQUIRED, to=S.PAID, payment=entry
        )
        assert await store.payments() == []
        # The key stays free: the payment can still release the job it was made for.
        other = make_record(state=S.PAYMENT_REQUIRED)
        await store.insert(other)
        entry = dataclasses.replace(entry, job_id=other.id)
        assert await store.transition(other.id, expect=S.PAYMENT_REQUIRED, to=S.PAID, payment=entry)


async def test_owed_jobs_are_listed_and_survive_a_reopen(store_factory: StoreFactory) -> None:
    owed = make_record(state=S.PROCESSING, paid_msat=5000, payment_method="zap")
    refunded = make_record(state=S.PROCESSING, paid_msat=5000, payment_method="cashu")
    async with store_factory() as store:
        for record in (owed, refunded):
            await store.insert(record)
        await store.transition(owed.id, expect=S.PROCESSING, to=S.ERROR, refund=OWED)
        await store.transition(refunded.id, expect=S.PROCESSING, to=S.ERROR, refund=REFUNDED)
        assert [r.id for r in await store.list_jobs(refund=OWED)] == [owed.id]
    async with store_factory() as store:  # reopened
        assert [r.id for r in await store.list_jobs(refund=OWED)] == [owed.id]
        assert [r.id for r in await store.list_jobs(refund=REFUNDED)] == [refunded.id]


async def test_a_late_payment_is_entered_once_and_its_ended_job_owes_it(
    store_factory: StoreFactory,
) -> None:
    cancelled = make_record(state=S.CANCELLED, price_msat=21_000)
    waiting = make_record(state=S.PAYMENT_REQUIRED, price_msat=21_000)
    late = PaymentEntry("c" * 64, cancelled.id, "cashu", 21_000)
    async with store_factory() as store:
        await store.insert(cancelled)
        await store.insert(waiting)
        # Only for a job that ended unpaid: a waiting one takes its payment by transition.
        assert not await store.late_payment(dataclasses.replace(late, job_id=waiting.id))
        assert await store.late_payment(late)
        assert not await store.late_payment(late)  # once
        got = await store.get(cancelled.id)
        assert got is not None
        assert (got.state, got.paid_msat, got.payment_method, got.refund) == (
            S.CANCELLED,
            21_000,
            "cashu",
            OWED,
        )
        assert [(e.key, e.job_id) for e in await store.payments()] == [(late.key, cancelled.id)]
        assert (await store.get(waiting.id)) == waiting


async def test_a_payment_for_another_job_is_refused_before_anything_is_written(
    store_factory: StoreFactory,
) -> None:
    record = make_record(state=S.PAYMENT_REQUIRED, price_msat=1000)
    entry = PaymentEntry("d" * 64, new_id(), "bolt11", 1000)
    async with store_factory() as store:
        await store.insert(record)
        with pytest.raises(ValueError, match="for job"):
            await store.transition(record.id, expect=S.PAYMENT_REQUIRED, to=S.PAID, payment=entry)
        assert await store.get(record.id) == record
        assert await store.payments() == []
