"""A scripted websocket "relay" for client tests: each connection runs a test's handler."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

Handler = Callable[[ServerConnection, int], Awaitable[None]]


@asynccontextmanager
async def scripted(handler: Handler, nip11: dict[str, Any] | None = None) -> AsyncIterator[str]:
    """A websocket server running ``handler(ws, n)`` for its n-th connection; it serves
    ``nip11`` as the NIP-11 document when given, else answers HTTP 404."""
    counter = itertools.count()

    async def on_connection(ws: ServerConnection) -> None:
        with suppress(ConnectionClosed):
            await handler(ws, next(counter))

    def on_request(conn: ServerConnection, request: Request) -> Response | None:
        if "Upgrade" in request.headers:
            return None
        if nip11 is None:
            return conn.respond(404, "no NIP-11 here\n")
        body = orjson.dumps(nip11)
        headers = Headers(
            [("Content-Type", "application/nostr+json"), ("Content-Length", str(len(body)))]
        )
        return Response(200, "OK", headers, body)

    async with serve(
        on_connection,
        "127.0.0.1",
        0,
        process_request=on_request,
        compression=None,
        close_timeout=0.5,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def recv(ws: ServerConnection) -> list[Any]:
    data: list[Any] = orjson.loads(await ws.recv())
    return data


async def send(ws: ServerConnection, *message: object) -> None:
    await ws.send(orjson.dumps(list(message)).decode())
