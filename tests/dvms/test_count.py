"""The count DVM: NIP-45 counts on its own relays or on relays the customer names."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
import pytest

from conftest import running_local_relay
from dvmkit.dvms import count
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys

from .conftest import (
    FAST,
    WAY_NAMES,
    ask,
    client_on,
    contents,
    customer_on,
    error_of,
    every_way,
    note,
    publish_all,
    status_of,
)


@pytest.fixture
async def other_relay() -> AsyncIterator[str]:
    """nostr-sdk's LocalRelay: the relay a customer names, not the DVM's own."""
    async with running_local_relay() as url:
        yield url


async def test_counts_on_its_relays_and_on_named_ones(relay_url: str, other_relay: str) -> None:
    alice, bob = Keys.generate(), Keys.generate()
    now = int(time.time()) - 100
    ours = [note(alice, f"a{n}", now + n) for n in range(5)] + [note(bob, "b", now)]
    theirs = [note(alice, f"x{n}", now + n) for n in range(3)]
    await publish_all(relay_url, ours)
    await publish_all(other_relay, theirs)
    by_alice = orjson.dumps({"kinds": [1], "authors": [alice.public_key]}).decode()
    either = orjson.dumps([{"authors": [alice.public_key]}, {"authors": [bob.public_key]}]).decode()
    async with (
        count.build(relays=[relay_url], limits=FAST).running(),
        customer_on(relay_url) as customer,
    ):
        here = await ask(customer, 5400, text=by_alice)
        ored = await ask(customer, 5400, text=either)
        there = await ask(customer, 5400, text=by_alice, params=[("relay", other_relay)])
        both = await ask(
            customer, 5400, text=by_alice, params=[("relay", other_relay), ("relay", relay_url)]
        )
        # NIP-90 registry: a legacy request may carry the filter as its content, no i tag.
        request = await customer.request(5400, content=by_alice)
        in_content = await customer.final(request.id)
    assert status_of(here) == "success"
    assert [here.content, ored.content, there.content, both.content] == ["5", "6", "3", "5"]
    assert in_content.content == "5", in_content.tags


async def test_count_through_the_customer_client_every_way(relay_url: str) -> None:
    alice, bob = Keys.generate(), Keys.generate()
    now = int(time.time()) - 100
    seeded = [note(alice, f"a{n}", now + n) for n in range(6)] + [
        note(bob, f"b{n}", now + n) for n in range(3)
    ]
    seeded.append(sign_event(alice, kind=7, content="+", tags=[["e", seeded[6].id]]))
    await publish_all(relay_url, seeded)
    since = now + 2
    recent_notes = {"kinds": [1], "authors": [alice.public_key, bob.public_key], "since": since}
    dvm = count.build(relays=[relay_url], limits=FAST)
    async with dvm.running(), client_on(relay_url) as client:
        by_alice = await every_way(
            client, dvm, input=orjson.dumps({"authors": [alice.public_key]}).decode()
        )
        recent = await every_way(client, dvm, input=orjson.dumps(recent_notes).decode())
    alices = sum(1 for e in seeded if e.pubkey == alice.public_key)
    recents = sum(1 for e in seeded if e.kind == 1 and e.created_at >= since)
    assert contents(by_alice) == dict.fromkeys(WAY_NAMES, str(alices))
    assert contents(recent) == dict.fromkeys(WAY_NAMES, str(recents))


@pytest.mark.parametrize(
    ("text", "params", "code"),
    [
        ("not json", [], "BAD_REQUEST"),
        ("", [], "BAD_REQUEST"),
        ('{"kinds": "one"}', [], "BAD_REQUEST"),
        ("[]", [], "BAD_REQUEST"),
        (orjson.dumps([{}] * 11).decode(), [], "BAD_REQUEST"),
        ('{"kinds": [1]}', [("relay", "http://example.invalid")], "INVALID_PARAMETER"),
        ('{"kinds": [1]}', [("relay", "not a url")], "INVALID_PARAMETER"),
        (
            '{"kinds": [1]}',
            [("relay", f"ws://127.0.0.1:{9000 + n}") for n in range(9)],
            "INVALID_PARAMETER",
        ),
        ('{"kinds": [1]}', [("relay", "ws://127.0.0.1:1")], "SERVICE_UNAVAILABLE"),
    ],
)
async def test_malformed_counts_get_precise_errors(
    relay_url: str, text: str, params: list[tuple[str, str]], code: str
) -> None:
    async with (
        count.build(relays=[relay_url], limits=FAST, wait=0.5).running(),
        customer_on(relay_url) as customer,
    ):
        answer = await ask(customer, 5400, text=text, params=params)
    assert error_of(answer)[0] == code
