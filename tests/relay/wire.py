"""A raw websocket client for relay tests: JSON arrays in, JSON arrays out, with timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from dvmkit.nostr.event import Event

TIMEOUT = 10.0


class Wire:
    """One raw connection to a relay."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: list[Any] | bytes | str) -> None:
        if isinstance(message, list):
            await self.ws.send(orjson.dumps(message), text=True)
        else:
            await self.ws.send(message, text=True)

    async def recv(self) -> list[Any]:
        async with asyncio.timeout(TIMEOUT):
            raw = await self.ws.recv(decode=False)
        message = orjson.loads(raw)
        assert isinstance(message, list), raw
        return message

    async def recv_skipping_auth(self) -> list[Any]:
        while True:
            message = await self.recv()
            if message[0] != "AUTH":
                return message

    async def publish(self, event: Event | dict[str, Any]) -> list[Any]:
        """Send an EVENT and return the relay's OK for it."""
        data = event.to_dict() if isinstance(event, Event) else event
        await self.send(["EVENT", data])
        return await self.recv_skipping_auth()

    async def req(
        self, sub_id: str, *filters: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """Send a REQ; return the stored events and the EOSE or CLOSED that ended them."""
        await self.send(["REQ", sub_id, *filters])
        events: list[dict[str, Any]] = []
        while True:
            message = await self.recv_skipping_auth()
            if message[0] == "EVENT":
                assert message[1] == sub_id
                events.append(message[2])
            else:
                assert message[0] in ("EOSE", "CLOSED"), message
                assert message[1] == sub_id
                return events, message

    async def fetch(
        self, sub_id: str, *filters: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """A REQ that is closed after EOSE, so that no live event follows it."""
        events, end = await self.req(sub_id, *filters)
        if end[0] == "EOSE":
            await self.send(["CLOSE", sub_id])
        return events, end

    async def count(self, sub_id: str, *filters: dict[str, Any]) -> list[Any]:
        await self.send(["COUNT", sub_id, *filters])
        return await self.recv_skipping_auth()


@asynccontextmanager
async def wire(url: str, **kwargs: Any) -> AsyncIterator[Wire]:
    async with connect(url, compression=None, max_size=None, **kwargs) as ws:
        yield Wire(ws)
