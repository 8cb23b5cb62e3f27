"""Fixtures for the built-in DVMs: our relay, seeded by a publisher, and a running DVM.

Two customers drive them. The provider tests' nostr-sdk :class:`~provider.conftest.Customer`
checks the wire format with an independent implementation: requests are signed and sent by
nostr-sdk, answers verified by it before our parser reads them. :func:`client_on` is
dvmkit's own :class:`~dvmkit.customer.Customer`, for the end-to-end tests through the
customer client in every way it can ask (targeted, open, legacy).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence

import orjson
import pytest

from conftest import RELAYS_UNDER_TEST, running_relay
from dvmkit.customer import Customer as Client
from dvmkit.customer import CustomerTimeouts, JobResult
from dvmkit.customer.request import ParamValue
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import MODERN_KIND
from dvmkit.provider import DVM, Limits
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay
from provider.conftest import Customer, customer_on, error_of, status_of

__all__ = ["FAST", "Customer", "customer_on", "error_of", "result_of", "status_of"]

FAST = Limits(processing_notice=5.0, input_timeout=5.0, job_input_wait=5.0)
#: How long a test waits for an answer that must come (a failure, not a pace).
WAIT = 10.0
#: dvmkit's customer with short windows: a free result is taken at once anyway.
FAST_CLIENT = CustomerTimeouts(
    connect=5.0, discover=3.0, offer_window=0.3, ack=2.0, republish=2, silence=WAIT
)


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    async with Relay(port=0) as relay:
        yield relay.url


@pytest.fixture(params=RELAYS_UNDER_TEST)
async def any_relay_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The relay under the test: dvmkit's own, then nostr-sdk's LocalRelay."""
    async with running_relay(request.param) as url:
        yield url


@contextlib.asynccontextmanager
async def client_on(relay: str, keys: Keys | None = None) -> AsyncIterator[Client]:
    """dvmkit's customer client, connected to ``relay``."""
    async with Client(relays=[relay], keys=keys, timeouts=FAST_CLIENT) as client:
        yield client


#: The ways a customer can ask a DVM: (name, modern?, targeted?).
WAYS = (
    ("targeted", True, True),
    ("open", True, False),
    ("legacy targeted", False, True),
    ("legacy open", False, False),
)
WAY_NAMES = tuple(name for name, _modern, _targeted in WAYS)


async def every_way(
    client: Client,
    dvm: DVM,
    *,
    input: str | None = None,
    params: Mapping[str, ParamValue] | None = None,
) -> dict[str, JobResult]:
    """Ask ``dvm`` the same job in every way (see :data:`WAYS`); the results by way.

    The DVM's first category is the modern target and its first legacy kind the legacy one;
    each result must come from ``dvm``, as the dialect's result kind.
    """
    category, kind = dvm.categories[0], dvm.legacy_kinds[0]
    results: dict[str, JobResult] = {}
    for name, modern, targeted in WAYS:
        job = await client.request(
            category if modern else kind,
            input=input,
            params=params,
            to=dvm.public_key if targeted else None,
            legacy=not modern,
        )
        result = await job.result(timeout=WAIT)
        assert result.dvm == dvm.public_key, name
        assert result.event.kind == (MODERN_KIND if modern else kind + 1000), name
        results[name] = result
    return results


def contents(results: Mapping[str, JobResult]) -> dict[str, str]:
    """The result content of each way of :func:`every_way`."""
    return {way: result.content for way, result in results.items()}


def e_list(event_ids: Sequence[str]) -> str:
    """A NIP-90 ``e``-tag list result (kinds 6300, 6302) as the compact JSON a DVM sends."""
    return json.dumps([["e", i] for i in event_ids], separators=(",", ":"))


async def publish_all(relay: str, events: Sequence[Event]) -> None:
    """Store ``events`` on ``relay``; every one must be accepted."""
    async with RelayPool(relays=[relay]) as pool:
        for event in events:
            result = await pool.publish(event)
            assert result.ok, (event.kind, result)


def note(keys: Keys, content: str, created_at: int) -> Event:
    return sign_event(keys, kind=1, content=content, created_at=created_at)


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
