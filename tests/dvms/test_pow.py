"""The pow DVM: mines an event the customer then signs; errors, event inputs, deadlines, and
cancellation through the customer client stopping the miner's thread."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import nostr_sdk
import orjson
import pytest

from dvmkit.dvms import pow as pow_dvm
from dvmkit.errors import JobCancelled
from dvmkit.nostr import nip13
from dvmkit.nostr.event import Event, UnsignedEvent, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.subscription import Subscription

from .conftest import (
    FAST,
    WAIT,
    WAY_NAMES,
    ask,
    client_on,
    customer_on,
    error_of,
    every_way,
    publish_all,
    result_of,
    status_of,
)


async def test_mines_a_text_event_that_the_customer_signs(relay_url: str) -> None:
    author = Keys.generate()
    draft = UnsignedEvent(author.public_key, 1_700_000_000, 1, (("t", "pow"),), "work for me")
    async with (
        pow_dvm.build(relays=[relay_url], limits=FAST).running(),
        customer_on(relay_url, author) as customer,
    ):
        answer = await ask(customer, 5970, text=draft.to_json(), params=[("difficulty", "12")])
        registry = await ask(customer, 5970, text=draft.to_json(), params=[("pow", "4")])
    mined = result_of(answer)
    assert isinstance(mined, dict)
    assert "sig" not in mined
    event = UnsignedEvent.from_dict(mined)
    assert event.id == mined["id"]
    assert nip13.has_work(event.id, event.tags, 12)
    assert (event.pubkey, event.content, event.tags[0]) == (
        draft.pubkey,
        draft.content,
        ("t", "pow"),
    )
    # The customer signs what came back; nostr-sdk accepts the signed, mined event.
    signed = event.sign(author)
    assert nostr_sdk.Event.from_json(signed.to_json()).verify()
    assert nostr_sdk.get_leading_zero_bits(bytes.fromhex(signed.id)) >= 12
    again = result_of(registry)
    assert isinstance(again, dict)
    assert nip13.committed_target(UnsignedEvent.from_dict(again).tags) == 4


async def test_mines_a_stored_event_named_by_id(relay_url: str) -> None:
    author = Keys.generate()
    stored = sign_event(author, kind=1, content="stored note", created_at=int(time.time()) - 60)
    await publish_all(relay_url, [stored])
    async with (
        pow_dvm.build(relays=[relay_url], limits=FAST).running(),
        customer_on(relay_url) as customer,
    ):
        answer = await ask(
            customer, 5970, tags=[["i", stored.id, "event"], ["param", "difficulty", "8"]]
        )
    mined = result_of(answer)
    assert isinstance(mined, dict)
    event = UnsignedEvent.from_dict(mined)
    assert (event.pubkey, event.content, event.created_at) == (
        stored.pubkey,
        stored.content,
        stored.created_at,
    )
    assert nip13.has_work(event.id, event.tags, 8)


@pytest.mark.parametrize(
    ("text", "params", "code"),
    [
        ("{}", [], "MISSING_PARAMETER"),
        ("{}", [("difficulty", "33")], "INVALID_PARAMETER"),
        ("{}", [("difficulty", "0")], "INVALID_PARAMETER"),
        ("{}", [("difficulty", "lots")], "INVALID_PARAMETER"),
        ("{}", [("difficulty", "8"), ("colour", "red")], "INVALID_PARAMETER"),
        ("not json", [("difficulty", "8")], "BAD_REQUEST"),
        ("[1, 2]", [("difficulty", "8")], "BAD_REQUEST"),
        ('{"pubkey": "00", "kind": 1}', [("difficulty", "8")], "BAD_REQUEST"),
        ("{" * 5000, [("difficulty", "8")], "BAD_REQUEST"),
    ],
)
async def test_malformed_requests_get_precise_errors(
    relay_url: str, text: str, params: list[tuple[str, str]], code: str
) -> None:
    async with (
        pow_dvm.build(relays=[relay_url], limits=FAST).running(),
        customer_on(relay_url) as customer,
    ):
        answer = await ask(customer, 5970, text=text, params=params)
    assert error_of(answer)[0] == code


async def test_a_job_past_its_deadline_ends_with_timeout(relay_url: str) -> None:
    author = Keys.generate()
    draft = UnsignedEvent(author.public_key, 1_700_000_000, 1, (), "too much work")
    limits = dataclasses.replace(FAST, job_timeout=0.3)
    async with (
        pow_dvm.build(relays=[relay_url], limits=limits).running(),
        customer_on(relay_url) as customer,
    ):
        answer = await ask(customer, 5970, text=draft.to_json(), params=[("difficulty", "32")])
        # The miner thread stopped with the job: a quick job still runs on the same DVM.
        quick = await ask(customer, 5970, text=draft.to_json(), params=[("difficulty", "2")])
    assert error_of(answer)[0] == "TIMEOUT"
    assert isinstance(orjson.loads(quick.content), dict)


def expected_mined(draft: UnsignedEvent, mined: dict[str, Any], bits: int) -> dict[str, Any]:
    """What a mined ``draft`` must be, exactly: its own fields, a nonce tag committing to
    ``bits`` (the nonce value is the miner's find), and the id nostr-sdk computes for that."""
    nonce = next(t for t in mined["tags"] if t[0] == "nonce")[1]
    tags = [*map(list, draft.tags), ["nonce", nonce, str(bits)]]
    event_id = nostr_sdk.EventId.compute(
        nostr_sdk.PublicKey.parse(draft.pubkey),
        nostr_sdk.Timestamp.from_secs(draft.created_at),
        nostr_sdk.Kind(draft.kind),
        [nostr_sdk.Tag.parse(t) for t in tags],
        draft.content,
    )
    return {
        "id": event_id.to_hex(),
        "pubkey": draft.pubkey,
        "created_at": draft.created_at,
        "kind": draft.kind,
        "tags": tags,
        "content": draft.content,
    }


async def test_pow_through_the_customer_client_every_way(relay_url: str) -> None:
    author = Keys.generate()
    draft = UnsignedEvent(
        author.public_key, int(time.time()) - 30, 1, (("t", "pow"), ("p", "cd" * 32)), "mine me"
    )
    dvm = pow_dvm.build(relays=[relay_url], limits=FAST)
    async with dvm.running(), client_on(relay_url, author) as client:
        results = await every_way(client, dvm, input=draft.to_json(), params={"difficulty": 10})
    assert set(results) == set(WAY_NAMES)
    for way, result in results.items():
        mined = orjson.loads(result.content)
        assert mined == expected_mined(draft, mined, 10), way
        assert nostr_sdk.get_leading_zero_bits(bytes.fromhex(mined["id"])) >= 10, way
        # Signed by its author, the mined event is one nostr-sdk accepts.
        signed = UnsignedEvent.from_dict(mined).sign(author)
        assert nostr_sdk.Event.from_json(signed.to_json()).verify(), way


class MinerProbe:
    """Wraps the real NIP-13 miner to see, from the test, when a hard job's thread runs and
    when it returns (threading events: the miner runs in a worker thread)."""

    def __init__(self, real: Callable[..., UnsignedEvent | None], hard: int) -> None:
        self.real, self.hard = real, hard
        self.started = threading.Event()
        self.returned = threading.Event()
        self.outcomes: list[UnsignedEvent | None] = []

    def __call__(self, event: UnsignedEvent, difficulty: int, **kwargs: Any) -> Any:
        if difficulty != self.hard:
            return self.real(event, difficulty, **kwargs)
        self.started.set()
        try:
            outcome = self.real(event, difficulty, **kwargs)
            self.outcomes.append(outcome)
            return outcome
        finally:
            self.returned.set()


async def until_set(flag: threading.Event) -> bool:
    """Await a threading event without blocking the loop (bounded by :data:`WAIT`)."""
    return await asyncio.to_thread(flag.wait, WAIT)


async def dvm_says_cancelled(sub: Subscription) -> Event:
    """The first answer on ``sub`` with the status ``cancelled``."""
    async for event in sub:
        if status_of(event) == "cancelled":
            return event
    raise AssertionError("the subscription ended")


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
async def test_cancelling_a_hard_job_stops_the_miner(
    relay_url: str, legacy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = MinerProbe(nip13.mine, hard=32)
    monkeypatch.setattr(nip13, "mine", probe)
    author = Keys.generate()
    draft = UnsignedEvent(author.public_key, int(time.time()) - 30, 1, (), "far too much work")
    dvm = pow_dvm.build(relays=[relay_url], limits=dataclasses.replace(FAST, concurrency=1))
    target: str | int = 5970 if legacy else "pow"
    async with (
        dvm.running(),
        client_on(relay_url, author) as client,
        RelayPool(relays=[relay_url]) as pool,
    ):
        job = await client.request(
            target, input=draft.to_json(), params={"difficulty": 32}, to=dvm.public_key
        )
        assert await until_set(probe.started)
        # Listening (past EOSE) before the cancel: the DVM's answer to it cannot pass us by,
        # even as an ephemeral kind-25000 event.
        flt = {"#e": [job.id], "authors": [dvm.public_key]}
        async with pool.subscribe(flt) as answers:
            async with asyncio.timeout(WAIT):
                await answers.wait_stored()
            await job.cancel()
            with pytest.raises(JobCancelled):
                await job.result(timeout=WAIT)
            async with asyncio.timeout(WAIT):
                cancelled = await dvm_says_cancelled(answers)
        # The mining thread returned, having found nothing: it stopped, not finished.
        assert await until_set(probe.returned)
        assert probe.outcomes == [None]
        # With concurrency 1 the slot is free again: the next job is answered.
        quick = await client.request(
            target, input=draft.to_json(), params={"difficulty": 4}, to=dvm.public_key
        )
        mined = orjson.loads((await quick.result(timeout=WAIT)).content)
        stats = dvm.stats()
    assert cancelled.kind == (7000 if legacy else 25000)
    assert cancelled.tag_values("p") == [author.public_key]
    assert mined == expected_mined(draft, mined, 4)
    assert (stats.cancelled, stats.done) == (1, 1)
