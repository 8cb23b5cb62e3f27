"""Requests the DVM must ignore: forged, expired (NIP-40), or dated far in the future.

Real relays refuse such events, so a scripted relay delivers them straight onto the DVM's
subscription; a valid request pushed after them proves they were read, and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys

from .conftest import WAIT, Customer, customer_on, make_dvm, now


@dataclass
class ScriptedRelay:
    """Answers REQ with EOSE and EVENT with OK; pushes what the test gives it."""

    url: str = ""
    subscriptions: list[tuple[ServerConnection, str]] = field(default_factory=list)
    published: list[Event] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, ws: ServerConnection) -> None:
        async for raw in ws:
            msg: list[Any] = orjson.loads(raw)
            if msg[0] == "REQ":
                await ws.send(orjson.dumps(["EOSE", msg[1]]).decode())
                self.subscriptions.append((ws, msg[1]))
            elif msg[0] == "EVENT":
                event = Event.from_dict(msg[1])
                self.published.append(event)
                await ws.send(orjson.dumps(["OK", event.id, True, ""]).decode())
            else:
                continue
            async with self.changed:
                self.changed.notify_all()

    async def push(self, *events: dict[str, Any]) -> None:
        """Send each event, as given, on the DVM's request subscription (its first REQ)."""
        ws, sub_id = self.subscriptions[0]
        for event in events:
            await ws.send(orjson.dumps(["EVENT", sub_id, event]).decode())

    def answers(self, request_id: str) -> list[Event]:
        return [e for e in self.published if request_id in e.tag_values("e")]

    async def wait_answer(self, request_id: str) -> Event:
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(lambda: bool(self.answers(request_id)))
        return self.answers(request_id)[0]


@contextlib.asynccontextmanager
async def scripted_relay() -> AsyncIterator[ScriptedRelay]:
    relay = ScriptedRelay()

    async def on_connection(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await relay.handle(ws)

    async with serve(on_connection, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        relay.url = f"ws://127.0.0.1:{port}"
        yield relay


def signed(keys: Keys, kind: int, tags: list[list[str]], created_at: int | None = None) -> Event:
    """Signed by nostr-sdk (through a disconnected Customer, used only to sign)."""
    return Customer([], keys).sign(kind, tags=tags, created_at=created_at)


async def test_forged_expired_and_future_requests_are_ignored() -> None:
    keys = Keys.generate()
    t = now()
    async with scripted_relay() as relay:
        dvm = make_dvm(relay.url)

        @dvm.job
        async def echo(input: str) -> str:
            return input

        async with dvm.running():
            good = signed(keys, 5050, [["i", "good", "text"]])
            bad_sig = good.to_dict()
            bad_sig["sig"] = good.sig[:-2] + ("00" if good.sig[-2:] != "00" else "11")
            bad_id = good.to_dict() | {"content": "tampered after signing"}
            other = signed(keys, 5050, [["i", "other", "text"]]).to_dict()
            stolen_sig = other | {"sig": good.sig}
            expired = signed(keys, 5050, [["i", "late", "text"], ["expiration", str(t - 5)]])
            future = signed(keys, 5050, [["i", "early", "text"]], created_at=t + 3600)
            valid = signed(keys, 5050, [["i", "valid", "text"]])
            await relay.push(
                bad_sig, bad_id, stolen_sig, expired.to_dict(), future.to_dict(), valid.to_dict()
            )
            answer = await relay.wait_answer(valid.id)
            assert answer.kind == 6050
            assert answer.content == "valid"
            for ignored in (good.id, other["id"], expired.id, future.id):
                assert relay.answers(ignored) == []
            stats = dvm.stats()
        # The forged ones never reach the engine (the pool drops them); the other two are
        # read and ignored.
        assert (stats.ignored, stats.done, stats.rejected) == (2, 1, 0)


async def test_future_request_within_the_relays_window_is_ignored(our_relay_url: str) -> None:
    """dvmkit's relay takes events up to 900 s ahead; the DVM ignores beyond 600 s."""
    dvm = make_dvm(our_relay_url)

    @dvm.job
    async def echo(input: str) -> str:
        return input

    async with dvm.running(), customer_on(our_relay_url) as customer:
        early = await customer.request(
            25000, content="early", tags=[["t", "text"]], created_at=now() + 800
        )
        valid = await customer.request(25000, content="valid", tags=[["t", "text"]])
        assert (await customer.final(valid.id)).content == "valid"
        assert customer.answers(early.id) == []
        assert dvm.stats().ignored == 1
