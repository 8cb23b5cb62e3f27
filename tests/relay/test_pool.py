"""RelayPool against real relays: nostr-sdk's LocalRelay and dvmkit's own relay."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import nostr_sdk
import pytest
from websockets.asyncio.server import ServerConnection

from dvmkit.errors import InvalidFilter, RelayError
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.relay.pool import RelayPool, Timeouts

from .scripted import recv, scripted, send

FAST = Timeouts(reconnect_initial=0.05, reconnect_max=0.5, nip11=2.0, publish=5.0, eose=5.0)
Stop = Callable[[], Awaitable[None]]
Spawn = Callable[..., Awaitable[tuple[str, Stop]]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_local(builder: nostr_sdk.LocalRelayBuilder) -> nostr_sdk.LocalRelay:
    """Build and run a LocalRelay. ``shutdown()`` of one on the same port returns before its
    listener has closed and offers nothing to await, so retry while the port is still taken
    (seen on a loaded 2-core machine)."""
    async with asyncio.timeout(10):
        while True:
            relay = builder.build()
            try:
                await relay.run()
                return relay
            except nostr_sdk.NostrSdkError as exc:
                if "Address already in use" not in str(exc):
                    raise
            await asyncio.sleep(0.05)


@pytest.fixture(params=["local", "ours"])
def relay_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def spawn(relay_kind: str) -> AsyncIterator[Spawn]:
    """Start relays of ``relay_kind``; each returns its url and a stop function."""
    async with AsyncExitStack() as stack:

        async def start(
            *, port: int = 0, auth: bool = False, db: Path | None = None
        ) -> tuple[str, Stop]:
            if relay_kind == "local":
                builder = (
                    nostr_sdk.LocalRelayBuilder()
                    .addr("127.0.0.1")
                    .rate_limit(nostr_sdk.RateLimit(max_reqs=10_000, notes_per_minute=10_000_000))
                )
                if port:
                    builder = builder.port(port)
                if auth:
                    mode = nostr_sdk.LocalRelayBuilderNip42Mode.BOTH
                    builder = builder.nip42(nostr_sdk.LocalRelayBuilderNip42(mode=mode))
                relay = await run_local(builder)
                stopped = False

                async def stop_local() -> None:
                    nonlocal stopped
                    if not stopped:
                        stopped = True
                        relay.shutdown()

                stack.push_async_callback(stop_local)
                return str(await relay.url()), stop_local
            from dvmkit.relay.server import Relay

            ours = Relay(port=port, auth=auth, db_path=db)
            await ours.__aenter__()
            running = True

            async def stop_ours() -> None:
                nonlocal running
                if running:
                    running = False
                    await ours.__aexit__(None, None, None)

            stack.push_async_callback(stop_ours)
            return ours.url, stop_ours

        yield start


def note(keys: Keys, content: str, kind: int = 1, **kw: object) -> Event:
    return sign_event(keys, kind=kind, content=content, **kw)  # type: ignore[arg-type]


async def take(sub: AsyncIterator[Event], n: int) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(10):
        while len(out) < n:
            out.append(await anext(sub))
    return out


async def test_publish_subscribe_dedupe_across_three_relays(spawn: Spawn) -> None:
    urls = [(await spawn())[0] for _ in range(3)]
    keys = Keys.generate()
    flt = Filter.build(kinds=[1], authors=[keys.public_key])
    async with RelayPool(relays=urls, timeouts=FAST) as pool:
        stored = [note(keys, f"stored {i}") for i in range(3)]
        for event in stored:
            result = await pool.publish(event)
            assert result.ok
            assert {o.status for o in result.outcomes.values()} == {"accepted"}
        async with pool.subscribe(flt) as sub:
            got = await take(sub, 3)
            async with asyncio.timeout(10):
                await sub.wait_stored()
            assert sub.eose == frozenset(urls)
            live = [note(keys, f"live {i}") for i in range(4)]
            for event in live:
                assert (await pool.publish(event)).ok
            got += await take(sub, 4)
            sentinel = note(keys, "sentinel")
            assert (await pool.publish(sentinel)).ok
            assert (await take(sub, 1))[0].id == sentinel.id  # no copy of the others came first
            assert sorted(e.id for e in got) == sorted(e.id for e in stored + live)
        # Stored events reach EOSE on every relay, so each id was seen on all three.
        async with pool.subscribe(flt) as sub2:
            fetched = [e async for e in sub2.stored()]
            assert len(fetched) == len({e.id for e in fetched}) == 8
            assert all(sub2.seen_on(e.id) == frozenset(urls) for e in fetched)
            assert sub2.stats().duplicates == 16
        stats = pool.stats()
        assert stats.connected == 3
        assert stats.invalid == 0
        assert all(s.accepted == 8 for s in stats.relays.values())


async def test_publish_again_reports_duplicate(spawn: Spawn) -> None:
    url, _ = await spawn()
    keys = Keys.generate()
    event = note(keys, "twice")
    async with RelayPool(relays=[url], timeouts=FAST) as pool:
        assert (await pool.publish(event)).outcomes[url].status == "accepted"
        again = await pool.publish(event)
        assert again.outcomes[url].status == "duplicate"
        assert again.ok


async def test_wait_modes_and_dead_relay(spawn: Spawn) -> None:
    live = [(await spawn())[0] for _ in range(2)]
    dead = f"ws://127.0.0.1:{free_port()}"
    keys = Keys.generate()
    async with RelayPool(relays=[*live, dead], timeouts=FAST) as pool:
        first = await pool.publish(note(keys, "first"), wait="first", timeout=3)
        assert first.ok
        assert len(first.accepted) >= 1
        assert first.outcomes[dead].status in ("pending", "not_connected")
        quorum = await pool.publish(note(keys, "quorum"), wait=2, timeout=3)
        assert quorum.ok
        assert set(quorum.accepted) == set(live)
        every = await pool.publish(note(keys, "all"), wait="all", timeout=0.5)
        assert not every.ok
        assert every.outcomes[dead].status == "not_connected"
        assert {every.outcomes[u].status for u in live} == {"accepted"}
        with pytest.raises(RelayError, match="2 of 3"):
            every.raise_for_status()
        with pytest.raises(ValueError, match="wait must be"):
            await pool.publish(note(keys, "x"), wait=4)
        # fetch does not wait for the unreachable relay once it has failed to connect
        events = await pool.fetch(Filter.build(authors=[keys.public_key]), timeout=5)
        assert {e.content for e in events} == {"first", "quorum", "all"}
        assert pool.stats().relays[dead].connected is False


async def test_fetch_by_ids_tolerates_closed_after_eose(spawn: Spawn) -> None:
    url, _ = await spawn()
    keys = Keys.generate()
    events = [note(keys, str(i)) for i in range(3)]
    async with RelayPool(relays=[url], timeouts=FAST) as pool:
        for event in events:
            assert (await pool.publish(event)).ok
        # LocalRelay answers an ids-only REQ with EOSE and then CLOSED "" (deps.md §3).
        got = await pool.fetch(Filter.build(ids=[e.id for e in events[:2]]))
        assert sorted(e.id for e in got) == sorted(e.id for e in events[:2])
        assert await pool.fetch({"ids": ["00" * 32]}) == []


async def test_restart_on_same_port_delivers_everything_once(
    spawn: Spawn, relay_kind: str, tmp_path: Path
) -> None:
    port = free_port()
    db = tmp_path / "relay.db" if relay_kind == "ours" else None
    url, stop = await spawn(port=port, db=db)
    keys = Keys.generate()
    flt = Filter.build(kinds=[1], authors=[keys.public_key])
    before = note(keys, "before")
    async with (
        RelayPool(relays=[url], timeouts=FAST) as pool,
        pool.subscribe(flt) as sub,
    ):
        async with RelayPool(relays=[url], timeouts=FAST) as publisher:
            assert (await publisher.publish(before)).ok
        assert (await take(sub, 1))[0].id == before.id
        await stop()
        url2, _ = await spawn(port=port, db=db)
        assert url2 == url
        after = [note(keys, f"after {i}") for i in range(5)]
        async with RelayPool(relays=[url], timeouts=FAST) as publisher:
            if relay_kind == "ours":
                # Its database kept the old one: the resumed REQ (since overlaps the gap)
                # sends it again before EOSE, and a re-publish is answered "duplicate" and
                # not passed on. (LocalRelay forgot it: published again to it after our
                # EOSE, it would be a new publication and rightly delivered again.)
                republished = await publisher.publish(before)
                assert republished.outcomes[url].status == "duplicate"
            for event in after:
                assert (await publisher.publish(event)).ok
            got = await take(sub, 5)
            assert sorted(e.id for e in got) == sorted(e.id for e in after)
            sentinel = note(keys, "sentinel")
            assert (await publisher.publish(sentinel)).ok
            assert (await take(sub, 1))[0].id == sentinel.id
        # A REQ after the resumed one on the same socket: once it has its EOSE, the relay has
        # answered the resumed REQ in full.
        assert [e.id for e in await pool.fetch({"ids": [sentinel.id]})] == [sentinel.id]
        stats = pool.stats().relays[url]
        assert stats.reconnects >= 1
        assert sub.stats().delivered == 7
        assert sub.stats().duplicates == (1 if relay_kind == "ours" else 0)


async def test_auth_required_relay(spawn: Spawn, relay_kind: str) -> None:
    url, _ = await spawn(auth=True)
    keys = Keys.generate()
    wrap = note(keys, "sealed", kind=1059, tags=[["p", keys.public_key]])
    flt = Filter.build(kinds=[1059], tags={"p": [keys.public_key]})
    async with RelayPool(relays=[url], signer=keys, timeouts=FAST) as pool:
        result = await pool.publish(wrap)
        assert result.outcomes[url].status == "accepted"
        got = await pool.fetch(flt)
        assert [e.id for e in got] == [wrap.id]
        assert pool.stats().relays[url].authenticated
    async with RelayPool(relays=[url], timeouts=FAST) as anonymous:
        async with anonymous.subscribe(flt) as sub:
            assert [e async for e in sub] == []  # ends: every relay closed it
            assert sub.closed_by[url].startswith("auth-required:")
        if relay_kind == "local":  # LocalRelay in BOTH mode also guards writes
            refused = await anonymous.publish(note(keys, "anon"))
            assert refused.outcomes[url].status == "rejected"
            assert refused.outcomes[url].message.startswith("auth-required:")


async def test_backpressure_bounds_the_queue(spawn: Spawn) -> None:
    url, _ = await spawn()
    keys = Keys.generate()
    start = int(time.time()) - 100
    events = [note(keys, f"n{i}", created_at=start + i) for i in range(40)]
    flt = Filter.build(authors=[keys.public_key])
    async with (
        RelayPool(relays=[url], timeouts=FAST, max_queue=4) as pool,
        pool.subscribe(flt) as sub,
    ):
        async with asyncio.timeout(10):
            await sub.wait_stored()
        # Publish from another connection: this one's reader is held up by the full queue
        # (that is the backpressure), so its own OKs would wait too.
        async with RelayPool(relays=[url], timeouts=FAST) as publisher:
            for event in events:
                assert (await publisher.publish(event)).ok
        got: list[Event] = []
        async with asyncio.timeout(10):
            async for event in sub:
                assert sub.stats().queued <= 4
                got.append(event)
                if len(got) == len(events):
                    break
        assert [e.id for e in got] == [e.id for e in events]


async def test_full_subscription_holds_up_publish_on_the_same_pool(spawn: Spawn) -> None:
    """The trade-off RelayPool documents: lossless backpressure stops the relay's reader, so
    OKs wait behind the full queue; publish reports "timeout" instead of hanging, and once
    the consumer drains the queue everything flows again with nothing lost."""
    url, _ = await spawn()
    keys = Keys.generate()
    max_queue = 3
    async with (
        RelayPool(relays=[url], timeouts=FAST, max_queue=max_queue) as pool,
        pool.subscribe(Filter.build(authors=[keys.public_key])) as sub,
    ):
        async with asyncio.timeout(10):
            assert [e async for e in sub.stored()] == []  # EOSE, and the queue is empty
        # Publish on the same pool without reading: every event comes back to the queue.
        published: list[Event] = []
        statuses: list[str] = []
        while "timeout" not in statuses and len(published) < max_queue + 10:
            event = note(keys, f"n{len(published)}")
            published.append(event)
            statuses.append((await pool.publish(event, timeout=0.5)).outcomes[url].status)
        # Until the queue is full the reader keeps up; then the next OK is not read in time.
        assert len(statuses) > max_queue
        assert statuses == ["accepted"] * (len(statuses) - 1) + ["timeout"]
        assert sub.stats().queued == max_queue
        assert pool.stats().relays[url].timeouts == 1
        # Draining frees the reader: every event arrives once, in order, the timed-out one
        # too (the relay had stored it; only its OK was late), and publishing works again.
        got = await take(sub, len(published))
        assert [e.id for e in got] == [e.id for e in published]
        after = note(keys, "after")
        assert (await pool.publish(after)).outcomes[url].status == "accepted"
        assert (await take(sub, 1))[0].id == after.id
        assert sub.stats().duplicates == 0
        assert pool.stats().relays[url].reconnects == 0


async def test_add_and_remove_relay(spawn: Spawn) -> None:
    a, _ = await spawn()
    b, _ = await spawn()
    keys = Keys.generate()
    async with RelayPool(relays=[a], timeouts=FAST) as pool:
        async with pool.subscribe(Filter.build(authors=[keys.public_key])) as sub:
            await pool.add_relay(b)
            assert pool.relays == (a, b)
            async with RelayPool(relays=[b], timeouts=FAST) as other:
                only_b = note(keys, "only on b")
                assert (await other.publish(only_b)).ok
            assert (await take(sub, 1))[0].id == only_b.id
            assert sub.seen_on(only_b.id) == frozenset({b})
            await pool.remove_relay(b)
            assert list(pool.relays) == [a]
            assert b not in sub.relays
        assert set(pool.stats().relays) == {a}


async def test_misuse_raises_precise_errors(spawn: Spawn) -> None:
    url, _ = await spawn()
    pool = RelayPool(relays=[url])
    with pytest.raises(RelayError, match="not running"):
        await pool.publish(note(Keys.generate(), "x"))
    with pytest.raises(RelayError, match="ws:// or wss://"):
        RelayPool(relays=["http://127.0.0.1:1"])
    async with RelayPool(relays=[url], timeouts=FAST) as pool:
        with pytest.raises(InvalidFilter):
            pool.subscribe({"kinds": "1"})
        with pytest.raises(ValueError, match="at least one filter"):
            pool.subscribe()
        with pytest.raises(RelayError, match="not in the pool"):
            await pool.publish(note(Keys.generate(), "x"), relays=["ws://127.0.0.1:9"])


# -- re-published events: delivered again; copies and re-sent stored events: not ---------------

EPHEMERAL = 20001  # NIP-01: relays pass these on and never store them


async def barrier(publisher: RelayPool, sub: AsyncIterator[Event], keys: Keys) -> None:
    """One ephemeral mark per relay, published to that relay only; take them.

    Each relay passes events on in the order it received them, so once its mark arrived,
    every copy it had for ``sub`` before the mark has been judged; the marks come with
    nothing between them, so nothing was delivered that the test did not take.
    """
    marks = {url: note(keys, f"mark {url}", kind=EPHEMERAL) for url in publisher.relays}
    for url, mark in marks.items():
        assert (await publisher.publish(mark, relays=[url])).ok
    got = await take(sub, len(marks))
    assert {e.id for e in got} == {m.id for m in marks.values()}


async def test_republished_ephemeral_event_is_delivered_again(spawn: Spawn) -> None:
    urls = [(await spawn())[0] for _ in range(3)]
    keys = Keys.generate()
    event = note(keys, "asked again", kind=EPHEMERAL)
    async with (
        RelayPool(relays=urls, timeouts=FAST) as pool,
        pool.subscribe(Filter.build(authors=[keys.public_key])) as sub,
        RelayPool(relays=urls, timeouts=FAST) as publisher,
    ):
        async with asyncio.timeout(10):
            await sub.wait_stored()
        for _ in range(3):
            # Every relay passes each publication on; the subscription shows it once.
            published = await publisher.publish(event)
            assert {o.status for o in published.outcomes.values()} == {"accepted"}
            assert [e.id for e in await take(sub, 1)] == [event.id]
            await barrier(publisher, sub, keys)
        assert sub.seen_on(event.id) == frozenset(urls)
        stats = sub.stats()
        assert stats.delivered == 3 + 3 * len(urls)  # the event thrice, and the marks
        assert stats.duplicates == 3 * (len(urls) - 1)


async def test_republished_stored_event_is_not_passed_on_again(spawn: Spawn) -> None:
    urls = [(await spawn())[0] for _ in range(2)]
    keys = Keys.generate()
    event = note(keys, "stored once")
    async with (
        RelayPool(relays=urls, timeouts=FAST) as pool,
        pool.subscribe(Filter.build(authors=[keys.public_key])) as sub,
        RelayPool(relays=urls, timeouts=FAST) as publisher,
    ):
        async with asyncio.timeout(10):
            await sub.wait_stored()
        assert (await publisher.publish(event)).ok
        assert [e.id for e in await take(sub, 1)] == [event.id]
        # Both relays answer "duplicate" and send nothing to their subscribers (NIP-01
        # leaves this open; LocalRelay and ours agree).
        again = await publisher.publish(event)
        assert {o.status for o in again.outcomes.values()} == {"duplicate"}
        await barrier(publisher, sub, keys)
        assert sub.stats().delivered == 1 + len(urls)


async def test_republish_is_recognised_on_relays_that_sent_the_event(spawn: Spawn) -> None:
    a, _ = await spawn()
    b, _ = await spawn()
    keys = Keys.generate()
    event = note(keys, "first on a", kind=EPHEMERAL)
    async with (
        RelayPool(relays=[a, b], timeouts=FAST) as pool,
        pool.subscribe(Filter.build(authors=[keys.public_key])) as sub,
        RelayPool(relays=[a, b], timeouts=FAST) as publisher,
    ):
        async with asyncio.timeout(10):
            await sub.wait_stored()
        assert (await publisher.publish(event, relays=[a])).ok
        assert [e.id for e in await take(sub, 1)] == [event.id]
        # b never sent it: its copy cannot be told from a late copy of a's, so it is dropped.
        assert (await publisher.publish(event, relays=[b])).ok
        await barrier(publisher, sub, keys)
        assert sub.seen_on(event.id) == frozenset({a, b})
        # Now each has sent it once; published to both again, it is delivered once more.
        assert (await publisher.publish(event)).ok
        assert [e.id for e in await take(sub, 1)] == [event.id]
        await barrier(publisher, sub, keys)
        # And to a alone: a's third copy outnumbers b's two.
        assert (await publisher.publish(event, relays=[a])).ok
        assert [e.id for e in await take(sub, 1)] == [event.id]
        await barrier(publisher, sub, keys)
        assert sub.stats().duplicates == 2  # b's first copy, and one copy of the second round


async def test_after_a_reconnect_only_live_repeats_are_delivered() -> None:
    """Scripted relays, so that what is live and what is stored is exact: a repeat before
    EOSE (a stored event sent again, here after a reconnect) is dropped; a repeat after
    EOSE from a relay that sent the event before is a re-publish, delivered once however
    many relays pass it on."""
    keys = Keys.generate()
    event = note(keys, "the event", kind=EPHEMERAL)
    marks = [note(keys, f"mark {i}", kind=EPHEMERAL) for i in range(3)]

    async def reconnecting(ws: ServerConnection, n: int) -> None:
        sub_id = (await recv(ws))[1]
        if n == 0:
            await send(ws, "EOSE", sub_id)
            await send(ws, "EVENT", sub_id, event.to_dict())  # live: delivered
            await send(ws, "EVENT", sub_id, marks[0].to_dict())
            await ws.close()
            return
        await send(ws, "EVENT", sub_id, event.to_dict())  # the since overlap: dropped
        await send(ws, "EOSE", sub_id)
        await send(ws, "EVENT", sub_id, event.to_dict())  # live again: a re-publish
        await send(ws, "EVENT", sub_id, marks[1].to_dict())
        await ws.wait_closed()

    async def steady(ws: ServerConnection, n: int) -> None:
        sub_id = (await recv(ws))[1]
        await send(ws, "EOSE", sub_id)
        for _ in range(2):  # each publication passed on by this relay too
            await send(ws, "EVENT", sub_id, event.to_dict())
        await send(ws, "EVENT", sub_id, marks[2].to_dict())
        await ws.wait_closed()

    async with (
        scripted(reconnecting) as one,
        scripted(steady) as two,
        RelayPool(relays=[one, two], timeouts=FAST) as pool,
        pool.subscribe(Filter.build(authors=[keys.public_key])) as sub,
    ):
        got = await take(sub, 2 + len(marks))
        assert sorted(e.id for e in got) == sorted([event.id] * 2 + [m.id for m in marks])
        assert pool.stats().relays[one].reconnects == 1
        assert sub.stats().duplicates == 3  # the overlap copy, and two copies of the other's
