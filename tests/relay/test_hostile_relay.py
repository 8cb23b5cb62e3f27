"""A hostile relay: garbage, forgeries, a 10 MB frame, a socket cut mid-frame.

The pool must keep working: no exception escapes, only verified matching events are
delivered, a stored event sent again (before EOSE) is dropped, and an oversized frame is
refused by its length header (the client's ``max_size``), never buffered. A relay that sends
an event again after EOSE claims it was published again; that copy is delivered (the rule in
``RelayPool.subscribe``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.relay.messages import parse_relay_message
from dvmkit.relay.pool import RelayPool, Timeouts

KEYS = Keys.generate()
FAST = Timeouts(reconnect_initial=0.02, reconnect_max=0.2, nip11=1.0, eose=3.0)
MAX_SIZE = 1 << 20
TEN_MB = 10 * 1024 * 1024


def forged(event: Event) -> dict[str, Any]:
    data = event.to_dict()
    data["sig"] = ("0" if data["sig"][0] != "0" else "1") + data["sig"][1:]
    return data


def tampered(event: Event) -> dict[str, Any]:
    data = event.to_dict()
    data["content"] = "tampered"
    return data


GARBAGE: list[str | bytes] = [
    '{"nope',
    "[]",
    "{}",
    '"just a string"',
    "[1, 2, 3]",
    '["EVENT"]',
    '["EVENT", 7, {}]',
    '["OK", "zz", true, ""]',
    '["OK", "' + "a" * 64 + '", "yes", ""]',
    '["EOSE"]',
    '["COUNT", "x", {"count": -1}]',
    '["FOO", "bar"]',
    '["AUTH"]',
    b"\xff\xfe\xfd",
    "[" * 5000,
]


class Hostile:
    """Connection 0: garbage, forgeries, one good event twice, EOSE, the same event live
    again, then a 10 MB frame.
    Connection 1: a good event, then half a frame and a dropped socket.
    Later connections: a good event and EOSE, then quiet."""

    def __init__(self) -> None:
        self.good = [sign_event(KEYS, kind=1, content=f"good {i}") for i in range(3)]
        self.close_codes: list[int | None] = []
        self.counter = itertools.count()

    async def handle(self, ws: ServerConnection) -> None:
        n = next(self.counter)
        try:
            req = orjson.loads(await ws.recv())
            sub = req[1]
            if n == 0:
                for frame in GARBAGE:
                    await ws.send(frame, text=True)
                bad = sign_event(KEYS, kind=1, content="bad")
                await ws.send(orjson.dumps(["EVENT", sub, forged(bad)]).decode())
                await ws.send(orjson.dumps(["EVENT", sub, tampered(bad)]).decode())
                other = sign_event(KEYS, kind=7, content="+")  # matches no filter
                await ws.send(orjson.dumps(["EVENT", sub, other.to_dict()]).decode())
                await ws.send(orjson.dumps(["EVENT", "not-our-sub", bad.to_dict()]).decode())
                for _ in range(2):
                    await ws.send(orjson.dumps(["EVENT", sub, self.good[0].to_dict()]).decode())
                await ws.send(orjson.dumps(["EOSE", sub]).decode())
                await ws.send(orjson.dumps(["EVENT", sub, self.good[0].to_dict()]).decode())
                with suppress(ConnectionClosed):
                    await ws.send("x" * TEN_MB)
                await ws.wait_closed()
                self.close_codes.append(ws.close_code)
            elif n == 1:
                await ws.send(orjson.dumps(["EVENT", sub, self.good[1].to_dict()]).decode())
                # A text frame announcing 256 bytes, of which 10 arrive; then the socket dies.
                ws.transport.write(b"\x81\x7e" + struct.pack("!H", 256) + b"0123456789")
                ws.transport.abort()
            else:
                await ws.send(orjson.dumps(["EVENT", sub, self.good[2].to_dict()]).decode())
                await ws.send(orjson.dumps(["EVENT", sub, self.good[1].to_dict()]).decode())
                await ws.send(orjson.dumps(["EOSE", sub]).decode())
                await ws.wait_closed()
        except ConnectionClosed:
            pass


@asynccontextmanager
async def hostile_relay(hostile: Hostile) -> AsyncIterator[str]:
    async with serve(
        hostile.handle, "127.0.0.1", 0, compression=None, max_size=None, close_timeout=0.5
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def test_pool_survives_a_hostile_relay() -> None:
    hostile = Hostile()
    flt = Filter.build(kinds=[1], authors=[KEYS.public_key])
    async with (
        hostile_relay(hostile) as url,
        RelayPool(relays=[url], timeouts=FAST, max_message_size=MAX_SIZE, max_queue=8) as pool,
        pool.subscribe(flt) as sub,
    ):
        got: list[Event] = []
        async with asyncio.timeout(10):
            async for event in sub:
                got.append(event)
                if len(got) == 4:
                    break
        good = [e.id for e in hostile.good]
        # good[0] again after EOSE: the relay says it was re-published, so it is delivered.
        assert [e.id for e in got] == [good[0], good[0], good[1], good[2]]
        assert all(e.verify() for e in got)
        stats = pool.stats().relays[url]
        assert stats.malformed == len(GARBAGE)
        assert stats.invalid == 3  # forged signature, tampered content, unmatched kind
        assert stats.reconnects >= 2
        # good[0] twice before EOSE on one socket; good[1] before EOSE on a later socket.
        assert sub.stats().duplicates == 2
        assert sub.stats().delivered == 4
    # The client refused the 10 MB frame from its length header: close code 1009.
    assert hostile.close_codes == [1009]


async def test_hostile_relay_next_to_a_good_one(local_relay: str) -> None:
    hostile = Hostile()
    async with (
        hostile_relay(hostile) as bad_url,
        RelayPool(relays=[bad_url, local_relay], timeouts=FAST) as pool,
        pool.subscribe(Filter.build(kinds=[1], authors=[KEYS.public_key])) as sub,
    ):
        extra = sign_event(KEYS, kind=1, content="from the good relay")
        result = await pool.publish(extra, relays=[local_relay])
        assert result.ok
        ids: set[str] = set()
        async with asyncio.timeout(10):
            async for event in sub:
                ids.add(event.id)
                if len(ids) == 4:
                    break
        assert ids == {e.id for e in hostile.good} | {extra.id}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        st.lists(
            st.one_of(
                st.sampled_from(["EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "AUTH", "COUNT"]),
                st.text(max_size=70),
                st.integers(),
                st.booleans(),
                st.none(),
                st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
            ),
            max_size=5,
        ).map(json.dumps),
    )
)
def test_any_frame_parses_or_raises_protocol_error(frame: str | bytes) -> None:
    with suppress(ProtocolError):
        parse_relay_message(frame)
