"""A raw RFC 6455 websocket client on asyncio, shared by the benchmarks' load generators.

The relay and provider benchmarks share two cores with the servers they measure, so their
client does almost nothing in Python: frames are built and masked by hand (RFC 6455 §5.3: a
client masks every frame, each with its own random key), usually before the clock starts;
server frames are cut out of the byte stream by :class:`FrameParser` inside ``data_received``,
with no task woken per message. No extension is offered, so no permessage-deflate: like
LocalRelay, no relay under test compresses. Only loopback ``ws://`` URLs are accepted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from dvmkit.nostr.event import Event

OPEN_TIMEOUT = 10.0
MAX_MESSAGE = 16 * 1_048_576
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
_MAX_HANDSHAKE = 65536
_LOOPBACK = ("127.0.0.1", "localhost")


class ProtocolViolation(Exception):
    """The relay refused the upgrade, broke RFC 6455 or closed the connection."""


def client_frame(payload: bytes, *, opcode: int = TEXT) -> bytes:
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


def upgrade_request(*, host: str, port: int, path: str, key: bytes) -> bytes:
    """The client's opening handshake (RFC 6455 §4.1) for the base64 nonce ``key``."""
    return (
        b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), host.encode(), port, key)
    )


def check_upgrade(response: bytes, key: bytes) -> None:
    """Accept the server's handshake response (RFC 6455 §4.2.2) to a request with ``key``.

    Raises:
        ProtocolViolation: not a 101, or a Sec-WebSocket-Accept that does not match ``key``.
    """
    lines = response.decode("latin-1").split("\r\n")
    if lines[0].split(" ", 2)[1:2] != ["101"]:
        raise ProtocolViolation(f"upgrade refused: {lines[0][:200]!r}")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    expected = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != expected:
        raise ProtocolViolation("bad Sec-WebSocket-Accept")


class FrameParser:
    """Server frames in, complete messages out, however the stream was split into reads.

    Each message is cut to its first ``keep`` bytes, so a client that only needs a message's
    head never copies the rest. Fragments are joined (RFC 6455 §5.4); pings are handed back
    for the caller to answer; a close frame, a masked frame (§5.1), an unknown opcode or
    reserved bit (§5.2), a bad control frame (§5.5) or a message over ``max_message`` bytes
    raises :class:`ProtocolViolation`.
    """

    def __init__(self, *, keep: int = MAX_MESSAGE, max_message: int = MAX_MESSAGE) -> None:
        self._keep = keep
        self._max = max_message
        self._buffer = bytearray()
        self._fragment: bytearray | None = None  # the head of a fragmented message so far
        self._fragment_size = 0

    def feed(self, data: bytes) -> tuple[list[bytes], list[bytes]]:
        """Take the next bytes read from the connection.

        Returns:
            The messages completed by ``data`` and the payloads of the pings it finished.

        Raises:
            ProtocolViolation: the server broke RFC 6455 or closed the websocket.
        """
        buf = self._buffer
        buf += data
        size = len(buf)
        keep = self._keep
        out: list[bytes] = []
        pings: list[bytes] = []
        pos = 0
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            if second & 0x80:
                raise ProtocolViolation("a server frame must not be masked (RFC 6455 §5.1)")
            if first & 0x70:
                raise ProtocolViolation("reserved bits set with no extension (RFC 6455 §5.2)")
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
            if length > self._max:
                raise ProtocolViolation(f"a {length}-byte frame (at most {self._max})")
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            fin = first & 0x80
            if opcode in (TEXT, BINARY):
                if self._fragment is not None:
                    raise ProtocolViolation("a new message inside a fragmented one (RFC 6455 §5.4)")
                head = bytes(buf[start : min(end, start + keep)])
                if fin:
                    out.append(head)
                else:
                    self._fragment, self._fragment_size = bytearray(head), length
            elif opcode == CONTINUATION:
                out.extend(self._continue(buf, start, end, fin))
            elif opcode < CLOSE or opcode > PONG:
                raise ProtocolViolation(f"unknown opcode {opcode} (RFC 6455 §5.2)")
            elif not fin or length > 125:
                raise ProtocolViolation("a fragmented or long control frame (RFC 6455 §5.5)")
            elif opcode == PING:
                pings.append(bytes(buf[start:end]))
            elif opcode == CLOSE:
                raise ProtocolViolation(
                    f"the relay closed the websocket: {bytes(buf[start:end])!r}"
                )
            pos = end
        del buf[:pos]
        return out, pings

    def _continue(self, buf: bytearray, start: int, end: int, fin: int) -> list[bytes]:
        fragment = self._fragment
        if fragment is None:
            raise ProtocolViolation("a continuation with no message to continue (RFC 6455 §5.4)")
        self._fragment_size += end - start
        if self._fragment_size > self._max:
            raise ProtocolViolation(f"a message over {self._max} bytes")
        room = self._keep - len(fragment)
        if room > 0:
            fragment += buf[start : min(end, start + room)]
        if not fin:
            return []
        self._fragment = None
        return [bytes(fragment)]


def reject(future: asyncio.Future[Any] | None, exc: BaseException) -> None:
    """Fail ``future`` if it is still pending, marking the error retrieved: whoever awaits the
    future re-raises it, and nobody is warned about an error that nobody awaited."""
    if future is not None and not future.done():
        future.set_exception(exc)
        future.exception()


class Connection(asyncio.Protocol):
    """One websocket connection: the handshake done by hand, then frames parsed as they come.

    Subclasses take the messages in :meth:`_received`, called from ``data_received``; they
    extend :meth:`_fail` to fail their own waiters. ``keep`` bounds the bytes kept of each
    message.
    """

    keep: ClassVar[int] = MAX_MESSAGE

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._handshake: bytearray | None = bytearray()  # the HTTP response until the upgrade
        self._upgraded: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._parser = FrameParser(keep=self.keep)
        self._lost: ProtocolViolation | None = None

    @classmethod
    async def open(cls, url: str) -> Self:
        """Connect and upgrade (RFC 6455 §4.1), checking the server's accept key.

        Args:
            url: ``ws://127.0.0.1:<port>/<path>`` (or ``localhost``).

        Returns:
            The open connection.

        Raises:
            ValueError: not a loopback ``ws://`` URL.
            ProtocolViolation: the server did not upgrade the connection properly.
            TimeoutError: no upgrade within ``OPEN_TIMEOUT`` seconds.
        """
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname not in _LOOPBACK:
            raise ValueError(f"only ws:// on loopback is supported, not {url!r}")
        port = parts.port or 80
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(OPEN_TIMEOUT):
            _, conn = await loop.create_connection(cls, parts.hostname, port)
            try:
                key = base64.b64encode(os.urandom(16))
                path = parts.path or "/"
                conn._write(upgrade_request(host=parts.hostname, port=port, path=path, key=key))
                check_upgrade(await conn._upgraded, key)
            except BaseException:
                conn.abort()
                raise
        return conn

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
                if len(self._handshake) > _MAX_HANDSHAKE:
                    self._fail(ProtocolViolation("oversized handshake response"))
                return
            data = bytes(self._handshake[end + 4 :])
            if not self._upgraded.done():
                self._upgraded.set_result(bytes(self._handshake[: end + 4]))
            self._handshake = None
            if not data:
                return
        try:
            messages, pings = self._parser.feed(data)
            for ping in pings:
                self._write(client_frame(ping, opcode=PONG))
        except ProtocolViolation as exc:
            self._fail(exc)
            return
        if messages:
            self._received(messages)

    # -- for subclasses ---------------------------------------------------------------------

    def _received(self, messages: list[bytes]) -> None:
        raise NotImplementedError

    def _fail(self, exc: ProtocolViolation) -> None:
        if self._lost is None:
            self._lost = exc
        reject(self._upgraded, exc)
        if self._transport is not None:
            self._transport.abort()

    def _write(self, data: bytes) -> None:
        if self._lost is not None:
            raise self._lost
        assert self._transport is not None
        self._transport.write(data)

    # -- use --------------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection at once, with no close handshake."""
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Send a normal close (1000, RFC 6455 §7.4.1) and close, without awaiting the echo."""
        if self._transport is None or self._transport.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            self._transport.write(client_frame((1000).to_bytes(2, "big"), opcode=CLOSE))
        self._transport.close()
