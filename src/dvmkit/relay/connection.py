"""One relay connection: the websocket, its reader, publish and COUNT, AUTH, reconnects.

A :class:`RelayConnection` is driven by :meth:`RelayConnection.run`, a task its owner (the
:class:`~dvmkit.relay.pool.RelayPool`) starts in its task group and cancels to stop it. The
task keeps one websocket open at a time (a :class:`~dvmkit.relay.session.Session`) and
reconnects with capped, jittered exponential backoff. Its subscriptions live in
:class:`~dvmkit.relay.reqs.Reqs`, which sends them again on every new socket.

Everything a relay sends is untrusted: malformed frames are counted and dropped, every event
is verified (id and signature) and checked against the subscription's filters before it is
delivered, and frames larger than ``max_message_size`` close the socket (websockets checks the
length before it reads the payload), so no input can grow memory without bound.

One reader serves the whole socket, in order. Delivery awaits the subscriber's bounded queue:
a slow consumer stops this reader, which stops reading the socket, which pushes back on the
relay through TCP. Nothing is dropped, but nothing behind the blocked event is read either,
so OKs and COUNT answers on this socket wait too (see :class:`~dvmkit.relay.pool.RelayPool`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from dvmkit.errors import DVMError, ProtocolError
from dvmkit.nostr.event import Event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.nostr.nip42 import make_auth_event
from dvmkit.relay.messages import (
    AuthMsg,
    ClosedMsg,
    CountMsg,
    EoseMsg,
    EventMsg,
    NoticeMsg,
    OkMsg,
    encode_auth,
    encode_count,
    encode_event,
    parse_relay_message,
)
from dvmkit.relay.nip11 import RelayInfo, fetch_relay_info
from dvmkit.relay.reqs import Reqs, SubscriptionSink
from dvmkit.relay.session import BadReply, Session, request
from dvmkit.relay.values import (
    DEFAULT_TIMEOUTS,
    ConnectionState,
    CountOutcome,
    Outcome,
    RelayStats,
    Timeouts,
    backoff_delay,
)

log = logging.getLogger(__name__)

_NET_ERRORS = (OSError, TimeoutError, EOFError, WebSocketException)
# The query id of a COUNT reply, read without parsing it, so that a malformed answer to a
# waiting COUNT is reported to its caller rather than only counted (and then timed out).
_COUNT_ID = re.compile(rb'\A\s*\[\s*"COUNT"\s*,\s*"([^"\\]{1,64})"')


@dataclass(slots=True)
class _Counters:
    sent: int = 0
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    timeouts: int = 0
    malformed: int = 0
    notices: int = 0
    reconnects: int = 0


class RelayConnection:
    """A self-healing connection to one relay. Use through :class:`RelayPool`."""

    def __init__(
        self,
        url: str,
        *,
        signer: Keys | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        max_message_size: int = 1 << 20,
        since_overlap: int = 10,
        fetch_info: bool = True,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.url = url
        self.info: RelayInfo | None = None
        self._signer = signer
        self._timeouts = timeouts
        self._max_size = max_message_size
        self._fetch_info = fetch_info
        self._clock = clock
        self._rand = rand
        self._state: ConnectionState = "connecting"
        self._session: Session | None = None
        self._connected = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._last_ok_rtt: float | None = None
        self._reqs = Reqs(url, send=self.send, overlap=since_overlap, retry_delay=self.backoff)
        self._n = _Counters()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read and reconnect until cancelled. Never raises for network faults."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                if self._fetch_info:
                    try:
                        self.info = await fetch_relay_info(self.url, timeout=self._timeouts.nip11)
                        self._reqs.limitation = self.info.limitation
                    except DVMError as exc:
                        log.debug("%s: no NIP-11 document: %s", self.url, exc)
                attempt = 0
                loop = asyncio.get_running_loop()
                while True:
                    started = loop.time()
                    connected = await self._connect_once()
                    if connected and loop.time() - started >= self._timeouts.stable_after:
                        attempt = 0
                    delay = self.backoff(attempt)
                    attempt += 1
                    await asyncio.sleep(delay)
        finally:
            self._state = "stopped"
            self._connected.clear()

    async def _connect_once(self) -> bool:
        session: Session | None = None
        try:
            async with connect(
                self.url,
                compression=None,  # deps.md §5: deflate costs a quarter of the throughput
                max_size=self._max_size,
                ping_interval=self._timeouts.ping_interval,
                ping_timeout=self._timeouts.ping_timeout,
                open_timeout=self._timeouts.connect,
                close_timeout=self._timeouts.close,
                proxy=None,
            ) as ws:
                session = Session(ws)
                if self._reqs.disconnected_at is not None:
                    self._n.reconnects += 1
                self._session = session
                self._state = "connected"
                self._connected.set()
                await self._reqs.send_all(session)
                while True:
                    # Raw bytes: orjson checks UTF-8 itself, and a bad text frame from a
                    # hostile relay is then one dropped message, not a failed connection.
                    frame = await ws.recv(decode=False)
                    self._n.received += 1
                    await self._handle(session, frame)
        except _NET_ERRORS as exc:
            log.info("%s: connection lost: %r", self.url, exc)
        finally:
            if session is not None:
                self._session = None
                self._connected.clear()
                self._state = "backoff"
                self._reqs.disconnected_at = self._clock()
                session.end()
                self._reqs.session_ended()
            elif self._state != "stopped":
                self._state = "backoff"
                self._reqs.unreachable()
        return session is not None

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def session(self) -> Session | None:
        """The open websocket, if there is one."""
        return self._session

    @property
    def can_auth(self) -> bool:
        """There is an identity to answer NIP-42 AUTH challenges with."""
        return self._signer is not None

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def backoff(self, attempt: int) -> float:
        """The delay before the n-th reconnect, or the n-th retry after ``rate-limited:``."""
        t = self._timeouts
        return backoff_delay(
            attempt, initial=t.reconnect_initial, cap=t.reconnect_max, rand=self._rand
        )

    async def send(self, session: Session, frame: bytes) -> None:
        """Send one frame on ``session`` (and count it)."""
        await session.ws.send(frame, text=True)
        self._n.sent += 1

    # -- requests answered on the socket: publish (OK) and count (COUNT) ----------------------

    async def publish(self, event: Event, deadline: float) -> Outcome:
        """Send ``event`` until the relay answers OK or the loop time ``deadline`` passes.

        Resends after a reconnect, after a successful NIP-42 AUTH (``auth-required:``) and
        after a backoff (``rate-limited:``). Never raises for relay faults.
        """
        outcome = await self._publish(event, deadline)
        if outcome.status == "accepted":
            self._n.accepted += 1
        elif outcome.status == "duplicate":
            self._n.duplicates += 1
        elif outcome.status == "rejected":
            self._n.rejected += 1
        else:
            self._n.timeouts += 1
        return outcome

    async def _publish(self, event: Event, deadline: float) -> Outcome:
        frame = encode_event(event)
        lim = self.info.limitation if self.info else None
        reason = (lim.refuse_message(frame) or lim.refuse_event(event)) if lim else ""
        if reason:
            return Outcome("rejected", reason)
        answer = await request(self, frame, ("OK", event.id), deadline)
        if answer.rtt is not None:
            self._last_ok_rtt = answer.rtt
        if isinstance(answer.reply, OkMsg):
            # Some relays answer a duplicate with OK false "duplicate:" (deps.md §3).
            dup = answer.reply.prefix == "duplicate"
            return Outcome("duplicate" if dup else "accepted", answer.reply.message)
        if answer.refusal is not None:
            return Outcome("rejected", answer.refusal)
        return Outcome("timeout" if answer.sent else "not_connected")

    async def count(
        self, query_id: str, filters: tuple[Filter, ...], deadline: float
    ) -> CountOutcome:
        """Ask for the number of events matching ``filters`` (NIP-45) until ``deadline``.

        Sends again after a reconnect, a successful NIP-42 AUTH and a ``rate-limited:``
        backoff, like :meth:`publish`. Never raises for relay faults.
        """
        frame = encode_count(query_id, filters)
        lim = self.info.limitation if self.info else None
        reason = ""
        if lim is not None:
            # A COUNT opens no subscription, but it is held to the REQ's filter limit.
            reason = lim.refuse_req(open_subscriptions=0, filters=len(filters))
            reason = reason or lim.refuse_message(frame)
        if reason:
            return CountOutcome("closed", message=reason)
        answer = await request(self, frame, ("COUNT", query_id), deadline)
        reply = answer.reply
        if isinstance(reply, CountMsg):
            return CountOutcome("counted", count=reply.count, approximate=reply.approximate)
        if isinstance(reply, BadReply):
            return CountOutcome("malformed", message=reply.reason)
        if answer.refusal is not None:
            return CountOutcome("closed", message=answer.refusal)
        return CountOutcome("timeout" if answer.sent else "not_connected")

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self,
        sub_id: str,
        filters: tuple[Filter, ...],
        sink: SubscriptionSink,
        *,
        rewrite_since: bool,
    ) -> None:
        """Open ``sub_id`` on this relay now if connected, else on the next connect."""
        await self._reqs.open(
            self._session,
            sub_id,
            filters,
            sink,
            rewrite_since=rewrite_since,
            unavailable=self._state == "backoff",
        )

    async def unsubscribe(self, sub_id: str) -> None:
        """Forget ``sub_id`` and send CLOSE if the relay still has it open."""
        await self._reqs.close(self._session, sub_id)

    # -- reading -----------------------------------------------------------------------------

    async def _handle(self, session: Session, frame: bytes) -> None:
        try:
            msg = parse_relay_message(frame)
        except ProtocolError as exc:
            self._n.malformed += 1
            log.debug("%s: dropped malformed frame: %s", self.url, exc)
            if found := _COUNT_ID.match(frame):
                query_id = found.group(1).decode()
                session.answer(("COUNT", query_id), BadReply(f"malformed COUNT reply: {exc}"))
            return
        if isinstance(msg, EventMsg):
            await self._reqs.on_event(msg)
        elif isinstance(msg, OkMsg):
            session.answer(("OK", msg.event_id), msg)
            if session.is_auth_answer(msg):
                session.auth_settle(msg.accepted)
                if not msg.accepted:
                    log.warning("%s: AUTH refused: %s", self.url, msg.message[:300])
                await self._reqs.on_auth(session, msg.accepted, msg.message)
        elif isinstance(msg, EoseMsg):
            self._reqs.on_eose(msg)
        elif isinstance(msg, ClosedMsg):
            # NIP-45: a relay refuses a COUNT with CLOSED on the COUNT's query id.
            if not session.answer(("COUNT", msg.sub_id), msg):
                self._reqs.on_closed(session, msg, can_auth=self.can_auth, tg=self._tg)
        elif isinstance(msg, CountMsg):
            session.answer(("COUNT", msg.sub_id), msg)  # a late or foreign one is ignored
        elif isinstance(msg, NoticeMsg):
            self._n.notices += 1
            log.warning("%s: NOTICE %s", self.url, msg.message[:300])
        elif isinstance(msg, AuthMsg) and self._signer is not None:
            auth = make_auth_event(self._signer, self.url, msg.challenge)
            session.auth_sent(auth.id)
            await self.send(session, encode_auth(auth))

    # -- stats -------------------------------------------------------------------------------

    def stats(self) -> RelayStats:
        session = self._session
        n = self._n
        latency = None
        if session is not None and session.ws.latency > 0:
            latency = session.ws.latency
        elif self._last_ok_rtt is not None:
            latency = self._last_ok_rtt
        return RelayStats(
            url=self.url,
            state=self._state,
            connected=session is not None,
            latency=latency,
            subscriptions=len(self._reqs),
            authenticated=session is not None and session.auth == "ok",
            sent=n.sent,
            received=n.received,
            accepted=n.accepted,
            duplicates=n.duplicates,
            rejected=n.rejected,
            timeouts=n.timeouts,
            invalid=self._reqs.invalid,
            malformed=n.malformed,
            notices=n.notices,
            reconnects=n.reconnects,
        )
