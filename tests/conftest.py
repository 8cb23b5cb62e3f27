"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

# One real Cashu mint for the whole session, for every test that takes `cashu_mint`.
from payments.mint import cashu_mint_fixture  # noqa: F401

# CI machines have 2 cores and share them with relays under test: no per-example deadline.
settings.register_profile(
    "dvmkit", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("dvmkit")


@contextlib.asynccontextmanager
async def running_local_relay() -> AsyncIterator[str]:
    """nostr-sdk's LocalRelay on a random port: the independent second relay.

    Its default rate limit lets only ~60 of 500 pipelined events through, so raise it.
    """
    import nostr_sdk

    relay = (
        nostr_sdk.LocalRelayBuilder()
        .addr("127.0.0.1")
        .rate_limit(nostr_sdk.RateLimit(max_reqs=10_000, notes_per_minute=10_000_000))
        .build()
    )
    await relay.run()
    try:
        yield str(await relay.url())
    finally:
        relay.shutdown()


@contextlib.asynccontextmanager
async def running_relay(kind: str) -> AsyncIterator[str]:
    """A relay on a random port: dvmkit's own (``"ours"``) or nostr-sdk's (``"nostr-sdk"``)."""
    if kind == "ours":
        from dvmkit.relay.server import Relay

        async with Relay(port=0) as relay:
            yield relay.url
    else:
        async with running_local_relay() as url:
            yield url


#: The relays end-to-end tests run against: ours, and an independent implementation.
RELAYS_UNDER_TEST = ("ours", "nostr-sdk")


@pytest.fixture(params=RELAYS_UNDER_TEST)
async def relay_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The relay under test: dvmkit's own, then nostr-sdk's LocalRelay."""
    async with running_relay(request.param) as url:
        yield url


@pytest.fixture
async def our_relay_url() -> AsyncIterator[str]:
    """dvmkit's relay alone, for tests that need a second relay or our relay's limits."""
    from dvmkit.relay.server import Relay

    async with Relay(port=0) as relay:
        yield relay.url


@pytest.fixture
async def local_relay() -> AsyncIterator[str]:
    async with running_local_relay() as url:
        yield url
