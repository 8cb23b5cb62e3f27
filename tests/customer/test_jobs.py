"""The customer against dvmkit providers, on our relay and on nostr-sdk's LocalRelay."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from dvmkit.customer import UpdateType
from dvmkit.errors import JobCancelled, JobFailed, NoAnswer
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.provider import Job as ProviderJob

from .conftest import FAST_CUSTOMER, WAIT, customer_on, echo_dvm, make_dvm


async def test_targeted_modern_request_returns_the_result(relay_url: str) -> None:
    dvm = echo_dvm(relay_url)
    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request(
            "text", input="hello", params={"prefix": "> "}, to=dvm.public_key
        )
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm, result.request_id) == (
            "> hello",
            dvm.public_key,
            job.id,
        )
        assert result.event.kind == 25000
        types = [u.type async for u in job.updates()]
        assert types == [UpdateType.SENT, UpdateType.SUCCESS]


async def test_open_modern_request_takes_the_free_result(relay_url: str) -> None:
    dvm = echo_dvm(relay_url)
    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request("text", input="open")
        assert "p" not in [t[0] for t in job.request.tags]
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm) == ("open", dvm.public_key)


@pytest.mark.parametrize("targeted", [True, False])
async def test_legacy_request_gets_the_kind_plus_1000_result(
    relay_url: str, targeted: bool
) -> None:
    dvm = echo_dvm(relay_url)
    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request(
            5050, input="old", params={"prefix": "!"}, to=dvm.public_key if targeted else None
        )
        assert job.request.kind == 5050
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm, result.event.kind) == ("!old", dvm.public_key, 6050)


@pytest.mark.parametrize("target", ["text", 5050])
async def test_an_error_answer_raises_job_failed_with_its_code(
    relay_url: str, target: str | int
) -> None:
    dvm = make_dvm(relay_url)

    @dvm.job
    async def picky(input: str, mode: str) -> str:
        return input

    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request(target, input="x", to=dvm.public_key)
        with pytest.raises(JobFailed) as caught:
            await job.result(timeout=WAIT)
        assert caught.value.code == "MISSING_PARAMETER"
        assert "mode" in caught.value.message
        assert caught.value.dvm == dvm.public_key


@pytest.mark.parametrize("target", ["text", 5050])
async def test_cancel_stops_the_job_at_the_dvm(relay_url: str, target: str | int) -> None:
    dvm = make_dvm(relay_url)
    started = asyncio.Event()
    stopped = asyncio.Event()

    @dvm.job
    async def slow(job: ProviderJob, input: str) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return input

    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request(target, input="x", to=dvm.public_key)
        async with asyncio.timeout(WAIT):
            await started.wait()
        await job.cancel()
        with pytest.raises(JobCancelled):
            await job.result(timeout=WAIT)
        async with asyncio.timeout(WAIT):
            await stopped.wait()
        assert [u.type async for u in job.updates()][-1] is UpdateType.CANCELLED


async def test_silent_dvm_is_failed_over_to_the_next(relay_url: str) -> None:
    dvm = echo_dvm(relay_url)
    ghost = Keys.generate().public_key  # announced nowhere, never answers
    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request(
            "text", input="again", to=[ghost, dvm.public_key], silence_timeout=0.5
        )
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm) == ("again", dvm.public_key)
        assert result.request_id != job.id  # a new request, targeted to the next DVM
        updates = [u async for u in job.updates()]
        failover = [u for u in updates if u.type is UpdateType.FAILOVER]
        assert [u.dvm for u in failover] == [dvm.public_key]


async def test_nobody_answers_raises_no_answer(relay_url: str) -> None:
    ghost = Keys.generate().public_key
    async with customer_on(relay_url) as customer:
        job = await customer.request("text", input="x", to=ghost, silence_timeout=0.3)
        with pytest.raises(NoAnswer):
            await job.result(timeout=WAIT)
        types = [u.type async for u in job.updates()]
        assert types[0] is UpdateType.SENT
        assert types[-1] is UpdateType.TIMEOUT


async def test_unacknowledged_ephemeral_request_is_republished(relay_url: str) -> None:
    dvm = echo_dvm(relay_url)
    quick_ack = dataclasses.replace(FAST_CUSTOMER, ack=0.3, republish=10)
    async with customer_on(relay_url, timeouts=quick_ack) as customer:
        job = await customer.request("text", input="late", to=dvm.public_key)
        async for update in job.updates():
            if update.type is UpdateType.SENT:
                break
        # The DVM comes up only after the request went out: relays kept no copy of it.
        async with dvm.running():
            result = await job.result(timeout=WAIT)
        assert (result.content, result.request_id) == ("late", job.id)
        updates = [u async for u in job.updates()]
        assert any(u.type is UpdateType.REPUBLISHED for u in updates)
        assert sum(u.type is UpdateType.SUCCESS for u in updates) == 1


async def test_answers_from_two_relays_are_read_once(our_relay_url: str, local_relay: str) -> None:
    relays = [our_relay_url, local_relay]
    dvm = echo_dvm(relays)
    async with dvm.running(), customer_on(relays) as customer:
        for target in ("text", 5050):
            job = await customer.request(target, input="twice", to=dvm.public_key)
            assert (await job.result(timeout=WAIT)).content == "twice"
            updates = [u async for u in job.updates()]
            assert sum(u.type is UpdateType.SUCCESS for u in updates) == 1


async def test_a_third_keys_forged_result_is_ignored(relay_url: str) -> None:
    dvm = make_dvm(relay_url)
    release = asyncio.Event()
    started = asyncio.Event()

    @dvm.job
    async def gated(input: str) -> str:
        started.set()
        await release.wait()
        return "genuine"

    forger = Keys.generate()
    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request("text", input="x", to=dvm.public_key)
        async with asyncio.timeout(WAIT):
            await started.wait()
        forged = sign_event(
            forger,
            kind=25000,
            content="forged",
            tags=[("e", job.id), ("p", customer.keys.public_key), ("status", "success")],
        )
        async with customer.pool.subscribe({"#e": [job.id], "authors": [forger.public_key]}) as sub:
            await customer.pool.publish(forged, wait="first")
            async with asyncio.timeout(WAIT):
                async for seen in sub:
                    if seen.id == forged.id:
                        break
        assert not job.done
        release.set()
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm) == ("genuine", dvm.public_key)


async def test_bad_arguments_are_refused_before_sending(our_relay_url: str) -> None:
    async with customer_on(our_relay_url) as customer:
        with pytest.raises(ValueError, match="5000-5999"):
            await customer.request(7000, input="x")
        with pytest.raises(ValueError, match="legacy"):
            await customer.request("text", legacy=True)
        with pytest.raises(ValueError, match="hex public key"):
            await customer.request("text", to="npub-nonsense")
        with pytest.raises(ValueError, match="choose"):
            await customer.request("text", choose="random")  # type: ignore[arg-type]
