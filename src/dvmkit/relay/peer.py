"""One client connection of the relay: its subscriptions, NIP-42 identity, rates and outbox.

Everything the relay says to a client goes through the connection's outbox, which one sender
task drains; the relay's own code never waits on a slow client. A client that lets more than
``max_outbox_bytes`` pile up (it reads slower than its subscriptions produce) is dropped
rather than allowed to grow the relay's memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections import deque

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from dvmkit.relay.fanout import Subscription
from dvmkit.relay.limits import RelayLimits, TokenBucket

log = logging.getLogger("dvmkit.relay")

_WRITE_BATCH = 256 * 1024  # bytes per socket write; then wait for the transport to drain


class Peer:
    """State of one websocket connection."""

    def __init__(self, ws: ServerConnection, limits: RelayLimits) -> None:
        self.ws = ws
        self.subs: dict[str, Subscription] = {}
        #: Pubkeys this connection proved it holds (NIP-42); several are allowed.
        self.authed: set[str] = set()
        #: NIP-42 challenge for this connection; random, never reused.
        self.challenge = secrets.token_hex(16)
        self.challenge_sent = False
        self.events = TokenBucket(rate=limits.events_per_second, burst=limits.events_burst)
        self.requests = TokenBucket(rate=limits.requests_per_second, burst=limits.requests_burst)
        self._max_outbox = limits.max_outbox_bytes
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.dropped = False
        #: This connection's EVENT replies waiting in the relay's current batch.
        self.queued_events = 0
        _set_nodelay(ws)

    def __repr__(self) -> str:
        return f"<Peer {self.remote} subs={len(self.subs)}>"

    @property
    def remote(self) -> str:
        address = self.ws.remote_address
        return f"{address[0]}:{address[1]}" if address else "?"

    # -- outgoing -----------------------------------------------------------------------------

    def send(self, message: bytes) -> None:
        """Queue a message the client asked for (OK, EOSE, CLOSED, stored events)."""
        if self.dropped:
            return
        self._outbox.append(message)
        self._outbox_bytes += len(message)
        self._wakeup.set()

    def send_live(self, message: bytes) -> None:
        """Queue a live event; drop the connection if it has fallen too far behind."""
        if self._outbox_bytes + len(message) > self._max_outbox:
            self.drop("slow consumer: too many undelivered events")
            return
        self.send(message)

    def ok(self, event_id: str, accepted: bool, message: str = "") -> None:
        if accepted and not message and event_id.isalnum():
            # The common reply, without building and encoding a list; an alphanumeric id
            # (callers pass 64 hex) needs no JSON escaping.
            self.send(b'["OK","' + event_id.encode() + b'",true,""]')
        else:
            self.send(orjson.dumps(["OK", event_id, accepted, message]))

    def closed(self, sub_id: str, message: str) -> None:
        self.send(orjson.dumps(["CLOSED", sub_id, message]))

    def notice(self, message: str) -> None:
        self.send(orjson.dumps(["NOTICE", message]))

    def send_challenge(self) -> None:
        """Send the NIP-42 challenge once per connection."""
        if not self.challenge_sent:
            self.challenge_sent = True
            self.send(orjson.dumps(["AUTH", self.challenge]))

    def drop(self, reason: str) -> None:
        """Abort the connection at once (it can no longer be served properly)."""
        if self.dropped:
            return
        self.dropped = True
        self._outbox.clear()
        self._outbox_bytes = 0
        log.warning("dropping %s: %s", self.remote, reason)
        self.ws.transport.abort()

    async def run_sender(self) -> None:
        """Write queued messages to the socket until :meth:`stop`; owned by the handler.

        Everything queued since the last wakeup goes out in one write (one syscall for a
        burst of OKs or a fan-out), at most ``_WRITE_BATCH`` bytes at a time, waiting for the
        transport to drain between batches so a slow reader makes the outbox, not the
        transport's buffer, grow (and then :meth:`send_live` drops it).
        """
        ws = self.ws
        protocol = ws.protocol
        transport = ws.transport
        outbox = self._outbox
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while outbox:
                    if protocol.state is not State.OPEN:
                        return  # closing: websockets finishes the close handshake itself
                    batch = 0
                    send_text = protocol.send_text
                    while outbox and batch < _WRITE_BATCH:
                        message = outbox.popleft()
                        batch += len(message)
                        # Text frames without a decode/encode round trip.
                        send_text(message)
                    self._outbox_bytes -= batch
                    # Only data frames were queued while OPEN, so there is no end-of-stream
                    # marker (b"") among the chunks and one write carries them all.
                    transport.write(b"".join(protocol.data_to_send()))
                    await ws.drain()
                if self._stopping:
                    return
        except (ConnectionClosed, OSError):
            return

    def stop(self) -> None:
        """Let the sender flush what is queued and finish."""
        self._stopping = True
        self._wakeup.set()


def _set_nodelay(ws: ServerConnection) -> None:
    # asyncio already sets TCP_NODELAY on TCP transports; set it again so that a different
    # loop implementation cannot bring back Nagle's 40 ms delay on back-to-back replies.
    sock = ws.transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
