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

from dvmkit.relay.fanout import Subscription
from dvmkit.relay.limits import RelayLimits, TokenBucket

log = logging.getLogger("dvmkit.relay")


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
        """Write queued messages to the socket until :meth:`stop`; owned by the handler."""
        ws = self.ws
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._outbox:
                    message = self._outbox.popleft()
                    self._outbox_bytes -= len(message)
                    # Text frames without a decode/encode round trip (websockets >= 14).
                    await ws.send(message, text=True)
                if self._stopping:
                    return
        except ConnectionClosed:
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
