"""Pipelined messages on one connection: replies in the order sent, effects visible in order.

The frames of each test go out in one TCP write, so the relay sees them in one read and one
event-loop tick: the case where it batches events into one transaction.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys

from .wire import Wire, wire


def _write_at_once(conn: Wire, messages: list[list[Any]]) -> None:
    protocol = conn.ws.protocol
    for message in messages:
        protocol.send_text(orjson.dumps(message))
    conn.ws.transport.write(b"".join(protocol.data_to_send()))


async def test_oks_follow_the_order_of_the_events_refusals_included(our_relay: str) -> None:
    keys = Keys.generate()
    first = sign_event(keys, kind=1, content="first")
    tampered = {**sign_event(keys, kind=1, content="second").to_dict(), "content": "changed"}
    malformed = {**sign_event(keys, kind=1, content="third").to_dict(), "kind": "1"}
    last = sign_event(keys, kind=1, content="last")
    async with wire(our_relay) as conn:
        _write_at_once(
            conn,
            [
                ["EVENT", first.to_dict()],
                ["EVENT", tampered],
                ["EVENT", first.to_dict()],
                ["EVENT", malformed],
                ["EVENT", last.to_dict()],
            ],
        )
        replies = [await conn.recv() for _ in range(5)]
    assert replies == [
        ["OK", first.id, True, ""],
        ["OK", tampered["id"], False, "invalid: id does not match content"],
        ["OK", first.id, True, "duplicate: already have this event"],
        ["OK", malformed["id"], False, "invalid: kind must be an integer in [0, 65535]"],
        ["OK", last.id, True, ""],
    ]


async def test_req_and_count_after_events_see_them(our_relay: str) -> None:
    keys = Keys.generate()
    now = int(time.time())
    events = [
        sign_event(keys, kind=5100, content=str(i), created_at=now - 100 + i) for i in range(20)
    ]
    flt = {"authors": [keys.public_key]}
    async with wire(our_relay) as conn:
        _write_at_once(
            conn,
            [*(["EVENT", e.to_dict()] for e in events), ["COUNT", "c", flt], ["REQ", "r", flt]],
        )
        oks = [await conn.recv() for _ in events]
        count = await conn.recv()
        stored = [await conn.recv() for _ in events]
        eose = await conn.recv()
    assert oks == [["OK", e.id, True, ""] for e in events]
    assert count == ["COUNT", "c", {"count": 20}]
    assert [m[2]["id"] for m in stored] == [e.id for e in reversed(events)]
    assert eose == ["EOSE", "r"]
