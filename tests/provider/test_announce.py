"""Announcements (11999, NIP-89 31990) and heartbeats (11998) as the DVM publishes them."""

from __future__ import annotations

import asyncio
from typing import Literal

import nostr_sdk
import orjson

from dvmkit.nostr.event import Event
from dvmkit.protocol.announce import parse_announcement
from dvmkit.protocol.heartbeat import parse_heartbeat
from dvmkit.protocol.job import Dialect
from dvmkit.provider import DVM, Limits
from dvmkit.relay.pool import RelayPool

from .conftest import WAIT, Customer, customer_on, make_dvm, now

KINDS = (11999, 31990, 11998)


def described_dvm(relay: str, **kwargs: object) -> DVM:
    dvm = make_dvm(relay, heartbeat_interval=60, d="test-dvm", **kwargs)

    @dvm.job
    async def shout(
        input: str, times: int = 1, lang: Literal["en", "es"] = "en", note: str | None = None
    ) -> str:
        return input

    return dvm


async def published(relay: str, dvm: DVM, customer: Customer) -> dict[int, Event]:
    """Wait until the DVM's three events are on the relay, then fetch them with nostr-sdk."""
    async with RelayPool(relays=[relay]) as pool:
        flt = {"kinds": list(KINDS), "authors": [dvm.public_key]}
        async with asyncio.timeout(WAIT), pool.subscribe(flt) as sub:
            seen: set[int] = set()
            async for event in sub:
                seen.add(event.kind)
                if seen == set(KINDS):
                    break
    author = nostr_sdk.PublicKey.parse(dvm.public_key)
    theirs = await customer.fetch(
        nostr_sdk.Filter().author(author).kinds([nostr_sdk.Kind(k) for k in KINDS])
    )
    events: dict[int, Event] = {}
    for event in theirs:
        assert event.verify()
        events[event.kind().as_u16()] = Event.from_json(event.as_json())
    assert sorted(events) == sorted(KINDS)
    return events


async def test_announcement_11999(relay_url: str, customer: Customer) -> None:
    dvm = described_dvm(relay_url)
    async with dvm.running():
        event = (await published(relay_url, dvm, customer))[11999]
    schema = {
        "type": "object",
        "properties": {
            "times": {"type": "integer", "default": 1},
            "lang": {"type": "string", "enum": ["en", "es"], "default": "en"},
            "note": {"type": "string"},
        },
        "required": [],
        "additionalProperties": False,
    }
    assert dvm.params_schema() == schema
    assert orjson.loads(event.content) == {
        "name": "Test DVM",
        "about": "answers tests",
        "picture": "https://example.invalid/dvm.png",
        "params": schema,
    }
    assert list(event.tags) == [
        ("name", "Test DVM"),
        ("about", "answers tests"),
        ("picture", "https://example.invalid/dvm.png"),
        ("category", "text"),
        ("t", "text"),
        ("k", "25000"),
        ("k", "5050"),
        ("k", "5002"),
        ("relays", relay_url),
        ("encryption", "nip44_v2"),
    ]
    ann = parse_announcement(event)
    assert (ann.pubkey, ann.name, ann.categories) == (dvm.public_key, "Test DVM", ("text",))
    assert ann.kinds == (25000, 5050, 5002)
    assert ann.dialects == (Dialect.MODERN, Dialect.LEGACY)
    assert ann.relays == (relay_url,)
    assert ann.params == schema
    assert (ann.price_msat, ann.payment_methods, ann.encryption) == (None, (), True)


async def test_a_dvm_with_encryption_off_announces_none(our_relay_url: str) -> None:
    dvm = described_dvm(our_relay_url, encryption="off")
    async with customer_on(our_relay_url) as customer, dvm.running():
        events = await published(our_relay_url, dvm, customer)
    assert events[11999].tag("encryption") is None
    body = orjson.loads(events[31990].content)
    assert (body["encryptionSupported"], body["supportsEncryption"]) == (False, False)
    assert not parse_announcement(events[11999]).encryption
    assert not parse_announcement(events[31990]).encryption


async def test_nip89_31990(relay_url: str, customer: Customer) -> None:
    dvm = described_dvm(relay_url)
    async with dvm.running():
        event = (await published(relay_url, dvm, customer))[31990]
    assert list(event.tags) == [("d", "test-dvm"), ("k", "5050"), ("k", "5002"), ("t", "text")]
    body = orjson.loads(event.content)
    assert body == {
        "name": "Test DVM",
        "about": "answers tests",
        "picture": "https://example.invalid/dvm.png",
        "nip90Params": dvm.params_schema(),
        # Both spellings clients read (SPECS.md §1.8).
        "encryptionSupported": True,
        "supportsEncryption": True,
    }
    ann = parse_announcement(event)
    assert (ann.d, ann.kinds, ann.dialects) == ("test-dvm", (5050, 5002), (Dialect.LEGACY,))


async def test_heartbeat_11998(relay_url: str, customer: Customer) -> None:
    dvm = described_dvm(relay_url)
    async with dvm.running():
        events = await published(relay_url, dvm, customer)
    beat = events[11998]
    assert list(beat.tags) == [
        ("status", "online"),
        ("expiration", str(beat.created_at + 3 * 60)),
        ("d", events[31990].tag_value("d")),  # what Amethyst matches on
        ("load", "0.00"),
    ]
    assert orjson.loads(beat.content) == {"status": "online", "load": 0.0, "queue": 0}
    parsed = parse_heartbeat(beat)
    assert (parsed.d, parsed.status, parsed.load, parsed.queue) == ("test-dvm", "online", 0, 0)
    assert parsed.expiration == beat.created_at + 180
    assert parsed.is_alive(now())


async def test_heartbeat_reports_load_and_queue(relay_url: str, customer: Customer) -> None:
    dvm = make_dvm(relay_url, heartbeat_interval=1, limits=Limits(concurrency=1))
    release = asyncio.Event()

    @dvm.job
    async def wait(input: str) -> str:
        await release.wait()
        return input

    async with dvm.running(), RelayPool(relays=[relay_url]) as pool:
        first = await customer.request(25000, content="a", tags=[["t", "text"]])
        second = await customer.request(25000, content="b", tags=[["t", "text"]])
        flt = {"kinds": [11998], "authors": [dvm.public_key], "since": now()}
        async with asyncio.timeout(WAIT), pool.subscribe(flt) as sub:
            async for event in sub:
                beat = parse_heartbeat(event)
                if beat.queue == 1:
                    break
        assert beat.load == 1.0
        assert beat.expiration == event.created_at + 3
        release.set()
        await customer.final(first.id)
        await customer.final(second.id)


async def test_priced_dvm_announces_its_price(relay_url: str, customer: Customer) -> None:
    from .test_payment_hook import Processor

    dvm = described_dvm(relay_url, price_msat=21_000, payments=Processor())
    async with dvm.running():
        event = (await published(relay_url, dvm, customer))[11999]
    assert event.tag("price") == ("price", "21000", "msat", "per-job")
    assert event.tag("payment") == ("payment", "bolt11")
    ann = parse_announcement(event)
    assert (ann.price_msat, ann.payment_methods) == (21_000, ("bolt11",))
