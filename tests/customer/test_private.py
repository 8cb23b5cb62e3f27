"""Private jobs through the customer client: wrapped, encrypted params, and what others see."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import orjson
import pytest

from dvmkit.customer import UpdateType
from dvmkit.errors import JobCancelled, JobFailed, NoAnswer
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.giftwrap import wrap_signed
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import Envelope, wrap_request
from dvmkit.provider import Job as ProviderJob
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay

from .conftest import WAIT, customer_on, echo_dvm, make_dvm

ENVELOPES = [
    Envelope(),
    Envelope("simple", 1059),
    Envelope("nip59", 1059),
    Envelope("nip59", 21059),
]


@pytest.mark.parametrize("envelope", ENVELOPES, ids=str)
async def test_a_wrapped_job_returns_its_result(relay_url: str, envelope: Envelope) -> None:
    dvm = echo_dvm(relay_url)
    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request(
            "text", input="hush", params={"prefix": "> "}, to=dvm.public_key, envelope=envelope
        )
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm, result.request_id) == ("> hush", dvm.public_key, job.id)
        # The answer read is the inner one: about our request, from the DVM.
        assert result.event.tag_value("e") == job.id
        assert result.event.pubkey == dvm.public_key


async def test_encrypt_without_a_dvm_asks_the_live_ones_that_announce_encryption(
    our_relay_url: str,
) -> None:
    plain = echo_dvm(our_relay_url, encryption="off", name="Plain")
    private = echo_dvm(our_relay_url, name="Private")
    async with plain.running(), private.running(), customer_on(our_relay_url) as customer:
        job = await customer.request("text", input="secret", encrypt=True)
        result = await job.result(timeout=WAIT)
    assert (result.content, result.dvm) == ("secret", private.public_key)
    assert job.request.tag_values("p") == [private.public_key]


async def test_encrypt_never_falls_back_to_plaintext(our_relay_url: str) -> None:
    plain = echo_dvm(our_relay_url, encryption="off")
    async with plain.running(), customer_on(our_relay_url) as customer:
        with pytest.raises(NoAnswer, match="announces encryption"):
            await customer.request("text", input="secret", encrypt=True)
        # A DVM known (from discovery) to announce no encryption is refused too.
        await customer.discover("text")
        with pytest.raises(NoAnswer, match="does not announce encryption"):
            await customer.request("text", input="secret", encrypt=True, to=plain.public_key)


async def test_nip04_and_nip44_name_legacy_params_not_modern_wraps(our_relay_url: str) -> None:
    async with customer_on(our_relay_url) as customer:
        with pytest.raises(ValueError, match="wrapping"):
            await customer.request("text", input="x", encrypt="nip04", to="a" * 64)


@pytest.mark.parametrize("scheme", ["nip04", "nip44"])
async def test_legacy_encrypted_params_round_trip(relay_url: str, scheme: str) -> None:
    dvm = echo_dvm(relay_url)
    async with dvm.running(), customer_on(relay_url) as customer:
        job = await customer.request(
            5050,
            input="quiet",
            params={"prefix": "~"},
            to=dvm.public_key,
            encrypt=scheme,  # type: ignore[arg-type]
        )
        assert [t[0] for t in job.request.tags] == ["p", "encrypted"]
        assert job.request.tag("encrypted") == ("encrypted", scheme)
        result = await job.result(timeout=WAIT)
    assert result.content == "~quiet"
    # The result event itself carries the ciphertext, answered in the request's scheme.
    assert result.event.tag("encrypted") == ("encrypted", scheme)
    assert "quiet" not in result.event.to_json()


async def test_a_private_job_fails_over_re_encrypting_to_the_next_dvm(our_relay_url: str) -> None:
    silent = make_dvm(our_relay_url, name="Silent")
    stalled: list[str] = []

    @silent.job
    async def stall(input: str) -> str:
        stalled.append(input)  # it could read its copy: the failover is for its silence
        await asyncio.Event().wait()
        return input

    good = echo_dvm(our_relay_url, name="Good")
    async with (
        silent.running(),
        good.running(),
        customer_on(our_relay_url) as customer,
    ):
        for encrypt in (True, "nip44"):
            target: str | int = "text" if encrypt is True else 5050
            job = await customer.request(
                target,
                input="onward",
                to=[silent.public_key, good.public_key],
                encrypt=encrypt,
                silence_timeout=1.0,
            )
            result = await job.result(timeout=WAIT)
            assert (result.content, result.dvm) == ("onward", good.public_key)
            assert UpdateType.FAILOVER in [u.type async for u in job.updates()]
        assert stalled == ["onward", "onward"]


async def test_forged_answers_inside_wraps_are_ignored(our_relay_url: str) -> None:
    """ContextVM SDK #64: an answer inside a wrap is believed only from the DVM asked."""
    forger = Keys.generate()
    release = asyncio.Event()
    dvm = make_dvm(our_relay_url)

    @dvm.job
    async def slow(input: str) -> str:
        await release.wait()
        return "the real result"

    async with dvm.running(), customer_on(our_relay_url) as customer:
        job = await customer.request("text", input="x", to=dvm.public_key, encrypt=True)
        me = customer.keys.public_key
        forged = [
            # A third key's result, properly signed by it, wrapped to the customer.
            sign_event(
                forger,
                kind=25000,
                content="forged result",
                tags=[("e", job.id), ("p", me), ("status", "success")],
            ),
            # A third key's error.
            sign_event(
                forger,
                kind=25000,
                tags=[("e", job.id), ("p", me), ("status", "error", "BAD_REQUEST", "no")],
            ),
        ]
        for event in forged:
            await customer.pool.publish(wrap_signed(event, me), wait="all")
        # A result claiming the DVM's key with a forged signature does not open at all.
        fake = Event(
            "0" * 64,
            dvm.public_key,
            forged[0].created_at,
            25000,
            forged[0].tags,
            "forged result",
            forged[0].sig,
        )
        await customer.pool.publish(wrap_signed(fake, me), wait="all")
        release.set()
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm) == ("the real result", dvm.public_key)
        assert all(u.dvm in (None, dvm.public_key) for u in [u async for u in job.updates()])


async def test_cancelling_a_wrapped_job_stops_it(our_relay_url: str) -> None:
    dvm = make_dvm(our_relay_url)
    started = asyncio.Event()
    stopped = asyncio.Event()

    @dvm.job
    async def wait_forever(input: str, job: ProviderJob) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return input

    async with dvm.running(), customer_on(our_relay_url) as customer:
        job = await customer.request("text", input="x", to=dvm.public_key, encrypt=True)
        async with asyncio.timeout(WAIT):
            await started.wait()
        await job.cancel()
        with pytest.raises(JobCancelled):
            await job.result()
        async with asyncio.timeout(WAIT):
            await stopped.wait()


class Observer:
    """A third client reading everything the relay passes on, stored and live."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self._changed = asyncio.Condition()

    async def read(self, events: AsyncIterator[Event]) -> None:
        async for event in events:
            self.seen.append(event.to_json_bytes())
            async with self._changed:
                self._changed.notify_all()

    async def until_seen(self, needle: bytes) -> None:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: any(needle in raw for raw in self.seen))


@contextlib.asynccontextmanager
async def observing(url: str) -> AsyncIterator[Observer]:
    watcher = Observer()
    async with RelayPool(relays=[url]) as pool, pool.subscribe({}) as sub:
        await sub.wait_stored()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(watcher.read(sub.__aiter__()))
            try:
                yield watcher
            finally:
                task.cancel()


@pytest.mark.parametrize("envelope", ENVELOPES, ids=str)
async def test_an_observer_of_everything_never_sees_the_job(envelope: Envelope) -> None:
    secret_input = "input-" + secrets.token_hex(8)
    secret_param = "param-" + secrets.token_hex(8)
    dvm = make_dvm("ws://unused")
    progress_text = "partial-" + secrets.token_hex(8)

    @dvm.job
    async def private(input: str, tag: str, job: ProviderJob) -> str:
        await job.progress("working")
        await job.partial(progress_text)
        return f"result-{input}-{tag}"

    async with Relay(port=0) as relay:
        dvm.configure(relays=[relay.url])
        async with (
            observing(relay.url) as watcher,
            dvm.running(),
            customer_on(relay.url) as customer,
        ):
            job = await customer.request(
                "text",
                input=secret_input,
                params={"tag": secret_param},
                to=dvm.public_key,
                envelope=envelope,
            )
            result = await job.result(timeout=WAIT)
            types = [u.type async for u in job.updates()]
            # The observer's copy of the last answer may still be on its way; a note
            # published after it reaches the observer after it.
            await customer.pool.publish(
                sign_event(customer.keys, kind=1, content="flush"), wait="all"
            )
            await watcher.until_seen(b'"flush"')
        seen = watcher.seen
    assert result.content == f"result-{secret_input}-{secret_param}"
    assert UpdateType.PARTIAL in types
    wraps = [orjson.loads(raw) for raw in seen if orjson.loads(raw)["kind"] == envelope.kind]
    # request, processing, partial and result all went by, each as a wrap.
    assert len(wraps) >= 4
    everything = b"\n".join(seen)
    for needle in (secret_input, secret_param, progress_text, job.id, result.event.id):
        assert needle.encode() not in everything, needle
    # Only the DVM and the customer are named, each as the recipient of a wrap.
    for wrap in wraps:
        assert wrap["tags"][0][0] == "p"
        assert wrap["pubkey"] not in (dvm.public_key, customer.keys.public_key)


async def test_a_wrapped_job_on_a_relay_that_serves_wraps_only_to_their_recipient() -> None:
    """NIP-42: provider and customer each AUTH and get their own wraps; others get none."""
    async with Relay(port=0, auth=True) as relay:
        dvm = echo_dvm(relay.url)
        snoop = Keys.generate()
        async with (
            RelayPool(relays=[relay.url], signer=snoop) as pool,
            pool.subscribe({"kinds": [1059, 21059]}) as wraps,
            dvm.running(),
            customer_on(relay.url) as customer,
        ):
            await wraps.wait_stored()
            for envelope in (Envelope(), Envelope("nip59", 1059)):
                job = await customer.request(
                    "text", input=f"for us in {envelope}", to=dvm.public_key, envelope=envelope
                )
                result = await job.result(timeout=WAIT)
                assert (result.content, result.dvm) == (f"for us in {envelope}", dvm.public_key)
            # The snooper authenticated as itself: it is the recipient of nothing. A wrap
            # addressed to it, published last, is the first and only one it reads.
            await customer.pool.publish(
                wrap_signed(sign_event(customer.keys, kind=1, content="hi"), snoop.public_key),
                wait="all",
            )
            async with asyncio.timeout(WAIT):
                first = await anext(aiter(wraps))
            assert first.tag_value("p") == snoop.public_key


async def test_a_request_wrapped_to_a_dvm_is_for_it_without_a_p_tag(our_relay_url: str) -> None:
    """A wrap has one recipient: its inner request needs no p tag, and no category of ours."""
    dvm = echo_dvm(our_relay_url)
    async with dvm.running(), customer_on(our_relay_url) as customer:
        inner = sign_event(
            customer.keys,
            kind=25000,
            tags=[("category", "elsewhere"), ("t", "elsewhere"), ("i", "no p tag", "text")],
        )
        job = customer.watch(inner, dvm=dvm.public_key)
        await customer.pool.publish(wrap_request(inner, customer.keys, dvm.public_key))
        result = await job.result(timeout=WAIT)
    assert (result.content, result.dvm, result.request_id) == ("no p tag", dvm.public_key, inner.id)


@pytest.mark.parametrize("scheme", ["nip04", "nip44"])
async def test_legacy_encrypted_errors_and_progress_are_read_decrypted(
    our_relay_url: str, scheme: str
) -> None:
    dvm = make_dvm(our_relay_url)

    @dvm.job
    async def count(input: str, times: int, job: ProviderJob) -> str:
        await job.progress(f"counting {input!r}")
        return input * times

    async with dvm.running(), customer_on(our_relay_url) as customer:
        bad = await customer.request(
            5050,
            input="x",
            params={"times": "many"},
            to=dvm.public_key,
            encrypt=scheme,  # type: ignore[arg-type]
        )
        with pytest.raises(JobFailed) as failed:
            await bad.result(timeout=WAIT)
        assert failed.value.code == "INVALID_PARAMETER"
        assert "many" in str(failed.value)
        good = await customer.request(
            5050,
            input="ab",
            params={"times": "2"},
            to=dvm.public_key,
            encrypt=scheme,  # type: ignore[arg-type]
        )
        assert (await good.result(timeout=WAIT)).content == "abab"
        said = [u.content async for u in good.updates() if u.type is UpdateType.PROCESSING]
    assert said == ["counting 'ab'"]
