"""A DVM played by the test, for the customer's payment tests: a real key with a real
dev-wallet account, publishing on the real relay exactly the answers a test chooses; and the
helpers those tests share (a paying customer, waiting for updates)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from dvmkit.customer import Customer, Job, Update, UpdateType
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.payments.cashu import CashuWallet
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.payments.nwc import NWCClient
from dvmkit.protocol.job import StatusKind, answerable_request
from dvmkit.protocol.payment import is_payment
from dvmkit.protocol.response import result_event, status_event
from dvmkit.relay.pool import RelayPool

from .conftest import WAIT, customer_on


class HandDVM:
    """A DVM the test plays: a key, a dev-wallet account, a pool to publish with, and a
    subscription to what is ``p``-tagged to it (requests and payment messages)."""

    def __init__(self, relay: str, wallet: DevWallet) -> None:
        self.keys = Keys.generate()
        self.pubkey = self.keys.public_key
        self.account = wallet.create_account(name="dvm")
        self.dev = wallet
        self.pool = RelayPool(relays=[relay], signer=self.keys, fetch_info=False)
        self.nwc = NWCClient(self.account, timeout=WAIT)
        self.requests: asyncio.Queue[Event] = asyncio.Queue()
        self.payments: asyncio.Queue[Event] = asyncio.Queue()
        self._seen: set[str] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HandDVM]:
        mine = {"kinds": [25000, 5050], "#p": [self.pubkey], "since": int(time.time()) - 5}
        async with self.pool, self.nwc, self.pool.subscribe(mine) as sub:
            await sub.wait_stored()
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._read(sub))
                try:
                    yield self
                finally:
                    reader.cancel()

    async def _read(self, events: AsyncIterator[Event]) -> None:
        async for event in events:
            if is_payment(event):
                self.payments.put_nowait(event)
            elif event.tag_value("status") is None and event.id not in self._seen:
                self._seen.add(event.id)  # a request re-published is the same request
                self.requests.put_nowait(event)

    async def next_request(self) -> Event:
        async with asyncio.timeout(WAIT):
            return await self.requests.get()

    @property
    def balance(self) -> int:
        return self.dev.balance(self.account.client)

    async def invoice(self, msat: int) -> str:
        invoice = (await self.nwc.make_invoice(msat, description="a job")).invoice
        assert invoice is not None
        return invoice

    async def settled(self, invoice: str) -> bool:
        return (await self.nwc.lookup_invoice(invoice=invoice)).settled

    async def say(
        self,
        request: Event,
        status: StatusKind,
        *,
        extra: tuple[tuple[str, ...], ...] = (),
        **fields: object,
    ) -> Event:
        """Publish a status about ``request``, signed by this DVM."""
        unsigned = status_event(
            answerable_request(request),
            status,
            provider=self.pubkey,
            created_at=int(time.time()),
            extra_tags=extra,
            **fields,  # type: ignore[arg-type]
        )
        return await self._publish(unsigned.sign(self.keys))

    async def ask_payment(
        self,
        amount_msat: int,
        *,
        request: Event | None = None,
        bolt11: str | None = None,
        **fields: Any,
    ) -> str:
        """Answer ``request`` (the next one to arrive when None) with ``payment-required``
        for ``amount_msat`` and ``bolt11`` (a fresh invoice of ours for that amount when
        None); returns the invoice sent."""
        if request is None:
            request = await self.next_request()
        if bolt11 is None:
            bolt11 = await self.invoice(amount_msat)
        status = StatusKind.PAYMENT_REQUIRED
        await self.say(request, status, amount_msat=amount_msat, bolt11=bolt11, **fields)
        return bolt11

    async def result(self, request: Event, content: str) -> Event:
        unsigned = result_event(
            answerable_request(request),
            content,
            provider=self.pubkey,
            created_at=int(time.time()),
        )
        return await self._publish(unsigned.sign(self.keys))

    async def _publish(self, event: Event) -> Event:
        outcome = await self.pool.publish(event, wait="all", timeout=WAIT)
        assert outcome.ok, outcome
        return event


@contextlib.asynccontextmanager
async def paying_customer(
    relay: str, uri: ConnectionURI | None = None, cashu: CashuWallet | None = None
) -> AsyncIterator[Customer]:
    """A customer with an NWC wallet (entered here, as a caller must) and/or Cashu."""
    async with contextlib.AsyncExitStack() as stack:
        wallet = None
        if uri is not None:
            wallet = await stack.enter_async_context(NWCClient(uri, timeout=WAIT))
        yield await stack.enter_async_context(customer_on(relay, wallet=wallet, cashu=cashu))


async def until(job: Job, kind: UpdateType) -> Update:
    """The first update of ``kind``, waiting for it."""
    async with asyncio.timeout(WAIT):
        async for update in job.updates():
            if update.type is kind:
                return update
    raise AssertionError(f"the job ended without a {kind} update")


def kinds(updates: list[Update]) -> list[UpdateType]:
    return [u.type for u in updates]


async def updates_of(job: Job, kind: UpdateType) -> list[Update]:
    """Every update of ``kind`` the job had (waits for the job to end)."""
    async with asyncio.timeout(WAIT):
        return [u async for u in job.updates() if u.type is kind]
