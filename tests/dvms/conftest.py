"""Fixtures for the built-in DVMs: our relay, seeded by a publisher, and a running DVM.

Customers are the provider tests' nostr-sdk :class:`~provider.conftest.Customer`: requests
are signed and sent by nostr-sdk, answers verified by it before our parser reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM, Limits
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay
from provider.conftest import Customer, customer_on, error_of, status_of

__all__ = ["FAST", "Customer", "customer_on", "error_of", "result_of", "status_of"]

FAST = Limits(processing_notice=5.0, input_timeout=5.0, job_input_wait=5.0)


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    async with Relay(port=0) as relay:
        yield relay.url


async def publish_all(relay: str, events: Sequence[Event]) -> None:
    """Store ``events`` on ``relay``; every one must be accepted."""
    async with RelayPool(relays=[relay]) as pool:
        for event in events:
            result = await pool.publish(event)
            assert result.ok, (event.kind, result)


def note(keys: Keys, content: str, created_at: int) -> Event:
    return sign_event(keys, kind=1, content=content, created_at=created_at)


@contextlib.asynccontextmanager
async def serving(dvm: DVM) -> AsyncIterator[DVM]:
    async with dvm.running():
        yield dvm


async def ask(
    customer: Customer,
    kind: int,
    *,
    text: str | None = None,
    params: Sequence[tuple[str, str]] = (),
    tags: Sequence[Sequence[str]] = (),
) -> Event:
    """Send a legacy request and return its final answer."""
    all_tags: list[Sequence[str]] = [] if text is None else [["i", text, "text"]]
    all_tags += [["param", name, value] for name, value in params]
    all_tags += list(tags)
    request = await customer.request(kind, tags=all_tags)
    return await customer.final(request.id)


def result_of(answer: Event) -> object:
    """The decoded JSON content of a successful answer."""
    assert status_of(answer) == "success", answer.tags
    return orjson.loads(answer.content)
