"""The count DVM on relays without NIP-45: it reads the matching events and counts them.

The relay here is a small scripted one on 127.0.0.1, built on ``websockets``: it serves a
NIP-11 document that lists no NIP-45, answers REQ with its stored events, and answers COUNT
the ways relays without NIP-45 do (``CLOSED``, a ``NOTICE``, nothing at all, or a COUNT
reply it cannot produce properly). It is sloppy on purpose: every REQ gets every stored
event, twice, and a forged copy, so the DVM's count holds only if it checks what it reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from http import HTTPStatus

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dvmkit.dvms import count
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys

from .conftest import FAST, WAIT, client_on, note, publish_all

#: How each scripted relay meets a COUNT.
ANSWERS = {
    "closed": lambda qid: ["CLOSED", qid, "unsupported: NIP-45 COUNT is not implemented"],
    "notice": lambda _qid: ["NOTICE", "ERROR: bad msg: unknown cmd COUNT"],
    "silent": None,
    "malformed": lambda qid: ["COUNT", qid, {"count": "lots"}],
}


@dataclasses.dataclass
class Script:
    """What the scripted relay holds, and what it was asked."""

    events: Sequence[Event]
    answer: str
    counts: int = 0
    reqs: int = 0


def forged(event: Event) -> Event:
    """``event`` with its content changed but its id and signature kept: invalid."""
    return dataclasses.replace(event, content=event.content + " (edited)")


@contextlib.asynccontextmanager
async def scripted_relay(script: Script) -> AsyncIterator[str]:
    """Serve ``script`` on 127.0.0.1; yields the relay's ws:// URL."""

    def nip11(connection: ServerConnection, request: Request) -> Response | None:
        if "application/nostr+json" not in request.headers.get("Accept", ""):
            return None  # a websocket upgrade
        document = {"name": "scripted", "supported_nips": [1, 11]}
        response = connection.respond(HTTPStatus.OK, orjson.dumps(document).decode())
        response.headers["Content-Type"] = "application/nostr+json"
        return response

    async def send(ws: ServerConnection, message: Sequence[object]) -> None:
        await ws.send(orjson.dumps(message).decode())

    async def handle(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                message = orjson.loads(frame)
                verb, sub_id = message[0], message[1] if len(message) > 1 else ""
                if verb == "REQ":
                    script.reqs += 1
                    for event in [*script.events, *script.events, forged(script.events[0])]:
                        await send(ws, ["EVENT", sub_id, event.to_dict()])
                    await send(ws, ["EOSE", sub_id])
                elif verb == "COUNT":
                    script.counts += 1
                    answer = ANSWERS[script.answer]
                    if answer is not None:
                        await send(ws, answer(sub_id))

    async with serve(handle, "127.0.0.1", 0, process_request=nip11, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


def seeded(alice: Keys, bob: Keys, start: int) -> list[Event]:
    return [note(alice, f"a{n}", start + n) for n in range(7)] + [
        note(bob, f"b{n}", start + n) for n in range(4)
    ]


@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_a_relay_without_nip45_is_counted_by_fetching(relay_url: str, answer: str) -> None:
    alice, bob = Keys.generate(), Keys.generate()
    events = seeded(alice, bob, int(time.time()) - 100)
    script = Script(events, answer)
    by_alice = orjson.dumps({"kinds": [1], "authors": [alice.public_key]}).decode()
    expected = sum(1 for e in events if e.kind == 1 and e.pubkey == alice.public_key)
    # A relay that never answers a COUNT is given `wait` seconds: keep it short here.
    dvm = count.build(relays=[relay_url], limits=FAST, wait=1.0)
    async with (
        scripted_relay(script) as scripted,
        dvm.running(),
        client_on(relay_url) as client,
    ):
        job = await client.request(
            "count", input=by_alice, params={"relay": scripted}, to=dvm.public_key
        )
        result = await job.result(timeout=WAIT)
    assert result.content == str(expected)
    # It asked for a count, and read the events when none came.
    assert (script.counts, script.reqs) == (1, 1)


async def test_nip45_and_fetched_counts_combine_as_the_largest(relay_url: str) -> None:
    alice, bob = Keys.generate(), Keys.generate()
    start = int(time.time()) - 100
    there = seeded(alice, bob, start)
    here = [note(alice, f"here {n}", start + n) for n in range(2)]
    await publish_all(relay_url, here)
    script = Script(there, "closed")
    flt = orjson.dumps([{"authors": [alice.public_key]}, {"authors": [bob.public_key]}]).decode()
    dvm = count.build(relays=[relay_url], limits=FAST, wait=WAIT)
    async with (
        scripted_relay(script) as scripted,
        dvm.running(),
        client_on(relay_url) as client,
    ):
        job = await client.request(
            "count", input=flt, params={"relay": [scripted, relay_url]}, to=dvm.public_key
        )
        both = await job.result(timeout=WAIT)
    people = {alice.public_key, bob.public_key}
    counted = [sum(1 for e in events if e.pubkey in people) for events in (there, here)]
    assert both.content == str(max(counted))
    assert (script.counts, script.reqs) == (1, 1)
