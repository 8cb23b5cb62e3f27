"""NIP-45 COUNT through the pool: dvmkit's relay and nostr-sdk's LocalRelay, NIP-42 AUTH, and
scripted relays that refuse, stay silent or answer with malformed COUNT replies."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from dvmkit.errors import InvalidFilter, RelayError
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.relay.pool import CountOutcome, RelayPool, Timeouts

from .scripted import recv, scripted, send

FAST = Timeouts(reconnect_initial=0.02, reconnect_max=0.2, nip11=1.0, publish=5.0, count=5.0)


def note(keys: Keys, content: str, kind: int = 1, **kw: Any) -> Event:
    return sign_event(keys, kind=kind, content=content, **kw)


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{sock.getsockname()[1]}"


async def test_count_on_our_relay_and_local_relay(our_relay: str, local_relay: str) -> None:
    alice, bob = Keys.generate(), Keys.generate()
    relays = [our_relay, local_relay]
    async with RelayPool(relays=relays, timeouts=FAST) as pool:
        for i in range(3):
            assert (await pool.publish(note(alice, f"a{i}"))).ok
        assert (await pool.publish(note(alice, "reaction", kind=7))).ok
        assert (await pool.publish(note(bob, "b"))).ok

        result = await pool.count(Filter.build(authors=[alice.public_key]))
        assert result.outcomes == dict.fromkeys(relays, CountOutcome("counted", count=4))
        assert result.counts == dict.fromkeys(relays, 4)
        assert result.errors == {}
        # Several filters are OR-ed (NIP-45 takes REQ's filters); a dict filter is validated.
        # LocalRelay 0.45 counts only the first filter, so ask ours alone.
        either = await pool.count(
            Filter.build(authors=[alice.public_key], kinds=[7]),
            {"authors": [bob.public_key]},
            relays=[our_relay],
        )
        assert either.counts == {our_relay: 2}
        nothing = await pool.count(Filter.build(ids=["00" * 32]), relays=[local_relay])
        assert nothing.counts == {local_relay: 0}
        assert pool.stats().invalid == 0


async def test_count_authenticates_when_the_relay_asks(our_relay_auth: str) -> None:
    keys = Keys.generate()
    wrap = note(keys, "sealed", kind=1059, tags=[["p", keys.public_key]])
    flt = Filter.build(kinds=[1059], tags={"p": [keys.public_key]})
    async with RelayPool(relays=[our_relay_auth], signer=keys, timeouts=FAST) as pool:
        assert (await pool.publish(wrap)).ok
        counted = await pool.count(flt)
        assert counted.counts == {our_relay_auth: 1}
        assert pool.stats().relays[our_relay_auth].authenticated
    async with RelayPool(relays=[our_relay_auth], timeouts=FAST) as anonymous:
        refused = (await anonymous.count(flt)).outcomes[our_relay_auth]
        assert refused.status == "closed"
        assert refused.message.startswith("auth-required:")
        assert refused.count is None


async def answer_with(ws: ServerConnection, n: int, *replies: object) -> None:
    """Answer each COUNT with ``replies`` (``"{id}"`` in them becomes its query id)."""
    while True:
        msg = await recv(ws)
        assert msg[0] == "COUNT"
        for reply in replies:
            await ws.send(str(reply).replace("{id}", msg[1]))


async def test_each_relay_reports_what_happened_to_its_count() -> None:
    async def counts(ws: ServerConnection, n: int) -> None:
        await answer_with(ws, n, '["COUNT","{id}",{"count":7,"approximate":true}]')

    async def refuses(ws: ServerConnection, n: int) -> None:
        await answer_with(ws, n, '["CLOSED","{id}","unsupported: no COUNT here"]')

    async def silent(ws: ServerConnection, n: int) -> None:
        await answer_with(ws, n, '["NOTICE","unknown message COUNT"]')  # monstr does this

    async def foreign_first(ws: ServerConnection, n: int) -> None:
        await answer_with(
            ws, n, '["COUNT","someone-else",{"count":1}]', '["COUNT","{id}",{"count":2}]'
        )

    dead = dead_url()
    async with (
        scripted(counts) as a,
        scripted(refuses) as b,
        scripted(silent) as c,
        scripted(foreign_first) as d,
        RelayPool(relays=[a, b, c, d, dead], timeouts=FAST) as pool,
    ):
        await pool.wait_connected(relays=[a, b, c, d])
        result = await pool.count(Filter.build(kinds=[1]), timeout=1.0)
        assert result.outcomes == {
            a: CountOutcome("counted", count=7, approximate=True),
            b: CountOutcome("closed", message="unsupported: no COUNT here"),
            c: CountOutcome("timeout"),
            d: CountOutcome("counted", count=2),
            dead: CountOutcome("not_connected"),
        }
        assert result.counts == {a: 7, d: 2}
        assert result.errors == {
            b: "closed unsupported: no COUNT here",
            c: "timeout",
            dead: "not_connected",
        }
        assert pool.stats().relays[c].notices == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('["COUNT","{id}",{"count":-1}]', "non-negative integer"),
        ('["COUNT","{id}",{"count":"3"}]', "non-negative integer"),
        ('["COUNT","{id}",{"count":1.5}]', "non-negative integer"),
        ('["COUNT","{id}",{"count":true}]', "non-negative integer"),
        ('["COUNT","{id}",{}]', "non-negative integer"),
        ('["COUNT","{id}",3]', "JSON object"),
        ('["COUNT","{id}"]', "needs 2 fields"),
        ('["COUNT","{id}",{"count":3}', "invalid JSON"),
        ('["COUNT","{id}",{"count":' + "9" * 400 + "}]", "invalid JSON"),
    ],
)
async def test_a_malformed_count_reply_is_reported_not_raised(reply: str, reason: str) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        msg = await recv(ws)
        await ws.send(reply.replace("{id}", msg[1]))
        await answer_with(ws, n, '["COUNT","{id}",{"count":4}]')

    async with scripted(handler) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
        outcome = (await pool.count(Filter.build(kinds=[1]))).outcomes[url]
        assert outcome.status == "malformed"
        assert outcome.message.startswith("malformed COUNT reply: ")
        assert reason in outcome.message
        assert outcome.count is None
        assert pool.stats().relays[url].malformed == 1
        # The connection carries on: the next answer is read as usual.
        assert (await pool.count(Filter.build(kinds=[1]))).counts == {url: 4}
        assert pool.stats().relays[url].reconnects == 0


async def test_rate_limited_count_is_sent_again() -> None:
    asked: list[list[Any]] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        while True:
            msg = await recv(ws)
            asked.append(msg)
            if len(asked) == 1:
                await send(ws, "CLOSED", msg[1], "rate-limited: slow down")
            else:
                await send(ws, "COUNT", msg[1], {"count": 5})

    async with scripted(handler) as url, RelayPool(relays=[url], timeouts=FAST) as pool:
        result = await pool.count(Filter.build(kinds=[1]))
    assert result.counts == {url: 5}
    assert asked[0] == asked[1] == ["COUNT", asked[0][1], {"kinds": [1]}]


async def test_count_respects_the_relays_filter_limit() -> None:
    frames: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def handler(ws: ServerConnection, n: int) -> None:
        while True:
            frames.put_nowait(await recv(ws))

    doc = {"limitation": {"max_filters": 1}}
    async with (
        scripted(handler, nip11=doc) as url,
        RelayPool(relays=[url], timeouts=FAST) as pool,
    ):
        await pool.wait_connected()
        result = await pool.count(Filter.build(kinds=[1]), Filter.build(kinds=[2]), timeout=1)
        assert result.outcomes[url] == CountOutcome(
            "closed", message="dvmkit: relay allows 1 filters per REQ (NIP-11)"
        )
        assert frames.empty()  # refused locally: nothing was sent


async def test_count_misuse_raises_precise_errors(our_relay: str) -> None:
    pool = RelayPool(relays=[our_relay], timeouts=FAST)
    with pytest.raises(RelayError, match="not running"):
        await pool.count(Filter.build(kinds=[1]))
    async with pool:
        with pytest.raises(ValueError, match="at least one filter"):
            await pool.count()
        with pytest.raises(InvalidFilter):
            await pool.count({"kinds": "1"})
        with pytest.raises(RelayError, match="not in the pool"):
            await pool.count(Filter.build(kinds=[1]), relays=["ws://127.0.0.1:9"])
