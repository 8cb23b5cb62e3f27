"""dvmkit's own Nostr relay: asyncio + websockets, SQLite storage.

NIP-01 in full (regular, replaceable, addressable and ephemeral events; filters; REQ, CLOSE,
COUNT), NIP-09 deletion, NIP-11 information, NIP-40 expiration, NIP-42 AUTH, NIP-45 COUNT,
NIP-70 protected events, and with ``auth=True`` the NIP-59 rule that gift wraps (1059,
21059) go only to a connection authenticated as their ``p`` recipient.

Every message is handled synchronously on the event loop (SQLite calls take microseconds on
loopback-sized work), so a client's messages take effect in the order sent. Events that arrive
in one loop tick are written in one transaction; their ``OK`` is queued only after the commit,
so an ``OK true`` is never lost to a crash.

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
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeGuard

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dvmkit.errors import RelayError
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import is_hex64
from dvmkit.nostr.kinds import is_ephemeral
from dvmkit.relay import info
from dvmkit.relay.fanout import Subscription, SubscriptionIndex
from dvmkit.relay.limits import RelayLimits
from dvmkit.relay.peer import Peer
from dvmkit.relay.storage import WRAP_KINDS, EventStore, SaveOutcome
from dvmkit.relay.validation import (
    Accepted,
    Rejected,
    parse_filters,
    valid_sub_id,
    validate_auth,
    validate_event,
)

log = logging.getLogger("dvmkit.relay")

_PURGE_INTERVAL = 60.0
_HEX64_LEN = 64
_EVENT_ID = re.compile(rb'"id"\s*:\s*"([0-9a-f]{64})"')
_SUB_ID = re.compile(rb'^\s*\[\s*"(?:REQ|COUNT)"\s*,\s*"([^"\\]{1,64})"')
_RATE_LIMITED = "rate-limited: slow down"
_OUTCOME = {
    SaveOutcome.STORED: (True, ""),
    SaveOutcome.DUPLICATE: (True, "duplicate: already have this event"),
    SaveOutcome.SUPERSEDED: (
        False,
        "invalid: a newer version of this replaceable event is already stored",
    ),
    SaveOutcome.DELETED: (False, "blocked: this event was deleted by its author (NIP-09)"),
}


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
        #: EVENT replies of this tick, in arrival order: (peer, event, its id, reason); the
        #: event is None for one refused without storage, whose OK waits behind the others.
        self._pending: list[tuple[Peer, Accepted | None, str, str]] = []
        self._flush_scheduled = False
        self._counts = dict.fromkeys(
            ("received", "stored", "duplicate", "rejected", "ephemeral"), 0
        )
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Relay:
        self._store = EventStore(self._db_path)
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
            self._store.close()
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
        self._flush()
        if self._store is not None:
            self._store.close()
            self._store = None

    def stats(self) -> RelayStats:
        """Counters since start: connections and subscriptions now, events so far."""
        c = self._counts
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
                    self._flush()
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
            self._on_event(peer, message)
        elif verb == "REQ":
            self._on_req(peer, message, count=False)
        elif verb == "COUNT":
            self._on_req(peer, message, count=True)
        elif verb == "CLOSE":
            self._on_close(peer, message)
        elif verb == "AUTH":
            self._on_auth(peer, message)
        elif peer.requests.take():
            peer.notice(f"invalid: unknown message type {verb[:32]!r}")

    def _oversized(self, peer: Peer, raw: bytes) -> None:
        reason = f"invalid: message is larger than {self._limits.max_message_length} bytes"
        head = raw[:64].lstrip()
        if head.startswith(b'["EVENT"') and (found := _EVENT_ID.search(raw)):
            self._reject(peer, found.group(1).decode(), reason)
        elif found := _SUB_ID.match(raw):
            peer.closed(found.group(1).decode(), reason)
        else:
            peer.notice(reason)

    # -- EVENT --------------------------------------------------------------------------------

    def _on_event(self, peer: Peer, message: list[object]) -> None:
        data = message[1] if len(message) == 2 else None
        event_id = data.get("id") if type(data) is dict else None
        if not _is_hex64(event_id):
            peer.notice('invalid: EVENT must be ["EVENT", <event with a 64-hex id>]')
            return
        self._counts["received"] += 1
        if not peer.events.take():
            self._reject(peer, event_id, _RATE_LIMITED)
            return
        try:
            accepted = validate_event(data, limits=self._limits, now=int(self._clock()))
        except Rejected as exc:
            self._reject(peer, event_id, exc.reason)
            return
        event = accepted.event
        # NIP-70: an event tagged ["-"] may only be published by its authenticated author.
        if event.tag("-") is not None and event.pubkey not in peer.authed:
            peer.send_challenge()
            self._reject(
                peer, event_id, "auth-required: this event may only be published by its author"
            )
            return
        self._queue(peer, accepted, event_id, "")

    def _reject(self, peer: Peer, event_id: str, reason: str) -> None:
        """``OK false``, after the OKs of this connection's events still waiting for a commit."""
        self._counts["rejected"] += 1
        if peer.queued_events:
            self._queue(peer, None, event_id, reason)
        else:
            peer.ok(event_id, False, reason)

    def _queue(self, peer: Peer, accepted: Accepted | None, event_id: str, reason: str) -> None:
        peer.queued_events += 1
        self._pending.append((peer, accepted, event_id, reason))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Store the events of this tick in one transaction, then acknowledge and fan out.

        Replies go out in the order the EVENTs arrived, refusals included, so a client that
        pipelines sees its OKs in the order it sent.
        """
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        for peer, *_ in pending:
            peer.queued_events = 0
        store = self._store
        outcomes: list[SaveOutcome | None] = []
        try:
            if store is None:
                raise sqlite3.OperationalError("the store is closed")
            storable = [acc for _, acc, _, _ in pending if acc is not None]
            if any(not is_ephemeral(item.event.kind) for item in storable):
                with store.transaction():
                    for item in storable:
                        outcomes.append(
                            None
                            if is_ephemeral(item.event.kind)
                            else store.save(item.event, item.raw, expiration=item.expiration)
                        )
            else:
                outcomes = [None] * len(storable)
        except sqlite3.Error as exc:
            log.error("could not store %d events: %s", len(pending), exc)
            for peer, acc, event_id, reason in pending:
                if acc is None:
                    peer.ok(event_id, False, reason)
                else:
                    self._counts["rejected"] += 1
                    peer.ok(event_id, False, "error: the relay could not store the event")
            return
        counts = self._counts
        next_outcome = iter(outcomes).__next__
        for peer, acc, event_id, reason in pending:
            if acc is None:
                peer.ok(event_id, False, reason)
                continue
            outcome = next_outcome()
            if outcome is None:
                # NIP-01: ephemeral events are delivered live and never stored.
                counts["ephemeral"] += 1
                peer.ok(event_id, True, "")
                self._fan_out(acc)
                continue
            accepted, reason = _OUTCOME[outcome]
            peer.ok(event_id, accepted, reason)
            if outcome is SaveOutcome.STORED:
                counts["stored"] += 1
                self._fan_out(acc)
            elif outcome is SaveOutcome.DUPLICATE:
                counts["duplicate"] += 1
            else:
                counts["rejected"] += 1

    def _fan_out(self, acc: Accepted) -> None:
        event = acc.event
        subs = self._index.matching(event)
        if not subs:
            return
        recipients: set[str] | None = None
        if self._auth and event.kind in WRAP_KINDS:
            recipients = set(event.tag_values("p"))
        tail = acc.raw + b"]"
        for sub in subs:
            if recipients is not None and recipients.isdisjoint(sub.peer.authed):
                continue  # NIP-59: a wrap goes only to its authenticated recipient
            sub.peer.send_live(sub.prefix + tail)

    # -- REQ, COUNT, CLOSE --------------------------------------------------------------------

    def _on_req(self, peer: Peer, message: list[object], *, count: bool) -> None:
        verb = "COUNT" if count else "REQ"
        sub_id = message[1] if len(message) > 1 else None
        if not isinstance(sub_id, str) or len(sub_id) > self._limits.max_subid_length:
            if peer.requests.take():
                peer.notice(
                    f"invalid: {verb} needs a subscription id of 1 to"
                    f" {self._limits.max_subid_length} characters"
                )
            return
        if not peer.requests.take():
            peer.closed(sub_id, _RATE_LIMITED)
            return
        if not valid_sub_id(sub_id, self._limits):
            peer.closed(sub_id, "invalid: subscription id must not be empty")
            return
        try:
            filters = parse_filters(message[2:], limits=self._limits)
        except Rejected as exc:
            peer.closed(sub_id, exc.reason)
            return
        recipients = self._wrap_recipients(peer, filters)
        if isinstance(recipients, str):
            peer.send_challenge()
            peer.closed(sub_id, recipients)
            return
        if (
            not count
            and sub_id not in peer.subs
            and len(peer.subs) >= self._limits.max_subscriptions
        ):
            peer.closed(
                sub_id,
                "blocked: too many open subscriptions"
                f" (at most {self._limits.max_subscriptions}); close some first",
            )
            return
        # Events received before this REQ must be visible to it.
        self._flush()
        assert self._store is not None
        now = int(self._clock())
        if count:
            total = self._store.count(filters, now=now, wrap_recipients=recipients)
            peer.send(orjson.dumps(["COUNT", sub_id, {"count": total}]))
            return
        old = peer.subs.pop(sub_id, None)  # NIP-01: a REQ with a known id replaces it
        if old is not None:
            self._index.remove(old)
        sub = Subscription(peer, sub_id, filters)
        stored = self._store.query(
            filters,
            now=now,
            default_limit=self._limits.default_limit,
            max_limit=self._limits.max_limit,
            wrap_recipients=recipients,
        )
        for raw in stored:
            peer.send(sub.prefix + raw + b"]")
        peer.send(orjson.dumps(["EOSE", sub_id]))
        peer.subs[sub_id] = sub
        self._index.add(sub)

    def _wrap_recipients(
        self, peer: Peer, filters: tuple[Filter, ...]
    ) -> frozenset[str] | str | None:
        """NIP-59 under ``auth``: who may receive wraps, or an ``auth-required:`` reason."""
        if not self._auth:
            return None
        if peer.authed:
            return frozenset(peer.authed)
        for flt in filters:
            if flt.kinds is None or not flt.kinds.isdisjoint(WRAP_KINDS):
                return "auth-required: gift wraps are served only to their authenticated recipient"
        return frozenset()

    def _on_close(self, peer: Peer, message: list[object]) -> None:
        if not peer.requests.take():
            return
        sub_id = message[1] if len(message) == 2 else None
        if not isinstance(sub_id, str):
            peer.notice('invalid: CLOSE must be ["CLOSE", <subscription id>]')
            return
        sub = peer.subs.pop(sub_id, None)
        if sub is not None:
            self._index.remove(sub)

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


def _is_hex64(value: object) -> TypeGuard[str]:
    # Same answer as keys.is_hex64 without the regex: this runs for every EVENT.
    if type(value) is not str or len(value) != _HEX64_LEN:
        return False
    try:
        return bytes.fromhex(value).hex() == value
    except ValueError:
        return False
