"""The relay load generator: raw websocket clients that cost the client as little as possible.

A relay can only be measured if the client is not the bottleneck, so the hot paths do almost
nothing in Python: publishers write pre-built, pre-masked frames (RFC 6455 §5.3: a client
masks every frame, each with its own random key) in batches, one write per read; replies are
classified by looking at the first bytes of each frame (``OK`` true or false, ``EVENT``),
never by decoding JSON. Everything that is not the relay's work (signing, serializing,
masking, connecting, subscribing) happens before the clock starts. The client offers no
permessage-deflate, like LocalRelay, so no relay compresses.

Every relay is driven by exactly the same code, and every count is exact: an OK is counted
once per frame, a delivery once per EVENT frame, and a run that does not get all of them in
time is reported as incomplete.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from dvmkit.nostr.event import Event

OPEN_TIMEOUT = 10.0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
_READ_SIZE = 1 << 18
_HEAD = 160  # bytes kept of each message: enough to see an OK's verdict, even with spaces
_EVENT_HEAD = 12
# ["OK","<64 hex>",true...: the verdict sits at a fixed offset when there is no whitespace.
_OK_VERDICT_AT = len('["OK","') + 64 + len('",')
# Any id: nostr-relay answers an event whose signature fails with an empty one.
_OK = re.compile(rb'\[\s*"OK"\s*,\s*"[^"]*"\s*,\s*(true|false)')


class ProtocolViolation(Exception):
    """The relay broke RFC 6455 or closed the connection."""


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


def client_frame(payload: bytes, *, opcode: int = 1) -> bytes:
    """One final, masked client frame (RFC 6455 §5.2), text unless ``opcode`` says otherwise."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + mask + masked


def event_frame(event: Event) -> bytes:
    """``["EVENT", <event>]`` as a ready-to-write masked frame."""
    return client_frame(b'["EVENT",' + event.to_json_bytes() + b"]")


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


class Client(asyncio.Protocol):
    """One websocket connection: handshake done by hand, then frames parsed as they arrive.

    Replies are consumed in ``data_received`` itself, without waking a task per read: by
    default they are queued for :meth:`read`; during a timed run a publisher pipeline or an
    EVENT counter takes them instead.
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._handshake: bytearray | None = bytearray()
        self._handshake_done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._fragment: bytes | None = None  # head of a fragmented message in progress
        self._messages: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._lost: BaseException | None = None
        self._consumer: _Consumer | None = None

    @classmethod
    async def open(cls, url: str) -> Client:
        """Connect and upgrade (RFC 6455 §4.1), checking the server's accept key."""
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname is None:
            raise ValueError(f"only ws:// URLs are supported, not {url!r}")
        port = parts.port or 80
        path = parts.path or "/"
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(OPEN_TIMEOUT):
            _, client = await loop.create_connection(cls, parts.hostname, port)
            try:
                key = base64.b64encode(os.urandom(16))
                client._write(
                    b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                    % (path.encode(), parts.hostname.encode(), port, key)
                )
                response = await client._handshake_done
                lines = response.decode("latin-1").split("\r\n")
                if lines[0].split(" ", 2)[1:2] != ["101"]:
                    raise ProtocolViolation(f"upgrade refused: {lines[0]!r}")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                expected = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
                if headers.get("sec-websocket-accept") != expected:
                    raise ProtocolViolation("bad Sec-WebSocket-Accept")
            except BaseException:
                client.abort()
                raise
        return client

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ProtocolViolation(f"the relay closed the connection ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        if self._handshake is not None:
            self._handshake += data
            end = self._handshake.find(b"\r\n\r\n")
            if end < 0:
                if len(self._handshake) > 65536:
                    self._fail(ProtocolViolation("oversized handshake response"))
                return
            data = bytes(self._handshake[end + 4 :])
            if not self._handshake_done.done():
                self._handshake_done.set_result(bytes(self._handshake[: end + 4]))
            self._handshake = None
            if not data:
                return
        try:
            heads = self._parse(data)
        except ProtocolViolation as exc:
            self._fail(exc)
            return
        if not heads:
            return
        if self._consumer is not None:
            self._consumer.consume(heads)
            return
        self._messages.extend(heads)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = exc
        for future in (self._handshake_done, self._waiter):
            if future is not None and not future.done():
                future.set_exception(exc)
        if self._consumer is not None:
            self._consumer.fail(exc)
        if self._transport is not None:
            self._transport.abort()

    def _parse(self, data: bytes) -> list[bytes]:
        """Complete messages, each cut to its first bytes; answers pings, refuses closes."""
        buf = self._buffer
        buf += data
        size = len(buf)
        out: list[bytes] = []
        pos = 0
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            if second & 0x80:
                raise ProtocolViolation("a server frame must not be masked (RFC 6455 §5.1)")
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            if opcode == 1 or opcode == 2:
                head = bytes(buf[start : min(end, start + _HEAD)])
                if first & 0x80:
                    out.append(head)
                else:
                    self._fragment = head
            elif opcode == 0:
                if first & 0x80 and self._fragment is not None:
                    out.append(self._fragment)
                    self._fragment = None
            elif opcode == 9:
                self._write(client_frame(bytes(buf[start:end]), opcode=10))
            elif opcode == 8:
                raise ProtocolViolation(
                    f"the relay closed the websocket: {bytes(buf[start:end])!r}"
                )
            pos = end
        del buf[:pos]
        return out

    # -- use --------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._lost is not None:
            raise self._lost
        assert self._transport is not None
        self._transport.write(data)

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

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            self._transport.write(client_frame((1000).to_bytes(2, "big"), opcode=8))
        self._transport.close()


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
    async with asyncio.TaskGroup() as tg:
        for client in connections:
            tg.create_task(client.close())


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
