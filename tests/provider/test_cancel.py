"""Cancellation by the customer: NIP-09 kind 5 and the modern cancel, queued and running."""

from __future__ import annotations

import asyncio

import pytest

from dvmkit.nostr.event import Event
from dvmkit.protocol.modern import cancel_event
from dvmkit.provider import DVM, Limits

from .conftest import Customer, customer_on, eventually, make_dvm, now, status_of

# (dialect of the request, form of the cancellation)
FORMS = [("legacy", "deletion"), ("modern", "deletion"), ("modern", "cancel"), ("legacy", "cancel")]


class Blocking:
    """A DVM whose jobs wait on an event the test may never set, and what they did."""

    def __init__(self, relay: str, concurrency: int = 4) -> None:
        self.dvm: DVM = make_dvm(
            relay, limits=Limits(concurrency=concurrency, processing_notice=5.0)
        )
        self.release = asyncio.Event()
        self.started: dict[str, asyncio.Event] = {}
        self.stopped: list[str] = []
        self.any_stopped = asyncio.Event()
        self.finished: list[str] = []

        @self.dvm.job
        async def wait(input: str) -> str:
            self.started.setdefault(input, asyncio.Event()).set()
            if input.startswith("quick"):
                return input
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.stopped.append(input)
                self.any_stopped.set()
                raise
            self.finished.append(input)
            return input

    async def running(self, name: str) -> None:
        await asyncio.wait_for(self.started.setdefault(name, asyncio.Event()).wait(), 10)


async def request(customer: Customer, dialect: str, text: str) -> Event:
    if dialect == "modern":
        return await customer.request(25000, content=text, tags=[["t", "text"]])
    return await customer.request(5050, tags=[["i", text, "text"]])


async def cancel(
    customer: Customer, job: Event, form: str, provider: str, *, require_ok: bool = True
) -> Event:
    """The cancellation built by dvmkit's codec, signed and sent by nostr-sdk."""
    template = cancel_event(job, created_at=now(), providers=[provider])
    tags = [list(t) for t in template.tags]
    kind = template.kind
    if form == "deletion" and kind != 5:
        # NIP-09 for a modern request: a kind 5 naming the request and its kind.
        kind, tags = 5, [["e", job.id], ["k", str(job.kind)], ["p", provider]]
    if form == "cancel" and kind != 25000:
        kind, tags = 25000, [["e", job.id], ["status", "cancel"], ["p", provider]]
    return await customer.request(kind, tags=tags, require_ok=require_ok)


def assert_cancelled(answer: Event, job: Event) -> None:
    assert status_of(answer) == "cancelled"
    assert answer.kind == (25000 if job.kind == 25000 else 7000)
    assert answer.tag("status") == ("status", "cancelled")


@pytest.mark.parametrize(("dialect", "form"), FORMS)
async def test_cancel_stops_a_running_job(
    relay_url: str, customer: Customer, dialect: str, form: str
) -> None:
    b = Blocking(relay_url)
    async with b.dvm.running():
        job = await request(customer, dialect, "running")
        await b.running("running")
        deletion = await cancel(customer, job, form, b.dvm.public_key)
        assert_cancelled(await customer.final(job.id), job)
        await asyncio.wait_for(b.any_stopped.wait(), 10)
        assert b.stopped == ["running"]
        assert b.dvm.stats().cancelled == 1
    assert b.finished == []
    assert customer.answers(deletion.id) == []


@pytest.mark.parametrize(("dialect", "form"), FORMS)
async def test_cancel_removes_a_queued_job(
    relay_url: str, customer: Customer, dialect: str, form: str
) -> None:
    b = Blocking(relay_url, concurrency=1)
    async with b.dvm.running():
        busy = await request(customer, dialect, "busy")
        await b.running("busy")
        queued = await request(customer, dialect, "queued")
        await eventually(lambda: b.dvm.stats().queued == 1)
        await cancel(customer, queued, form, b.dvm.public_key)
        assert_cancelled(await customer.final(queued.id), queued)
        b.release.set()
        assert (await customer.final(busy.id)).content == "busy"
        # The cancelled entry leaves the queue when a worker picks it up and skips it.
        await eventually(lambda: b.dvm.stats().queued == 0)
        stats = b.dvm.stats()
    assert b.finished == ["busy"]  # the cancelled job never started
    assert "queued" not in b.started
    assert (stats.done, stats.cancelled, stats.queued) == (1, 1, 0)


async def test_cancel_by_another_key_does_nothing(relay_url: str, customer: Customer) -> None:
    b = Blocking(relay_url)
    async with b.dvm.running(), customer_on(relay_url) as intruder:
        legacy = await request(customer, "legacy", "legacy")
        modern = await request(customer, "modern", "modern")
        await b.running("legacy")
        await b.running("modern")
        for job in (legacy, modern):
            for form in ("deletion", "cancel"):
                # nostr-sdk's LocalRelay refuses a deletion of another author's stored
                # event; where a relay passes it on, the DVM must not act on it.
                await cancel(intruder, job, form, b.dvm.public_key, require_ok=False)
        # The intruder's own job is answered after its cancellations were read.
        mine = await request(intruder, "modern", "quick")
        assert (await intruder.final(mine.id)).content == "quick"
        assert customer.answers(legacy.id) == customer.answers(modern.id) == []
        b.release.set()
        assert (await customer.final(legacy.id)).content == "legacy"
        assert (await customer.final(modern.id)).content == "modern"
        assert b.dvm.stats().cancelled == 0
    assert b.stopped == []
