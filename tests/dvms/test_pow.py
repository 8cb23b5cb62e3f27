"""The pow DVM: mines an event the customer then signs; errors, event inputs, deadlines."""

from __future__ import annotations

import dataclasses
import time

import nostr_sdk
import orjson
import pytest

from dvmkit.dvms import pow as pow_dvm
from dvmkit.nostr import nip13
from dvmkit.nostr.event import UnsignedEvent, sign_event
from dvmkit.nostr.keys import Keys

from .conftest import FAST, ask, customer_on, error_of, publish_all, result_of


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
