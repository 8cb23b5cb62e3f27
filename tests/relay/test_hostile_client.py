"""A hostile client against our relay: fuzzed frames, malformed JSON, unknown messages, huge
frames, connections closed mid-frame. The relay must answer precisely, never crash, and keep
serving other connections.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.relay.limits import RelayLimits
from dvmkit.relay.server import Relay

from .wire import Wire, wire

RELAY_MESSAGES = {"NOTICE", "OK", "CLOSED", "EOSE", "EVENT", "COUNT", "AUTH"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
verbs = st.sampled_from(["EVENT", "REQ", "COUNT", "CLOSE", "AUTH", "NOPE", ""])
_EVENT = sign_event(Keys.generate(), kind=1, content="seed", tags=[["p", "a" * 64]]).to_dict()
# A valid event with one field replaced by junk or removed reaches the deeper checks.
mutated_events = st.tuples(st.sampled_from(sorted(_EVENT)), json_values, st.booleans()).map(
    lambda t: json.dumps(
        ["EVENT", {k: v for k, v in _EVENT.items() if k != t[0]} | ({} if t[2] else {t[0]: t[1]})]
    ).encode()
)
messages = st.one_of(
    mutated_events,
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(verbs, st.lists(json_values, max_size=4)).map(
        lambda t: json.dumps([t[0], *t[1]]).encode()
    ),
)


def well_formed(message: list[Any]) -> bool:
    return bool(message) and message[0] in RELAY_MESSAGES


async def probe(conn: Wire, sub_id: str) -> list[list[Any]]:
    """Send a REQ and return everything the relay said before its EOSE."""
    await conn.send(["REQ", sub_id, {"limit": 0}])
    said = []
    while (message := await conn.recv()) != ["EOSE", sub_id]:
        said.append(message)
    await conn.send(["CLOSE", sub_id])
    return said


async def test_fuzzed_frames_get_precise_answers_and_relay_survives() -> None:
    async with Relay(port=0) as relay, wire(relay.url) as conn, wire(relay.url) as bystander:
        counter = iter(range(10**9))

        @settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
        @given(frame=messages)
        def check(frame: bytes) -> None:
            # Hypothesis drives sync functions; run the async exchange on this loop's runner.
            future = asyncio.run_coroutine_threadsafe(exchange(frame), loop)
            future.result(timeout=30)

        async def exchange(frame: bytes) -> None:
            await conn.send(frame)
            said = await probe(conn, f"p{next(counter)}")
            assert all(well_formed(m) for m in said), (frame, said)

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(check)
        event = sign_event(Keys.generate(), kind=1, content="still serving")
        assert await bystander.publish(event) == ["OK", event.id, True, ""]
        assert relay.stats().connections == 2


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"{not json", ["NOTICE", "invalid: message is not valid JSON"]),
        (
            b'{"a": 1}',
            ["NOTICE", "invalid: a message must be a JSON array that starts with its type"],
        ),
        (b"[]", ["NOTICE", "invalid: a message must be a JSON array that starts with its type"]),
        (
            b"[1, 2]",
            ["NOTICE", "invalid: a message must be a JSON array that starts with its type"],
        ),
        (b'["EVENT"]', ["NOTICE", 'invalid: EVENT must be ["EVENT", <event with a 64-hex id>]']),
        (
            b'["EVENT", "x"]',
            ["NOTICE", 'invalid: EVENT must be ["EVENT", <event with a 64-hex id>]'],
        ),
        (b'["CLOSE"]', ["NOTICE", 'invalid: CLOSE must be ["CLOSE", <subscription id>]']),
        (b'["AUTH", {}]', ["NOTICE", 'invalid: AUTH must be ["AUTH", <signed kind 22242 event>]']),
        (b'["PING"]', ["NOTICE", "invalid: unknown message type 'PING'"]),
        ("\ufeff[]".encode(), ["NOTICE", "invalid: message is not valid JSON"]),
    ],
)
async def test_malformed_messages_get_notices(
    our_relay: str, frame: bytes, expected: list[Any]
) -> None:
    async with wire(our_relay) as conn:
        await conn.send(frame)
        assert await conn.recv() == expected


async def test_oversized_messages_are_answered_without_decoding() -> None:
    limits = RelayLimits(max_message_length=2_000, hard_message_length=100_000)
    async with Relay(port=0, limits=limits) as relay, wire(relay.url) as conn:
        event = sign_event(Keys.generate(), kind=1, content="x" * 5_000)
        assert await conn.publish(event) == [
            "OK",
            event.id,
            False,
            "invalid: message is larger than 2000 bytes",
        ]
        await conn.send(["REQ", "big", {"authors": [os.urandom(32).hex() for _ in range(40)]}])
        assert await conn.recv() == ["CLOSED", "big", "invalid: message is larger than 2000 bytes"]
        await conn.send(b"[" + b" " * 3_000 + b"]")
        assert await conn.recv() == ["NOTICE", "invalid: message is larger than 2000 bytes"]
        # Beyond the frame limit the relay closes the connection (1009), and lives on.
        await conn.send(b"x" * 200_000)
        with pytest.raises(ConnectionClosed) as closed:
            await conn.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        async with wire(relay.url) as other:
            ok = await other.publish(small := sign_event(Keys.generate(), kind=1))
            assert ok == ["OK", small.id, True, ""]


async def raw_handshake(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


@pytest.mark.parametrize(
    "tail",
    [
        # A text frame announcing 1000 masked bytes, cut after 10.
        bytes([0x81, 0x80 | 126]) + (1000).to_bytes(2, "big") + os.urandom(4) + b"0123456789",
        # Half a frame header.
        bytes([0x81]),
        # A text frame that is not UTF-8.
        bytes([0x81, 0x82]) + bytes(4) + b"\xff\xfe",
    ],
)
async def test_connection_closed_mid_frame_leaves_relay_serving(tail: bytes) -> None:
    async with Relay(port=0) as relay, wire(relay.url) as bystander:
        await probe(bystander, "ready")
        _, writer = await raw_handshake(relay.url)
        writer.write(tail)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        event = sign_event(Keys.generate(), kind=1, content="after the rude client")
        assert await bystander.publish(event) == ["OK", event.id, True, ""]
        got, _ = await bystander.fetch("s", {"ids": [event.id]})
        assert [e["id"] for e in got] == [event.id]
