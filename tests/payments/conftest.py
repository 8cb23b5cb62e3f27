"""Fixtures for wallet tests: real relays (ours and nostr-sdk's) and a running dev wallet."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dvmkit.payments.devwallet import DevWallet

#: How long a test waits for an answer that must come (a failure bound, not a pace).
WAIT = 10.0


@pytest.fixture
async def wallet(relay_url: str) -> AsyncIterator[DevWallet]:
    async with DevWallet(relays=[relay_url]) as running:
        yield running
