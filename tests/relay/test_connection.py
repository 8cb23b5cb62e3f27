"""One relay connection against scripted websocket servers: OK/CLOSED prefixes, AUTH, NIP-11
limits, resubscribe with ``since``, dead-socket detection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.nostr.nip42 import verify_auth_event
from dvmkit.relay.pool import RelayPool, Timeouts
from dvmkit.relay.values import backoff_delay

from .scripted import recv, scripted, send

FAST = Timeouts(reconnect_initial=0.02, reconnect_max=0.2, publish=3.0, eose=3.0, nip11=2.0)
KEYS = Keys.generate()


def note(content: str = "x", kind: int = 1, **kw: Any) -> Event:
    return sign_event(KEYS, kind=kind, content=content, **kw)


@pytest.mark.parametrize("attempt", range(40))
def test_backoff_is_exponential_jittered_and_capped(attempt: int) -> None:
    ceiling = min(30.0, 0.5 * 2.0**attempt)
    low = backoff_delay(attempt, initial=0.5, cap=30.0, rand=lambda: 0.0)
    high = backoff_delay(attempt, initial=0.5, cap=30.0, rand=lambda: 0.999)
    assert low == ceiling / 2
    assert ceiling / 2 <= high <= ceiling <= 30.0


async def test_rate_limited_ok_is_retried_after_backoff() -> None:
    seen: list[list[Any]] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        while True:
            msg = await recv(ws)
            seen.append(msg)
            event_id = msg[1]["id"]
            if len(seen) == 1:
                await send(ws, "OK", event_id, False, "rate-limited: slow down")
            else:
                await send(ws, "OK", event_id, True, "")

    async with scripted(handler) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
        result = await pool.publish(note())
    assert result.outcomes[url].status == "accepted"
    assert len(seen) == 2
    assert seen[0] == seen[1]


async def test_persistent_rate_limit_is_reported_with_the_relay_reason() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        while True:
            msg = await recv(ws)
            await send(ws, "OK", msg[1]["id"], False, "rate-limited: go away")

    async with scripted(handler) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
        result = await pool.publish(note(), timeout=0.5)
    assert result.outcomes[url].status == "rejected"
    assert result.outcomes[url].message == "rate-limited: go away"


@pytest.mark.parametrize(
    ("accepted", "message", "status"),
    [
        (False, "invalid: bad stuff", "rejected"),
        (False, "blocked: not on the list", "rejected"),
        (False, "duplicate: exists", "duplicate"),  # nostr-relay (PyPI) says OK false
        (True, "duplicate: have it", "duplicate"),
        (True, "", "accepted"),
    ],
)
async def test_ok_prefixes_map_to_outcomes(accepted: bool, message: str, status: str) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        msg = await recv(ws)
        await send(ws, "OK", msg[1]["id"], accepted, message)
        await ws.wait_closed()

    async with scripted(handler) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
        result = await pool.publish(note())
    assert result.outcomes[url].status == status
    assert result.outcomes[url].message == message


async def test_rate_limited_closed_is_retried_then_served() -> None:
    reqs: list[list[Any]] = []
    event = note("served")

    async def handler(ws: ServerConnection, n: int) -> None:
        while True:
            msg = await recv(ws)
            reqs.append(msg)
            if len(reqs) == 1:
                await send(ws, "CLOSED", msg[1], "rate-limited: too many REQs")
            else:
                await send(ws, "EVENT", msg[1], event.to_dict())
                await send(ws, "EOSE", msg[1])

    async with scripted(handler) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
        got = await pool.fetch(Filter.build(kinds=[1]))
    assert [e.id for e in got] == [event.id]
    assert reqs[0][0] == "REQ"
    assert reqs[1] == reqs[0]


async def test_other_closed_reasons_reach_the_caller() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        msg = await recv(ws)
        await send(ws, "CLOSED", msg[1], "blocked: you are not welcome")
        await ws.wait_closed()

    async with (
        scripted(handler) as url,
        RelayPool(relays=[url], timeouts=FAST) as pool,
        pool.subscribe(Filter.build(kinds=[1])) as sub,
    ):
        assert [e async for e in sub] == []
        assert sub.closed_by == {url: "blocked: you are not welcome"}


async def test_notice_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await send(ws, "NOTICE", "maintenance at noon")
        msg = await recv(ws)
        await send(ws, "OK", msg[1]["id"], True, "")
        await ws.wait_closed()

    with caplog.at_level(logging.WARNING, logger="dvmkit.relay.connection"):
        async with scripted(handler) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
            assert (await pool.publish(note())).ok
            assert pool.stats().relays[url].notices == 1
    assert "maintenance at noon" in caplog.text


async def test_refused_auth_closes_the_subscription_with_the_reason() -> None:
    answers: list[list[Any]] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        req = await recv(ws)
        await send(ws, "AUTH", "challenge-123")
        await send(ws, "CLOSED", req[1], "auth-required: who are you")
        auth = await recv(ws)
        answers.append(auth)
        await send(ws, "OK", auth[1]["id"], False, "restricted: not you")
        await ws.wait_closed()

    async with (
        scripted(handler) as url,
        RelayPool(relays=[url], signer=KEYS, timeouts=FAST) as pool,
        pool.subscribe(Filter.build(kinds=[1059])) as sub,
    ):
        assert [e async for e in sub] == []
        assert sub.closed_by[url] == "auth-required: AUTH refused: restricted: not you"
    assert answers[0][0] == "AUTH"
    assert verify_auth_event(answers[0][1], url, "challenge-123") == KEYS.public_key


async def test_resubscribe_after_reconnect_overlaps_the_gap() -> None:
    now = int(time.time())
    old = note("old", created_at=now - 500)
    newest = note("newest", created_at=now - 100)
    reqs: list[list[Any]] = []
    second = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        req = await recv(ws)
        reqs.append(req)
        if n == 0:
            for event in (newest, old):
                await send(ws, "EVENT", req[1], event.to_dict())
            await send(ws, "EOSE", req[1])
            await ws.close()
        else:
            second.set()
            await ws.wait_closed()

    flt = Filter.build(kinds=[1], limit=50, since=now - 1000)
    async with scripted(handler) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
        async with pool.subscribe(flt) as sub:
            async with asyncio.timeout(5):
                await second.wait()
            assert {e.id async for e in _take(sub, 2)} == {old.id, newest.id}
        assert reqs[0][2] == flt.to_dict()
        # since = newest seen - overlap (10 s); limit dropped so the whole gap comes back
        assert reqs[1][2] == {"kinds": [1], "since": now - 110}
        assert pool.stats().relays[url].reconnects == 1


async def test_rewrite_since_can_be_turned_off_for_backdated_events() -> None:
    reqs: list[list[Any]] = []
    second = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        req = await recv(ws)
        reqs.append(req)
        if n == 0:
            await send(ws, "EVENT", req[1], note(kind=1059).to_dict())
            await send(ws, "EOSE", req[1])
            await ws.close()
        else:
            second.set()
            await ws.wait_closed()

    flt = Filter.build(kinds=[1059])
    async with (
        scripted(handler) as url,
        RelayPool(relays=[url], timeouts=FAST) as pool,
        pool.subscribe(flt, rewrite_since=False),
        asyncio.timeout(5),
    ):
        await second.wait()
    assert reqs[0][2] == reqs[1][2] == {"kinds": [1059]}


async def test_dead_socket_is_detected_by_ping() -> None:
    connections = asyncio.Queue[int]()

    async def handler(ws: ServerConnection, n: int) -> None:
        await connections.put(n)
        if n == 0:
            ws.transport.pause_reading()  # never answers pings: a dead peer
        await ws.wait_closed()

    timeouts = Timeouts(ping_interval=0.1, ping_timeout=0.1, reconnect_initial=0.02, nip11=1)
    async with scripted(handler) as url, RelayPool(relays=[url], timeouts=timeouts) as pool:
        async with asyncio.timeout(5):
            assert await connections.get() == 0
            assert await connections.get() == 1
            await pool.wait_connected()
        assert pool.stats().relays[url].reconnects >= 1


async def test_nip11_limitation_is_respected() -> None:
    frames = asyncio.Queue[list[Any]]()
    doc = {
        "name": "tiny",
        "supported_nips": [1, 11],
        "limitation": {
            "max_message_length": 2000,
            "max_subscriptions": 1,
            "max_limit": 5,
            "max_event_tags": 3,
        },
    }

    async def handler(ws: ServerConnection, n: int) -> None:
        while True:
            await frames.put(await recv(ws))

    async with scripted(handler, nip11=doc) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
        await pool.wait_connected()
        info = pool.relay_info(url)
        assert info is not None
        assert info.name == "tiny"
        assert info.limitation.max_limit == 5
        big = await pool.publish(note("x" * 3000))
        assert big.outcomes[url].status == "rejected"
        assert "exceeds the relay's NIP-11 limit 2000" in big.outcomes[url].message
        tagged = await pool.publish(note(tags=[["t", str(i)] for i in range(4)]))
        assert "4 tags exceed" in tagged.outcomes[url].message
        async with (
            pool.subscribe(Filter.build(kinds=[1], limit=100)) as first,
            pool.subscribe(Filter.build(kinds=[2])) as second,
        ):
            assert second.closed_by[url].startswith("dvmkit: relay allows 1 subscriptions")
        async with asyncio.timeout(5):
            req = await frames.get()
            close = await frames.get()
        assert req == ["REQ", first.id, {"kinds": [1], "limit": 5}]
        assert close == ["CLOSE", first.id]  # the second REQ was never sent
        assert frames.empty()


async def _take(sub: AsyncIterator[Event], n: int) -> AsyncIterator[Event]:
    async with asyncio.timeout(5):
        for _ in range(n):
            yield await anext(sub)
