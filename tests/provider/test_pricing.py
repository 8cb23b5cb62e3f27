"""What a job costs under a price list, read against the DVM's own job store."""

from __future__ import annotations

import time

from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import JobRequest, parse_request
from dvmkit.provider.pricing import Pricing, price_of
from dvmkit.store import JobRecord, JobState, SQLiteJobStore


def _request(customer: Keys, text: str) -> JobRequest:
    return parse_request(sign_event(customer, kind=5050, tags=[["i", text, "text"]]))


def _done(request: JobRequest, *, price_msat: int, at: float) -> JobRecord:
    return JobRecord(
        id=request.id,
        dialect=request.dialect,
        customer=request.customer,
        kind=request.kind,
        request=request.event.to_json(),
        state=JobState.SUCCESS,
        created_at=at,
        updated_at=at,
        price_msat=price_msat,
    )


async def test_the_free_tier_counts_free_jobs_behind_many_paid_ones() -> None:
    customer = Keys.generate()
    pricing = Pricing(per_job_msat=1000, free_jobs=1)
    now = time.time()
    async with SQLiteJobStore() as store:
        # The one free job of the window, then more paid jobs than one read of the store
        # returns: the free job is still used.
        await store.insert(_done(_request(customer, "free"), price_msat=0, at=now - 3600))
        for n in range(100):
            paid = _done(_request(customer, f"paid {n}"), price_msat=1000, at=now - 60 + n / 10)
            await store.insert(paid)
        price = await price_of(pricing, _request(customer, "next"), store=store, now=now)
        # Another customer's tier is untouched by it.
        other = await price_of(pricing, _request(Keys.generate(), "x"), store=store, now=now)
    assert (price, other) == (1000, 0)


async def test_the_free_tier_renews_once_its_window_has_passed() -> None:
    customer = Keys.generate()
    pricing = Pricing(per_job_msat=1000, free_jobs=1, free_window=600)
    now = time.time()
    async with SQLiteJobStore() as store:
        await store.insert(_done(_request(customer, "old"), price_msat=0, at=now - 601))
        renewed = await price_of(pricing, _request(customer, "a"), store=store, now=now)
        await store.insert(_done(_request(customer, "new"), price_msat=0, at=now - 1))
        used = await price_of(pricing, _request(customer, "b"), store=store, now=now)
    assert (renewed, used) == (0, 1000)
