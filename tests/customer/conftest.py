"""Fixtures for the customer: real relays (ours and nostr-sdk's), DVMs, a nostr-sdk responder,
and for the payment tests a dev wallet and priced DVMs.

The responder is a DVM written directly on nostr-sdk 0.45 (an independent implementation of
the wire format): it signs and publishes its answers with nostr-sdk, in both dialects, and can
make offers to open requests instead of answering them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import nostr_sdk
import pytest

from dvmkit.customer import Customer, CustomerTimeouts
from dvmkit.errors import JobError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.provider import DVM, Limits, PaymentProcessor

WAIT = 10.0
FAST_DVM = Limits(processing_notice=5.0, input_timeout=5.0, job_input_wait=5.0)
FAST_CUSTOMER = CustomerTimeouts(
    connect=5.0, discover=3.0, offer_window=0.3, ack=2.0, republish=2, silence=5.0
)
#: What the priced DVMs of the payment tests charge.
PRICE = 21_000


@pytest.fixture
async def dev_wallet(relay_url: str) -> AsyncIterator[DevWallet]:
    """The dev wallet (NIP-47) on the relay under test: accounts for customers and DVMs."""
    async with DevWallet(relays=[relay_url]) as wallet:
        yield wallet


def make_dvm(relays: str | Sequence[str], **kwargs: Any) -> DVM:
    """An echo DVM for tests: in-memory store, fresh keys, category text, legacy 5050."""
    options: dict[str, Any] = {
        "name": "Echo",
        "about": "echoes",
        "categories": ["text"],
        "legacy_kinds": [5050],
        "relays": [relays] if isinstance(relays, str) else list(relays),
        "limits": FAST_DVM,
    }
    options.update(kwargs)
    dvm = DVM(**options)
    return dvm


def echo_dvm(relays: str | Sequence[str], **kwargs: Any) -> DVM:
    dvm = make_dvm(relays, **kwargs)

    @dvm.job
    async def echo(input: str, prefix: str = "") -> str:
        return prefix + input

    return dvm


def priced(relay: str, payments: PaymentProcessor, *, fail: bool = False, **kwargs: Any) -> DVM:
    """A DVM charging PRICE, paid through ``payments``, that shouts its input (or fails)."""
    dvm = make_dvm(relay, price_msat=PRICE, payments=payments, **kwargs)

    @dvm.job
    async def shout(input: str) -> str:
        if fail:
            raise JobError("INTERNAL_ERROR", "the model is down")
        return input.upper()

    return dvm


def assert_no_secret(uri: ConnectionURI, *texts: str) -> None:
    """None of ``texts`` shows the NWC URI or its secret."""
    for text in texts:
        assert uri.reveal() not in text
        assert uri.keys.secret_hex() not in text


@contextlib.asynccontextmanager
async def customer_on(
    relays: str | Sequence[str], timeouts: CustomerTimeouts = FAST_CUSTOMER, **kwargs: Any
) -> AsyncIterator[Customer]:
    urls = [relays] if isinstance(relays, str) else list(relays)
    async with Customer(relays=urls, timeouts=timeouts, **kwargs) as customer:
        yield customer


class SdkResponder:
    """A DVM on nostr-sdk: answers category ``text`` (modern) and kind 5050 (legacy).

    Args:
        offer_msat: when set, an open modern request gets an ``offer`` at this price instead
            of an answer; a request targeted to it is answered.
        payment_msat: when set, every request gets ``payment-required`` at this price.
    """

    def __init__(
        self,
        relay: str,
        *,
        offer_msat: int | None = None,
        payment_msat: int | None = None,
        eta: int | None = None,
    ) -> None:
        self.keys = Keys.generate()
        self.sdk_keys = nostr_sdk.Keys.parse(self.keys.secret_hex())
        self.pubkey = self.keys.public_key
        self.relay = relay
        self.offer_msat = offer_msat
        self.payment_msat = payment_msat
        self.eta = eta
        self.client = nostr_sdk.Client()
        self.seen: list[Event] = []

    def sign(self, kind: int, tags: Sequence[Sequence[str]], content: str = "") -> nostr_sdk.Event:
        builder = nostr_sdk.EventBuilder(nostr_sdk.Kind(kind), content).tags(
            [nostr_sdk.Tag.parse(list(tag)) for tag in tags]
        )
        return builder.finalize(self.sdk_keys)

    async def answer(self, request: Event) -> None:
        self.seen.append(request)
        text = next((t[1] for t in request.tags if t[0] == "i" and len(t) > 1), request.content)
        targeted = self.pubkey in request.tag_values("p")
        base = [["e", request.id], ["p", request.pubkey]]
        if request.kind == 25000:
            base.append(["category", "text"])
            if self.payment_msat is not None:
                tags = [*base, ["status", "payment-required"], ["amount", str(self.payment_msat)]]
                out = self.sign(25000, tags)
            elif self.offer_msat is not None and not targeted:
                tags = [*base, ["status", "offer"], ["amount", str(self.offer_msat)]]
                if self.eta is not None:
                    tags.append(["eta", str(self.eta)])
                out = self.sign(25000, tags)
            else:
                out = self.sign(25000, [*base, ["status", "success"]], f"sdk:{text}")
        elif self.payment_msat is not None:
            tags = [["status", "payment-required"], ["amount", str(self.payment_msat)], *base]
            out = self.sign(7000, tags)
        else:
            out = self.sign(request.kind + 1000, base, f"sdk:{text}")
        await self.client.send_event(out)

    async def _read(self, stream: Any) -> None:
        while (note := await stream.next()) is not None and not note.is_shutdown():
            if not note.is_new_event():
                continue
            event = Event.from_json(note.event.as_json())
            if event.tag_value("status") is not None or event.pubkey == self.pubkey:
                continue
            if event.kind == 25000 and "text" not in event.tag_values("t"):
                continue
            await self.answer(event)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SdkResponder]:
        await self.client.add_relay(nostr_sdk.RelayUrl.parse(self.relay))
        await self.client.try_connect(timedelta(seconds=WAIT))
        me = nostr_sdk.PublicKey.parse(self.pubkey)
        filters = [
            nostr_sdk.Filter().kind(nostr_sdk.Kind(25000)).pubkey(me),
            nostr_sdk.Filter().kind(nostr_sdk.Kind(25000)).hashtag("text"),
            nostr_sdk.Filter().kind(nostr_sdk.Kind(5050)).since(nostr_sdk.Timestamp.now()),
        ]
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read(self.client.notifications()))
            for flt in filters:
                await self.client.subscribe(nostr_sdk.ReqTarget.auto([flt]))
            # A relay reads one connection's messages in order: once a later query's EOSE is
            # back, the subscriptions above are open (else a request sent now may be missed).
            probe = nostr_sdk.Filter().kind(nostr_sdk.Kind(5050)).pubkey(me).limit(1)
            await self.client.fetch_events(
                nostr_sdk.ReqTarget.auto([probe]), timeout=timedelta(seconds=WAIT)
            )
            try:
                yield self
            finally:
                await self.client.shutdown()
