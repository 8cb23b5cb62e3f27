"""dvmkit's own Nostr relay: asyncio + websockets, SQLite storage.

NIP-01 in full (regular, replaceable, addressable and ephemeral events; filters; REQ, CLOSE,
COUNT), NIP-09 deletion, NIP-11 information, NIP-40 expiration, NIP-42 AUTH, NIP-45 COUNT,
NIP-70 protected events, and with ``auth=True`` the NIP-59 rule that gift wraps (1059,
21059) go only to a connection authenticated as their ``p`` recipient.

Every message is handled synchronously on the event loop (SQLite calls take microseconds on
loopback-sized work), so a client's messages take effect in the order sent. :class:`Relay`
owns the lifecycle, the connections and the dispatch of their messages, and answers NIP-42
AUTH itself; EVENT goes to :class:`~dvmkit.relay.ingest.Ingest` (group commit, ordered OKs,
fan-out) and REQ, COUNT and CLOSE to :class:`~dvmkit.relay.queries.Queries`.

Usage::

    async with Relay(port=0) as relay:
        print(relay.url)        # ws://127.0.0.1:<random port>
        await stop.wait()
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dvmkit.errors import RelayError
from dvmkit.nostr.keys import is_hex64
from dvmkit.relay import info
from dvmkit.relay.fanout import SubscriptionIndex
from dvmkit.relay.ingest import Ingest
from dvmkit.relay.limits import RelayLimits
from dvmkit.relay.peer import Peer
from dvmkit.relay.queries import Queries
from dvmkit.relay.storage import EventStore
from dvmkit.relay.validation import Rejected, validate_auth

log = logging.getLogger("dvmkit.relay")

_PURGE_INTERVAL = 60.0
_EVENT_ID = re.compile(rb'"id"\s*:\s*"([0-9a-f]{64})"')
_SUB_ID = re.compile(rb'^\s*\[\s*"(?:REQ|COUNT)"\s*,\s*"([^"\\]{1,64})"')


@dataclass(frozen=True, slots=True)
class RelayStats:
    """A snapshot of a relay's counters."""

    connections: int
    subscriptions: int
    events_received: int
    events_stored: int
    events_duplicate: int
    events_rejected: int
    events_ephemeral: int


class Relay:
    """A Nostr relay serving on ``host:port`` while the ``async with`` block runs."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: str | Path | None = None,
        auth: bool = False,
        limits: RelayLimits = RelayLimits(),  # noqa: B008 - frozen value object
        name: str = "dvmkit relay",
        description: str = "A Nostr relay for Data Vending Machines, part of dvmkit.",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the relay; it starts serving in ``__aenter__``.

        Args:
            host: interface to listen on.
            port: TCP port; 0 picks a free one (read :attr:`url` after entering).
            db_path: SQLite file; ``None`` keeps events in memory.
            auth: send a NIP-42 challenge on connect and serve gift wraps (1059/21059) only
                to connections authenticated as their ``p`` recipient (NIP-59).
            limits: the relay's limits, also published in its NIP-11 document.
            name: NIP-11 name.
            description: NIP-11 description.
            clock: the wall clock, for created_at windows and NIP-40 expirations.
        """
        self._host = host
        self._port = port
        self._db_path = db_path
        self._auth = auth
        self._limits = limits
        self._clock = clock
        self._document = info.encode_document(
            info.information_document(name=name, description=description, limits=limits, auth=auth)
        )
        self._store: EventStore | None = None
        self._server: Server | None = None
        self._task_group: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._peers: set[Peer] = set()
        self._index = SubscriptionIndex()
        self._ingest = Ingest(index=self._index, limits=limits, clock=clock, auth=auth)
        self._queries = Queries(
            index=self._index, ingest=self._ingest, limits=limits, clock=clock, auth=auth
        )
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Relay:
        store = EventStore(self._db_path)
        self._use_store(store)
        try:
            self._server = await serve(
                self._handle,
                self._host,
                self._port,
                compression=None,  # permessage-deflate costs more than it saves on loopback
                process_request=self._process_request,
                max_size=self._limits.hard_message_length,
                max_queue=64,
                server_header="dvmkit",
            )
        except OSError as exc:
            store.close()
            if exc.errno == errno.EADDRINUSE:
                raise RelayError(
                    f"port {self._port} on {self._host} is already in use; stop the other"
                    " program or choose another port"
                ) from None
            raise RelayError(f"cannot listen on {self._host}:{self._port}: {exc}") from None
        port = self._server.sockets[0].getsockname()[1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.url = f"ws://{host}:{port}"
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._task_group.create_task(self._purge_expired())
        log.info("relay listening on %s (db: %s)", self.url, self._db_path or "memory")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._task_group is not None
        self._server.close()
        await self._server.wait_closed()
        self._stopping.set()
        await self._task_group.__aexit__(None, None, None)
        self._ingest.flush()
        if self._store is not None:
            self._store.close()
            self._use_store(None)

    def _use_store(self, store: EventStore | None) -> None:
        # The relay opens and closes the store; Ingest writes to it and Queries reads it.
        self._store = self._ingest.store = self._queries.store = store

    def stats(self) -> RelayStats:
        """Counters since start: connections and subscriptions now, events so far."""
        c = self._ingest.counts
        return RelayStats(
            connections=len(self._peers),
            subscriptions=len(self._index),
            events_received=c["received"],
            events_stored=c["stored"],
            events_duplicate=c["duplicate"],
            events_rejected=c["rejected"],
            events_ephemeral=c["ephemeral"],
        )

    async def _purge_expired(self) -> None:
        # Queries already hide expired events (NIP-40); this only reclaims their space.
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), _PURGE_INTERVAL)
            except TimeoutError:
                if self._store is not None:
                    self._ingest.flush()
                    self._store.purge_expired(int(self._clock()))

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if info.wants_information(request):
            return info.information_response(connection, self._document)
        if not info.is_upgrade(request):
            return connection.respond(200, "This is a Nostr relay; connect with a Nostr client.\n")
        if len(self._peers) >= self._limits.max_connections:
            return connection.respond(503, "Too many connections; try again later.\n")
        return None

    # -- connections --------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        peer = Peer(ws, self._limits)
        self._peers.add(peer)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(peer.run_sender())
                if self._auth:
                    peer.send_challenge()
                try:
                    while True:
                        self._dispatch(peer, await ws.recv(decode=False))
                except ConnectionClosed:
                    pass
                finally:
                    peer.stop()
        finally:
            for sub in peer.subs.values():
                self._index.remove(sub)
            peer.subs.clear()
            self._peers.discard(peer)

    def _dispatch(self, peer: Peer, raw: bytes) -> None:
        if len(raw) > self._limits.max_message_length:
            self._oversized(peer, raw)
            return
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if peer.requests.take():
                peer.notice("invalid: message is not valid JSON")
            return
        if not (isinstance(message, list) and message and isinstance(message[0], str)):
            if peer.requests.take():
                peer.notice("invalid: a message must be a JSON array that starts with its type")
            return
        verb = message[0]
        if verb == "EVENT":
            self._ingest.on_event(peer, message)
        elif verb == "REQ":
            self._queries.on_req(peer, message, count=False)
        elif verb == "COUNT":
            self._queries.on_req(peer, message, count=True)
        elif verb == "CLOSE":
            self._queries.on_close(peer, message)
        elif verb == "AUTH":
            self._on_auth(peer, message)
        elif peer.requests.take():
            peer.notice(f"invalid: unknown message type {verb[:32]!r}")

    def _oversized(self, peer: Peer, raw: bytes) -> None:
        reason = f"invalid: message is larger than {self._limits.max_message_length} bytes"
        head = raw[:64].lstrip()
        if head.startswith(b'["EVENT"') and (found := _EVENT_ID.search(raw)):
            self._ingest.reject(peer, found.group(1).decode(), reason)
        elif found := _SUB_ID.match(raw):
            peer.closed(found.group(1).decode(), reason)
        else:
            peer.notice(reason)

    # -- AUTH ---------------------------------------------------------------------------------

    def _on_auth(self, peer: Peer, message: list[object]) -> None:
        if not peer.requests.take():
            return
        data = message[1] if len(message) == 2 else None
        event_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(event_id, str) or not is_hex64(event_id):
            peer.notice('invalid: AUTH must be ["AUTH", <signed kind 22242 event>]')
            return
        if not peer.challenge_sent:
            peer.send_challenge()
            peer.ok(
                event_id, False, "invalid: no challenge was issued yet; answer the one just sent"
            )
            return
        try:
            pubkey = validate_auth(
                data,
                challenge=peer.challenge,
                relay_url=self.url,
                now=int(self._clock()),
                window=self._limits.auth_window,
            )
        except Rejected as exc:
            peer.ok(event_id, False, exc.reason)
            return
        peer.authed.add(pubkey)
        peer.ok(event_id, True, "")
