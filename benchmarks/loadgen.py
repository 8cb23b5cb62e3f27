"""The relay load generator: plain ``websockets`` clients sending pre-signed events.

Everything that is not the relay's work (signing, serializing, connecting, subscribing) happens
before the clock starts. Connections are opened with ``compression=None``: LocalRelay does not
negotiate permessage-deflate, and compressing on only some relays would measure zlib, not relays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from websockets.asyncio.client import ClientConnection, connect

from dvmkit.nostr.event import Event

OPEN_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one timed run achieved: ``count`` operations (accepted events or deliveries)."""

    count: int
    rejected: int
    elapsed: float
    complete: bool

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0


async def _recv(ws: ClientConnection) -> str:
    raw = await ws.recv()
    return raw if isinstance(raw, str) else raw.decode()


def event_message(event: Event) -> str:
    return '["EVENT",' + event.to_json() + "]"


async def open_connections(url: str, count: int) -> list[ClientConnection]:
    async def one() -> ClientConnection:
        return await connect(
            url, compression=None, ping_interval=None, max_size=None, open_timeout=OPEN_TIMEOUT
        )

    connections: list[ClientConnection] = []
    try:
        # Batches of 50: a burst of hundreds of handshakes can overflow a relay's accept backlog.
        for start in range(0, count, 50):
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one()) for _ in range(min(50, count - start))]
            connections.extend(t.result() for t in tasks)
    except BaseException:
        await close_all(connections)
        raise
    return connections


async def close_all(connections: Sequence[ClientConnection]) -> None:
    async with asyncio.TaskGroup() as tg:
        for ws in connections:
            tg.create_task(_close(ws))


async def _close(ws: ClientConnection) -> None:
    try:
        async with asyncio.timeout(5):
            await ws.close()
    except (TimeoutError, OSError):
        pass


async def publish(
    connections: Sequence[ClientConnection],
    batches: Sequence[Sequence[str]],
    *,
    window: int,
    max_seconds: float,
    limit_s: float,
) -> Outcome:
    """Publish ``batches[i]`` on ``connections[i]``, each pipelined with up to ``window`` in flight.

    Sending stops early after ``max_seconds`` (so a slow relay gets a shorter run, not a longer
    one); the clock stops when the last sent event's OK has arrived.
    """
    start = time.perf_counter()
    deadline = start + max_seconds
    counts = [[0, 0] for _ in connections]  # accepted, rejected
    complete = True
    try:
        async with asyncio.timeout(limit_s), asyncio.TaskGroup() as tg:
            for ws, batch, count in zip(connections, batches, counts, strict=True):
                tg.create_task(_pipeline(ws, batch, window, deadline, count))
    except TimeoutError:
        complete = False
    elapsed = time.perf_counter() - start
    return Outcome(sum(c[0] for c in counts), sum(c[1] for c in counts), elapsed, complete)


async def _pipeline(
    ws: ClientConnection, messages: Sequence[str], window: int, deadline: float, count: list[int]
) -> None:
    slots = asyncio.Semaphore(window)
    sent = 0
    all_acked = asyncio.Event()
    target: int | None = None

    async def receive() -> None:
        acked = 0
        while True:
            raw = await _recv(ws)
            if not raw.startswith('["OK"'):
                continue  # NOTICE and the like
            message = orjson.loads(raw)
            count[0 if message[2] is True else 1] += 1
            acked += 1
            slots.release()
            if target is not None and acked >= target:
                all_acked.set()
                return

    async with asyncio.TaskGroup() as tg:
        receiver = tg.create_task(receive())
        for message in messages:
            if time.perf_counter() > deadline:
                break
            await slots.acquire()
            await ws.send(message)
            sent += 1
        target = sent
        if sum(count) >= sent:
            receiver.cancel()
        else:
            await all_acked.wait()


async def subscribe(connections: Sequence[ClientConnection], filter_: dict[str, object]) -> None:
    """Send the same REQ on every connection and wait for each EOSE."""
    request = orjson.dumps(["REQ", "bench", filter_]).decode()

    async def one(ws: ClientConnection) -> None:
        await ws.send(request)
        while '"EOSE"' not in (await _recv(ws))[:10]:
            pass

    async with asyncio.timeout(OPEN_TIMEOUT), asyncio.TaskGroup() as tg:
        for ws in connections:
            tg.create_task(one(ws))


async def fanout(
    publisher: ClientConnection,
    subscribers: Sequence[ClientConnection],
    messages: Sequence[str],
    *,
    window: int,
    limit_s: float,
) -> Outcome:
    """Publish ``messages`` once; time until every subscriber has received every one of them."""
    expected = len(messages)
    received = [0] * len(subscribers)
    finished = [0.0] * len(subscribers)

    async def listen(index: int, ws: ClientConnection) -> None:
        got = 0
        while got < expected:
            raw = await _recv(ws)
            if '"EVENT"' in raw[:10]:
                got += 1
                received[index] = got
        finished[index] = time.perf_counter()

    start = time.perf_counter()
    complete = True
    try:
        async with asyncio.timeout(limit_s), asyncio.TaskGroup() as tg:
            for index, ws in enumerate(subscribers):
                tg.create_task(listen(index, ws))
            tg.create_task(_pipeline(publisher, messages, window, float("inf"), [0, 0]))
    except TimeoutError:
        complete = False
    end = max(finished) if complete else time.perf_counter()
    return Outcome(sum(received), 0, end - start, complete)


async def round_trips(
    publisher: ClientConnection,
    subscriber: ClientConnection,
    messages: Sequence[str],
    *,
    limit_s: float,
) -> list[float]:
    """One at a time: publish, time until the subscriber has the event, then take the OK.

    Returns:
        The round trips in seconds, one per message.
    """
    samples: list[float] = []
    async with asyncio.timeout(limit_s):
        for message in messages:
            start = time.perf_counter()
            await publisher.send(message)
            while '"EVENT"' not in (await _recv(subscriber))[:10]:
                pass
            samples.append(time.perf_counter() - start)
            while not (await _recv(publisher)).startswith('["OK"'):
                pass
    return samples
