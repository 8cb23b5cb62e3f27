"""The relay load generator: raw websocket clients that cost the client as little as possible.

A relay can only be measured if the client is not the bottleneck, so the hot paths do almost
nothing in Python: publishers write pre-built, pre-masked frames (:mod:`benchmarks.wsraw`) in
batches, one write per read; replies are classified by looking at the first bytes of each
frame (``OK`` true or false, ``EVENT``), never by decoding JSON. Everything that is not the
relay's work (signing, serializing, masking, connecting, subscribing) happens before the clock
starts.

Every relay is driven by exactly the same code, and every count is exact: an OK is counted
once per frame, a delivery once per EVENT frame, and a run that does not get all of them in
time is reported as incomplete.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.wsraw import OPEN_TIMEOUT, Connection, ProtocolViolation, client_frame, reject
from benchmarks.wsraw import event_frame as event_frame  # what benchmarks.relay builds with

_HEAD = 160  # bytes kept of each message: enough to see an OK's verdict, even with spaces
_EVENT_HEAD = 12
# ["OK","<64 hex>",true...: the verdict sits at a fixed offset when there is no whitespace.
_OK_VERDICT_AT = len('["OK","') + 64 + len('",')
# Any id: nostr-relay answers an event whose signature fails with an empty one.
_OK = re.compile(rb'\[\s*"OK"\s*,\s*"[^"]*"\s*,\s*(true|false)')


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


def ok_verdict(head: bytes) -> bool | None:
    """True/False for an ``OK`` message (from its first bytes), None for anything else."""
    if head[:6] == b'["OK",' and head[_OK_VERDICT_AT - 1 : _OK_VERDICT_AT] == b",":
        verdict = head[_OK_VERDICT_AT : _OK_VERDICT_AT + 4]
        if verdict == b"true":
            return True
        if verdict == b"fals":
            return False
    found = _OK.match(head)
    return None if found is None else found.group(1) == b"true"


class Client(Connection):
    """One websocket connection whose messages are cut to their heads as they arrive.

    Replies are consumed in ``data_received`` itself, without waking a task per read: by
    default they are queued for :meth:`read`; during a timed run a publisher pipeline or an
    EVENT counter takes them instead.
    """

    keep = _HEAD

    def __init__(self) -> None:
        super().__init__()
        self._messages: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._consumer: _Consumer | None = None

    def _received(self, messages: list[bytes]) -> None:
        if self._consumer is not None:
            self._consumer.consume(messages)
            return
        self._messages.extend(messages)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: ProtocolViolation) -> None:
        super()._fail(exc)
        reject(self._waiter, exc)
        if self._consumer is not None:
            self._consumer.fail(exc)

    def write(self, frames: Sequence[bytes]) -> None:
        """Write pre-built frames, the whole batch at once."""
        self._write(b"".join(frames))

    async def send(self, payload: bytes) -> None:
        """Mask and send one text message (for setup, not for timed loops)."""
        self._write(client_frame(payload))

    async def read(self) -> list[bytes]:
        """The messages received since the last call (at least one), each cut to its head."""
        while not self._messages:
            if self._lost is not None:
                raise self._lost
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        messages, self._messages = self._messages, []
        return messages

    def attach(self, consumer: _Consumer | None) -> None:
        """Hand every message from now on to ``consumer`` (None: queue them for :meth:`read`)."""
        self._consumer = consumer
        if consumer is not None:
            if self._lost is not None:
                consumer.fail(self._lost)
            elif self._messages:
                messages, self._messages = self._messages, []
                consumer.consume(messages)


async def open_connections(url: str, count: int) -> list[Client]:
    connections: list[Client] = []
    try:
        # Batches of 50: a burst of hundreds of handshakes can overflow a relay's accept backlog.
        for start in range(0, count, 50):
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(Client.open(url)) for _ in range(min(50, count - start))]
            connections.extend(t.result() for t in tasks)
    except BaseException:
        await close_all(connections)
        raise
    return connections


async def close_all(connections: Sequence[Client]) -> None:
    for client in connections:
        client.close()


class _Consumer:
    """Takes a connection's messages as they arrive; ``done`` resolves at the end of its run."""

    def __init__(self) -> None:
        self.done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def consume(self, heads: list[bytes]) -> None:
        raise NotImplementedError

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(time.perf_counter())


class _Pipeline(_Consumer):
    """Keeps ``window`` events in flight: every batch of OKs is answered by one write."""

    def __init__(
        self, client: Client, frames: Sequence[bytes], window: int, deadline: float
    ) -> None:
        super().__init__()
        self.accepted = 0
        self.rejected = 0
        self._client = client
        self._frames = frames
        self._window = window
        self._deadline = deadline
        self._sent = 0

    def start(self) -> None:
        self._sent = min(self._window, len(self._frames))
        if not self._sent:
            self.finish()
            return
        self._client.write(self._frames[: self._sent])

    def consume(self, heads: list[bytes]) -> None:
        for head in heads:
            verdict = ok_verdict(head)
            if verdict is None:
                continue  # NOTICE and the like
            if verdict:
                self.accepted += 1
            else:
                self.rejected += 1
        acked = self.accepted + self.rejected
        total = len(self._frames)
        if self._sent < total and time.perf_counter() <= self._deadline:
            more = min(acked + self._window, total) - self._sent
            if more > 0:
                try:
                    self._client.write(self._frames[self._sent : self._sent + more])
                except ProtocolViolation as exc:
                    self.fail(exc)
                    return
                self._sent += more
        elif acked >= self._sent:
            self.finish()


class _EventCounter(_Consumer):
    """Counts EVENT messages until ``expected`` have arrived."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.count = 0

    def consume(self, heads: list[bytes]) -> None:
        for head in heads:
            if b'"EVENT"' in head[:_EVENT_HEAD]:
                self.count += 1
        if self.count >= self.expected:
            self.finish()


async def publish(
    connections: Sequence[Client],
    batches: Sequence[Sequence[bytes]],
    *,
    window: int,
    max_seconds: float,
    limit_s: float,
) -> Outcome:
    """Publish ``batches[i]`` (frames) on ``connections[i]``, up to ``window`` in flight each.

    Sending stops early after ``max_seconds`` (so a slow relay gets a shorter run, not a longer
    one); the clock stops when the last sent event's OK has arrived.
    """
    start = time.perf_counter()
    deadline = start + max_seconds
    pipelines = [
        _Pipeline(client, batch, window, deadline)
        for client, batch in zip(connections, batches, strict=True)
    ]
    complete = True
    try:
        async with asyncio.timeout(limit_s):
            for client, pipeline in zip(connections, pipelines, strict=True):
                client.attach(pipeline)
                pipeline.start()
            await asyncio.gather(*(p.done for p in pipelines))
    except TimeoutError:
        complete = False
    finally:
        for client in connections:
            client.attach(None)
    elapsed = time.perf_counter() - start
    return Outcome(
        sum(p.accepted for p in pipelines), sum(p.rejected for p in pipelines), elapsed, complete
    )


async def subscribe(connections: Sequence[Client], request: bytes) -> None:
    """Send the same REQ on every connection and wait for each EOSE."""

    async def one(client: Client) -> None:
        await client.send(request)
        while not any(b'"EOSE"' in head[:_EVENT_HEAD] for head in await client.read()):
            pass

    async with asyncio.timeout(OPEN_TIMEOUT), asyncio.TaskGroup() as tg:
        for client in connections:
            tg.create_task(one(client))


async def fanout(
    publisher: Client,
    subscribers: Sequence[Client],
    frames: Sequence[bytes],
    *,
    window: int,
    limit_s: float,
) -> Outcome:
    """Publish ``frames`` once; time until every subscriber has received every one of them."""
    counters = [_EventCounter(len(frames)) for _ in subscribers]
    pipeline = _Pipeline(publisher, frames, window, float("inf"))
    start = time.perf_counter()
    complete = True
    try:
        async with asyncio.timeout(limit_s):
            for client, counter in zip(subscribers, counters, strict=True):
                client.attach(counter)
            publisher.attach(pipeline)
            pipeline.start()
            finished = await asyncio.gather(*(c.done for c in counters), pipeline.done)
    except TimeoutError:
        complete = False
    finally:
        for client in (publisher, *subscribers):
            client.attach(None)
    # Exactly one delivery per subscriber and event; more would be a relay bug.
    complete = complete and all(c.count == c.expected for c in counters)
    end = max(finished[:-1]) if complete else time.perf_counter()
    return Outcome(sum(min(c.count, c.expected) for c in counters), 0, end - start, complete)


async def round_trips(
    publisher: Client,
    subscriber: Client,
    frames: Sequence[bytes],
    *,
    limit_s: float,
) -> list[float]:
    """One at a time: publish, time until the subscriber has the event, then take the OK.

    Returns:
        The round trips in seconds, one per message.
    """
    samples: list[float] = []
    async with asyncio.timeout(limit_s):
        for frame in frames:
            start = time.perf_counter()
            publisher.write((frame,))
            events = 0
            while not events:
                events = sum(b'"EVENT"' in head[:_EVENT_HEAD] for head in await subscriber.read())
            samples.append(time.perf_counter() - start)
            if events != 1:
                raise ProtocolViolation(f"{events} deliveries of one event")
            while all(ok_verdict(head) is None for head in await publisher.read()):
                pass
    return samples
