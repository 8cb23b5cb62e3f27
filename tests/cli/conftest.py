"""Fixtures the command-line tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dvmkit.relay.server import Relay


@pytest.fixture
async def relay() -> AsyncIterator[str]:
    """dvmkit's relay on a free port, for `dvm` processes to talk to."""
    async with Relay(port=0) as served:
        yield served.url
