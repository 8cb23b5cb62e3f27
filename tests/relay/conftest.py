"""Fixtures for dvmkit's own relay: an in-process relay on a random port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dvmkit.relay.server import Relay


@pytest.fixture
async def our_relay() -> AsyncIterator[str]:
    """dvmkit's relay, in memory, on a random port; yields its ``ws://`` URL."""
    async with Relay(port=0) as relay:
        yield relay.url


@pytest.fixture
async def our_relay_auth() -> AsyncIterator[str]:
    """dvmkit's relay with ``auth=True``: gift wraps only to their NIP-42 recipient."""
    async with Relay(port=0, auth=True) as relay:
        yield relay.url
