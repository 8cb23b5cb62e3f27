"""One request, many deliveries: it runs once and is answered with one result event id.

The DVM listens on three relays; the customer publishes each request to all three, and
after the result arrived publishes it again three times. The handler counts its calls in
this process, and the store counts the runs it started (``attempts``); result ids are read
from live subscriptions, from the relays' storage and from the DVM's outbox.

A re-published request reaches the engine again and is answered again with the events it
had, same ids: after a restart, and while the DVM runs. A running DVM's subscription sees a
re-publish because relays pass on every publication of an ephemeral event (modern requests
are kind 25000) and the pool delivers a relay's repeat after EOSE as a new publication
(``RelayPool.subscribe``); a stored legacy request re-published is answered "duplicate" by
the relays and not passed on, so the DVM does not see it (its result is stored on the relays).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import MODERN_KIND
from dvmkit.provider import DVM, Job
from dvmkit.relay.pool import RelayPool, Subscription
from dvmkit.relay.server import Relay
from dvmkit.store import SQLiteJobStore

WAIT = 10.0
KIND = 5050
REPUBLISH = 3


@contextlib.asynccontextmanager
async def _three_relays() -> AsyncIterator[list[str]]:
    async with Relay(port=0) as a, Relay(port=0) as b, Relay(port=0) as c:
        yield [a.url, b.url, c.url]


def _counting_dvm(
    relays: list[str], keys: Keys, store_path: Path
) -> tuple[DVM, collections.Counter[str]]:
    calls: collections.Counter[str] = collections.Counter()
    dvm = DVM(
        name="idempotent",
        categories=["text"],
        legacy_kinds=[KIND],
        relays=relays,
        keys=keys,
        store_path=store_path,
    )

    @dvm.job
    async def count(input: str, job: Job) -> str:
        calls[job.id] += 1
        return f"ran {input}"

    return dvm, calls


async def _next_result(sub: Subscription, request: Event) -> Event:
    """The next result for ``request`` on ``sub``; an error answer to it fails the test."""
    async for event in sub:
        if request.id not in event.tag_values("e"):
            continue
        assert event.tag_value("status") != "error", event.tags
        if event.kind == KIND + 1000 or event.tag_value("status") == "success":
            return event
    raise AssertionError("the subscription ended")


async def _ask(pool: RelayPool, customer: Keys, request: Event) -> Event:
    """Publish ``request`` to every relay of ``pool``; return the result it gets."""
    answers = {"kinds": [MODERN_KIND, KIND + 1000], "#p": [customer.public_key]}
    # A fresh subscription each time: it gets only answers sent after it was opened (and
    # legacy results stored on the relays), never an answer taken by an earlier ask.
    async with pool.subscribe(answers) as sub:
        await asyncio.wait_for(sub.wait_stored(), WAIT)
        published = await pool.publish(request, wait="all", timeout=WAIT)
        assert len(published.accepted) == len(pool.relays), published
        return await asyncio.wait_for(_next_result(sub, request), WAIT)


async def test_request_via_three_relays_and_republished_runs_once(tmp_path: Path) -> None:
    keys, customer = Keys.generate(), Keys.generate()
    db = tmp_path / "jobs.sqlite3"
    async with _three_relays() as urls, RelayPool(relays=urls) as pool:
        dvm, calls = _counting_dvm(urls, keys, db)
        targeted = [["p", dvm.public_key]]
        modern = sign_event(customer, kind=MODERN_KIND, content="modern", tags=targeted)
        legacy = sign_event(customer, kind=KIND, tags=[["i", "legacy", "text"], *targeted])
        requests = (modern, legacy)

        async with dvm.running():
            first = {r.id: await _ask(pool, customer, r) for r in requests}
            for _ in range(REPUBLISH):
                for request in requests:
                    assert (await pool.publish(request, wait="all", timeout=WAIT)).ok
            # A later request on the same relays and connections is a barrier: the DVM has
            # read every re-publish before it reads this one.
            later = sign_event(customer, kind=MODERN_KIND, content="later", tags=targeted)
            await _ask(pool, customer, later)
            assert calls == {modern.id: 1, legacy.id: 1, later.id: 1}

        # Restarted on the same store: the legacy request is read again from the relays
        # (look-back) and the modern one is re-published; neither runs again, and the
        # modern one is answered with the result event it had.
        dvm, calls = _counting_dvm(urls, keys, db)
        async with dvm.running():
            again = await _ask(pool, customer, modern)
            assert again.id == first[modern.id].id
            assert again.to_json() == first[modern.id].to_json()
        assert calls == {}

        stored = await pool.fetch({"kinds": [KIND + 1000], "#e": [legacy.id]}, timeout=WAIT)
        assert [e.id for e in stored] == [first[legacy.id].id]
        for url in urls:  # each relay holds that one result
            one = await pool.fetch({"ids": [first[legacy.id].id]}, relays=[url], timeout=WAIT)
            assert [e.id for e in one] == [first[legacy.id].id]

    async with SQLiteJobStore(db) as store:
        for request in requests:
            record = await store.get(request.id)
            assert record is not None
            assert record.attempts == 1  # one run started, across both lives of the DVM
            assert record.result_event_id == first[request.id].id
            results = [
                item.event_id
                for item in await store.job_events(request.id)
                if Event.from_json(item.event_json).kind == KIND + 1000
                or Event.from_json(item.event_json).tag_value("status") == "success"
            ]
            assert results == [first[request.id].id]


async def test_request_republished_to_a_running_dvm_gets_the_same_result(tmp_path: Path) -> None:
    """The customer missed the answer and publishes the request again: the running DVM sees
    it, does not run it again, and sends the result event it stored, same id, same bytes."""
    keys, customer = Keys.generate(), Keys.generate()
    db = tmp_path / "jobs.sqlite3"
    async with _three_relays() as urls, RelayPool(relays=urls) as pool:
        dvm, calls = _counting_dvm(urls, keys, db)
        request = sign_event(
            customer, kind=MODERN_KIND, content="again", tags=[["p", dvm.public_key]]
        )
        answers = {"kinds": [MODERN_KIND], "#p": [customer.public_key], "#e": [request.id]}
        async with dvm.running(), pool.subscribe(answers) as sub:
            await asyncio.wait_for(sub.wait_stored(), WAIT)
            results: list[Event] = []
            for _ in range(REPUBLISH):
                published = await pool.publish(request, wait="all", timeout=WAIT)
                assert len(published.accepted) == len(urls), published
                # One subscription throughout: the re-sent result is a new publication of
                # that event id, so it is delivered again (once, from three relays).
                # The engine lets a job go when its answer is committed, before sending it,
                # so by the time the answer arrives a re-publish is answered from the store.
                results.append(await asyncio.wait_for(_next_result(sub, request), WAIT))
            assert len(results) == REPUBLISH
            assert {r.to_json() for r in results} == {results[0].to_json()}
            assert calls == {request.id: 1}
            # A fresh subscription gets it too (the result is ephemeral: only a re-send
            # can reach it).
            again = await _ask(pool, customer, request)
            assert again.to_json() == results[0].to_json()
            assert calls == {request.id: 1}

    async with SQLiteJobStore(db) as store:
        record = await store.get(request.id)
        assert record is not None
        assert record.attempts == 1
        assert record.result_event_id == results[0].id
