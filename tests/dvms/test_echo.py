"""The echo DVM: both dialects, its announcement, and every way the customer client asks."""

from __future__ import annotations

import nostr_sdk

from dvmkit.dvms import echo
from dvmkit.nostr.event import Event
from dvmkit.protocol.job import MODERN_KIND

from .conftest import FAST, WAY_NAMES, ask, client_on, customer_on, every_way, status_of


async def test_echo_answers_legacy_and_modern_and_announces(relay_url: str) -> None:
    dvm = echo.build(relays=[relay_url], limits=FAST)
    async with dvm.running(), customer_on(relay_url) as customer:
        answer = await ask(customer, 5050, text="hello, dvm")
        assert answer.kind == 6050
        assert answer.content == "hello, dvm"
        # The modern dialect: an open kind-25000 request of category echo.
        request = await customer.request(
            MODERN_KIND, tags=[["t", "echo"], ["i", "ünïcode ⚡", "text"]]
        )
        final = await customer.final(request.id)
        assert status_of(final) == "success"
        assert final.pubkey == dvm.public_key
        announced = await customer.fetch(
            nostr_sdk.Filter()
            .kind(nostr_sdk.Kind(11999))
            .author(nostr_sdk.PublicKey.parse(dvm.public_key))
        )
    assert final.content == "ünïcode ⚡"
    assert len(announced) == 1
    announcement = Event.from_json(announced[0].as_json())
    assert "echo" in announcement.tag_values("t"), announcement.tags
    assert "5050" in announcement.tag_values("k"), announcement.tags


async def test_echo_through_the_customer_client_every_way(relay_url: str) -> None:
    text = 'ünïcode ⚡ and\nnewlines, "quotes" [1, 2]'
    dvm = echo.build(relays=[relay_url], limits=FAST)
    async with dvm.running(), client_on(relay_url) as client:
        results = await every_way(client, dvm, input=text)
    assert {way: r.content for way, r in results.items()} == dict.fromkeys(WAY_NAMES, text)
