"""The provider benchmark's customer: one raw websocket to the relay, as cheap as it can be.

The client shares two cores with the relay and the DVM under test, so its hot path does very
little: request frames are signed, serialized and masked (RFC 6455 §5.3) before the clock
starts, a burst is one ``write``, and replies are handled inside ``data_received`` without a
task wake-up per message. Each kind-6050 result (NIP-90) is matched to its request through its
``e`` tag and timestamped on arrival; kind-7000 feedback is only counted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections import Counter
from urllib.parse import urlsplit

import orjson

from dvmkit.nostr.event import Event

OPEN_TIMEOUT = 10.0
RESULT_KIND = 6050
FEEDBACK_KIND = 7000
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
_MAX_MESSAGE = 16 * 1_048_576


class ClientError(Exception):
    """The relay refused the upgrade, broke RFC 6455 or closed the connection."""


def masked_frame(payload: bytes, *, opcode: int = 1) -> bytes:
    """One final client frame (RFC 6455 §5.2), masked with a fresh random key."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + mask + body


def event_frame(event: Event) -> bytes:
    return masked_frame(b'["EVENT",' + event.to_json_bytes() + b"]")


class Customer(asyncio.Protocol):
    """Publishes job requests and records when each one's result arrives."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._head: bytearray | None = bytearray()  # the HTTP response until the upgrade
        self._upgraded: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._lost: BaseException | None = None
        self._eose: asyncio.Future[None] | None = None
        self._waiting: set[str] = set()
        self._all_answered: asyncio.Future[None] | None = None
        self.inputs: dict[str, str] = {}  # request id -> its input text
        self.results: dict[str, float] = {}  # request id -> perf_counter() when its result came
        self.errors: dict[str, float] = {}  # request id -> when an error feedback said no
        self.last_settled_at = 0.0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.feedback: Counter[str] = Counter()  # kind-7000 status -> count
        self.wrong_content = 0
        self.duplicates = 0
        self.unknown = 0
        self.notices: list[str] = []

    @classmethod
    async def open(cls, url: str) -> Customer:
        """Connect and upgrade (RFC 6455 §4.1), checking the server's accept key.

        Raises:
            ClientError: the relay did not upgrade the connection properly.
        """
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"only ws:// on loopback is supported, not {url!r}")
        port = parts.port or 80
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(OPEN_TIMEOUT):
            _, client = await loop.create_connection(cls, parts.hostname, port)
            key = base64.b64encode(os.urandom(16))
            client._write(
                b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
                % ((parts.path or "/").encode(), parts.hostname.encode(), port, key)
            )
            response = (await client._upgraded).decode("latin-1")
        expected = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
        status = response.split("\r\n", 1)[0]
        if " 101 " not in f"{status} " or expected not in response:
            client.close()
            raise ClientError(f"websocket upgrade refused: {status!r}")
        return client

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ClientError(f"the relay closed the connection ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self._head is not None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > 65536:
                    self._fail(ClientError("oversized handshake response"))
                return
            data = bytes(self._head[end + 4 :])
            if not self._upgraded.done():
                self._upgraded.set_result(bytes(self._head[:end]))
            self._head = None
        self._buffer += data
        try:
            for message in self._messages():
                self._handle(message, now)
        except (ClientError, orjson.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
            self._fail(ClientError(f"bad message from the relay: {exc!r}"))

    # -- frames and messages ---------------------------------------------------------------

    def _messages(self) -> list[bytes]:
        """Every complete, unfragmented data message in the buffer (the relays under test do
        not fragment); answers pings, fails on a close frame."""
        buf, pos, out = self._buffer, 0, []
        while len(buf) - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, start = second & 0x7F, pos + 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, start = int.from_bytes(buf[start : start + 2], "big"), start + 2
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, start = int.from_bytes(buf[start : start + 8], "big"), start + 8
            if second & 0x80 or length > _MAX_MESSAGE:
                raise ClientError("masked or oversized server frame (RFC 6455 §5.1)")
            if start + length > len(buf):
                break
            opcode, payload = first & 0x0F, bytes(buf[start : start + length])
            pos = start + length
            if opcode in (1, 2):
                if not first & 0x80:
                    raise ClientError("fragmented message")
                out.append(payload)
            elif opcode == 9:
                self._write(masked_frame(payload, opcode=10))
            elif opcode == 8:
                raise ClientError(f"the relay closed the websocket: {payload!r}")
        del buf[:pos]
        return out

    def _handle(self, message: bytes, now: float) -> None:
        if message.startswith(b'["OK"'):
            _, _, ok, reason = orjson.loads(message)
            if ok:
                self.accepted += 1
            else:
                self.rejected[str(reason)[:80]] += 1
            return
        if message.startswith(b'["EVENT"'):
            event = orjson.loads(message)[2]
            request = next((t[1] for t in event["tags"] if t[:1] == ["e"] and len(t) > 1), None)
            if event["kind"] == FEEDBACK_KIND:
                status = next(
                    (t[1] for t in event["tags"] if t[:1] == ["status"] and len(t) > 1), "?"
                )
                self.feedback[str(status)] += 1
                if status == "error" and request in self.inputs:
                    self._refused(request, now)
            elif event["kind"] == RESULT_KIND:
                self._result(request, event["content"], now)
            return
        if message.startswith(b'["EOSE"'):
            if self._eose is not None and not self._eose.done():
                self._eose.set_result(None)
            return
        if len(self.notices) < 20:
            self.notices.append(message[:200].decode(errors="replace"))

    def _result(self, request: object, content: object, now: float) -> None:
        if not isinstance(request, str) or request not in self.inputs:
            self.unknown += 1
            return
        if request in self.results:
            self.duplicates += 1
            return
        self.results[request] = now
        self.last_settled_at = now
        if content != self.inputs[request]:
            self.wrong_content += 1
        self._settle(request)

    def _refused(self, request: str, now: float) -> None:
        """An ``error`` feedback: the DVM will not answer this request (NIP-90)."""
        if request not in self.results and request not in self.errors:
            self.errors[request] = now
            self.last_settled_at = now
            self._settle(request)

    def _settle(self, request: str) -> None:
        self._waiting.discard(request)
        done = self._all_answered
        if not self._waiting and done is not None and not done.done():
            done.set_result(None)

    # -- use -------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._lost is not None:
            raise self._lost
        assert self._transport is not None
        self._transport.write(data)

    def _fail(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = exc
        for future in (self._upgraded, self._eose, self._all_answered):
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: whoever awaits it re-raises it
        if self._transport is not None:
            self._transport.abort()

    async def subscribe(self, customers: list[str]) -> None:
        """Results and feedback addressed to ``customers`` (hex pubkeys)."""
        self._eose = asyncio.get_running_loop().create_future()
        request = ["REQ", "jobs", {"kinds": [RESULT_KIND, FEEDBACK_KIND], "#p": customers}]
        self._write(masked_frame(orjson.dumps(request)))
        async with asyncio.timeout(OPEN_TIMEOUT):
            await self._eose

    def expect(self, requests: dict[str, str]) -> asyncio.Future[None]:
        """Wait for these requests (id -> input text); resolves once each has its result or
        an error feedback."""
        self.inputs.update(requests)
        self._waiting = {r for r in requests if r not in self.results and r not in self.errors}
        self._all_answered = asyncio.get_running_loop().create_future()
        if not self._waiting:
            self._all_answered.set_result(None)
        return self._all_answered

    def send(self, frames: list[bytes]) -> float:
        """Write pre-built frames at once; returns the perf_counter() just before the write."""
        sent_at = time.perf_counter()
        self._write(b"".join(frames))
        return sent_at

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(masked_frame((1000).to_bytes(2, "big"), opcode=8))
            self._transport.close()
