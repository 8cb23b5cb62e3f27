"""One relay connection: the websocket, its reader, pending OKs, subscriptions, AUTH, reconnects.

A :class:`RelayConnection` is driven by :meth:`RelayConnection.run`, a task its owner (the
:class:`~dvmkit.relay.pool.RelayPool`) starts in its task group and cancels to stop it. The
task keeps one websocket open at a time and reconnects with capped, jittered exponential
backoff. After a reconnect every open subscription is sent again; one that had reached EOSE
gets a ``since`` that overlaps the gap, and the subscriber's de-duplication drops the overlap.

Everything a relay sends is untrusted: malformed frames are counted and dropped, every event
is verified (id and signature) and checked against the subscription's filters before it is
delivered, and frames larger than ``max_message_size`` close the socket (websockets checks the
length before it reads the payload), so no input can grow memory without bound. Delivery
awaits the subscriber's bounded queue: a slow consumer stops this reader, which stops reading
the socket, which pushes back on the relay through TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from dvmkit.errors import DVMError, InvalidEvent, ProtocolError
from dvmkit.nostr.event import Event, parse_event
from dvmkit.nostr.filters import Filter, matches_any
from dvmkit.nostr.keys import Keys
from dvmkit.nostr.nip42 import make_auth_event
from dvmkit.relay.messages import (
    AuthMsg,
    ClosedMsg,
    EoseMsg,
    EventMsg,
    NoticeMsg,
    OkMsg,
    encode_auth,
    encode_close,
    encode_event,
    encode_req,
    parse_relay_message,
)
from dvmkit.relay.nip11 import RelayInfo, fetch_relay_info

log = logging.getLogger(__name__)

OutcomeStatus = Literal["accepted", "duplicate", "rejected", "timeout", "not_connected", "pending"]
ConnectionState = Literal["connecting", "connected", "backoff", "stopped"]
_NET_ERRORS = (OSError, TimeoutError, EOFError, WebSocketException)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines and intervals, in seconds.

    ``reconnect_initial`` doubles after each failed attempt up to ``reconnect_max`` (30 s,
    per issue 3), with jitter so that many clients do not reconnect in lockstep.
    """

    connect: float = 10.0
    publish: float = 10.0
    eose: float = 10.0
    close: float = 2.0
    nip11: float = 3.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    stable_after: float = 10.0  # a connection up this long resets the backoff


DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one relay did with a published event; ``message`` is the relay's own text."""

    status: OutcomeStatus
    message: str = ""

    @property
    def ok(self) -> bool:
        """The relay has the event (it accepted it now or already had it)."""
        return self.status in ("accepted", "duplicate")


@dataclass(frozen=True, slots=True)
class RelayStats:
    """A snapshot of one connection's counters."""

    url: str
    state: ConnectionState
    connected: bool
    latency: float | None
    sent: int
    received: int
    accepted: int
    duplicates: int
    rejected: int
    timeouts: int
    invalid: int
    malformed: int
    notices: int
    reconnects: int
    subscriptions: int
    authenticated: bool


def backoff_delay(
    attempt: int, *, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with "equal jitter": a delay in [d/2, d], d = min(cap, initial*2^n)."""
    ceiling = min(cap, initial * 2.0 ** min(attempt, 32))
    return ceiling / 2 + ceiling / 2 * rand()


class SubscriptionSink(Protocol):
    """What a connection tells the subscriber that owns a subscription id."""

    async def _on_event(self, event: Event, relay: str) -> None: ...
    def _on_eose(self, relay: str) -> None: ...
    def _on_closed(self, relay: str, message: str) -> None: ...
    def _on_unavailable(self, relay: str) -> None: ...


@dataclass(slots=True)
class _Counters:
    sent: int = 0
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    timeouts: int = 0
    invalid: int = 0
    malformed: int = 0
    notices: int = 0
    reconnects: int = 0


@dataclass(slots=True)
class _Sub:
    sub_id: str
    filters: tuple[Filter, ...]
    sink: SubscriptionSink
    rewrite_since: bool
    last_seen: int | None = None
    eosed_once: bool = False
    eose_now: bool = False
    waiting_auth: bool = False
    retries: int = 0
    retry_pending: bool = False


class _Session:
    """One websocket's lifetime: what must reset when the socket does."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ended = asyncio.Event()
        self.auth_event_id: str | None = None
        self.auth: Literal["none", "pending", "ok", "refused"] = "none"
        self.auth_settled = asyncio.Event()
        self.pending: dict[str, set[asyncio.Future[OkMsg | None]]] = {}


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
        self._overlap = since_overlap
        self._fetch_info = fetch_info
        self._clock = clock
        self._rand = rand
        self._state: ConnectionState = "connecting"
        self._session: _Session | None = None
        self._connected = asyncio.Event()
        self._subs: dict[str, _Sub] = {}
        self._disconnected_at: float | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._last_ok_rtt: float | None = None
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
                    except DVMError as exc:
                        log.debug("%s: no NIP-11 document: %s", self.url, exc)
                attempt = 0
                loop = asyncio.get_running_loop()
                while True:
                    started = loop.time()
                    connected = await self._connect_once()
                    if connected and loop.time() - started >= self._timeouts.stable_after:
                        attempt = 0
                    delay = backoff_delay(
                        attempt,
                        initial=self._timeouts.reconnect_initial,
                        cap=self._timeouts.reconnect_max,
                        rand=self._rand,
                    )
                    attempt += 1
                    await asyncio.sleep(delay)
        finally:
            self._state = "stopped"
            self._connected.clear()

    async def _connect_once(self) -> bool:
        session: _Session | None = None
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
                session = _Session(ws)
                await self._start_session(session)
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
                self._end_session(session)
            elif self._state != "stopped":
                self._state = "backoff"
                for sub in self._subs.values():
                    sub.sink._on_unavailable(self.url)
        return session is not None

    async def _start_session(self, session: _Session) -> None:
        if self._disconnected_at is not None:
            self._n.reconnects += 1
        self._session = session
        self._state = "connected"
        self._connected.set()
        for sub in list(self._subs.values()):
            await self._send_req(session, sub)

    def _end_session(self, session: _Session) -> None:
        self._session = None
        self._connected.clear()
        self._state = "backoff"
        self._disconnected_at = self._clock()
        session.ended.set()
        session.auth_settled.set()
        for waiters in session.pending.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        for sub in self._subs.values():
            sub.waiting_auth = False
            if not sub.eose_now:
                sub.sink._on_unavailable(self.url)

    @property
    def state(self) -> ConnectionState:
        return self._state

    async def wait_connected(self) -> None:
        await self._connected.wait()

    # -- sending -----------------------------------------------------------------------------

    async def _send(self, session: _Session, frame: bytes) -> None:
        await session.ws.send(frame, text=True)
        self._n.sent += 1

    async def _send_req(self, session: _Session, sub: _Sub) -> None:
        filters = sub.filters
        if sub.rewrite_since and sub.eosed_once and self._disconnected_at is not None:
            # Resume: ask again from a little before the gap. Events seen before it are
            # dropped by the subscriber's de-duplication, so overlap costs bandwidth only.
            seen = sub.last_seen if sub.last_seen is not None else self._disconnected_at
            start = max(0, int(min(seen, self._disconnected_at)) - self._overlap)
            filters = tuple(replace(f, since=max(start, f.since or 0), limit=None) for f in filters)
        if self.info is not None and self.info.limitation.max_limit is not None:
            cap = self.info.limitation.max_limit
            filters = tuple(
                replace(f, limit=cap) if f.limit is not None and f.limit > cap else f
                for f in filters
            )
        frame = encode_req(sub.sub_id, filters)
        reason = self._too_large(frame)
        if reason:
            self._subs.pop(sub.sub_id, None)
            sub.sink._on_closed(self.url, reason)
            return
        sub.eose_now = False
        with contextlib.suppress(ConnectionClosed):  # if so, the next session sends it
            await self._send(session, frame)

    def _too_large(self, frame: bytes) -> str:
        limit = self.info.limitation.max_message_length if self.info else None
        if limit is not None and len(frame) > limit:
            return (
                f"invalid: message of {len(frame)} bytes exceeds the relay's NIP-11 limit {limit}"
            )
        return ""

    # -- publishing --------------------------------------------------------------------------

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
        reason = self._too_large(frame) or self._breaks_limits(event)
        if reason:
            return Outcome("rejected", reason)
        loop = asyncio.get_running_loop()
        sent = False
        refusal: str | None = None  # the last OK false we are retrying past
        rate_attempt = 0
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    await self._connected.wait()
                    session = self._session
                    if session is None:
                        continue
                    fut: asyncio.Future[OkMsg | None] = loop.create_future()
                    session.pending.setdefault(event.id, set()).add(fut)
                    try:
                        started = loop.time()
                        await self._send(session, frame)
                        sent = True
                        ok = await fut
                    except ConnectionClosed:
                        await session.ended.wait()
                        continue
                    finally:
                        waiters = session.pending.get(event.id)
                        if waiters is not None:
                            waiters.discard(fut)
                            if not waiters:
                                del session.pending[event.id]
                    if ok is None:
                        continue  # the socket dropped before the OK: send again
                    self._last_ok_rtt = loop.time() - started
                    if ok.accepted or ok.prefix == "duplicate":
                        # Some relays answer a duplicate with OK false "duplicate:" (deps.md §3).
                        dup = ok.prefix == "duplicate"
                        return Outcome("duplicate" if dup else "accepted", ok.message)
                    refusal = ok.message
                    if ok.prefix == "auth-required" and await self._auth_then_retry(session):
                        continue
                    if ok.prefix == "rate-limited":
                        delay = self._retry_delay(rate_attempt)
                        rate_attempt += 1
                        if loop.time() + delay < deadline:
                            await asyncio.sleep(delay)
                            continue
                    return Outcome("rejected", ok.message)
        except TimeoutError:
            if refusal is not None:
                return Outcome("rejected", refusal)
            return Outcome("timeout" if sent else "not_connected")

    async def _auth_then_retry(self, session: _Session) -> bool:
        """After ``auth-required:``: True when AUTH succeeded on this socket (so resend)."""
        if self._signer is None or session.auth in ("ok", "refused"):
            return False  # no identity, or AUTH done and still refused: surface it
        await session.auth_settled.wait()  # the challenge may still be on its way
        return session.auth == "ok" or session.ended.is_set()  # ended: resend on the next

    def _breaks_limits(self, event: Event) -> str:
        lim = self.info.limitation if self.info else None
        if lim is None:
            return ""
        if lim.max_event_tags is not None and len(event.tags) > lim.max_event_tags:
            return f"invalid: {len(event.tags)} tags exceed the relay's limit {lim.max_event_tags}"
        if lim.max_content_length is not None and len(event.content) > lim.max_content_length:
            return f"invalid: content exceeds the relay's limit {lim.max_content_length}"
        return ""

    def _retry_delay(self, attempt: int) -> float:
        t = self._timeouts
        return backoff_delay(
            attempt, initial=t.reconnect_initial, cap=t.reconnect_max, rand=self._rand
        )

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
        lim = self.info.limitation if self.info else None
        if (
            lim is not None
            and lim.max_subscriptions is not None
            and len(self._subs) >= lim.max_subscriptions
        ):
            sink._on_closed(
                self.url, f"dvmkit: relay allows {lim.max_subscriptions} subscriptions (NIP-11)"
            )
            return
        if lim is not None and lim.max_filters is not None and len(filters) > lim.max_filters:
            sink._on_closed(
                self.url, f"dvmkit: relay allows {lim.max_filters} filters per REQ (NIP-11)"
            )
            return
        sub = _Sub(sub_id, filters, sink, rewrite_since)
        self._subs[sub_id] = sub
        if self._session is not None:
            await self._send_req(self._session, sub)
        elif self._state == "backoff":
            sink._on_unavailable(self.url)

    async def unsubscribe(self, sub_id: str) -> None:
        """Forget ``sub_id`` and send CLOSE if the relay still has it open."""
        sub = self._subs.pop(sub_id, None)
        if sub is not None and self._session is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(self._session, encode_close(sub_id))

    async def _retry_req_later(self, session: _Session, sub: _Sub, delay: float) -> None:
        await asyncio.sleep(delay)
        sub.retry_pending = False
        if self._session is session and self._subs.get(sub.sub_id) is sub:
            await self._send_req(session, sub)

    # -- reading -----------------------------------------------------------------------------

    async def _handle(self, session: _Session, frame: str | bytes) -> None:
        try:
            msg = parse_relay_message(frame)
        except ProtocolError as exc:
            self._n.malformed += 1
            log.debug("%s: dropped malformed frame: %s", self.url, exc)
            return
        if isinstance(msg, EventMsg):
            await self._on_event(msg)
        elif isinstance(msg, OkMsg):
            self._on_ok(session, msg)
            if msg.event_id == session.auth_event_id:
                await self._on_auth_result(session, msg)
        elif isinstance(msg, EoseMsg):
            sub = self._subs.get(msg.sub_id)
            if sub is not None and not sub.eose_now:
                sub.eose_now = sub.eosed_once = True
                sub.retries = 0
                sub.sink._on_eose(self.url)
        elif isinstance(msg, ClosedMsg):
            await self._on_closed(session, msg)
        elif isinstance(msg, NoticeMsg):
            self._n.notices += 1
            log.warning("%s: NOTICE %s", self.url, msg.message[:300])
        elif isinstance(msg, AuthMsg) and self._signer is not None:
            auth = make_auth_event(self._signer, self.url, msg.challenge)
            session.auth_event_id = auth.id
            session.auth = "pending"
            session.auth_settled.clear()
            await self._send(session, encode_auth(auth))
        # COUNT replies are parsed (so they are not "malformed") but not requested yet.

    async def _on_event(self, msg: EventMsg) -> None:
        sub = self._subs.get(msg.sub_id)
        if sub is None:
            return  # a late event for a subscription we closed
        try:
            event = parse_event(msg.event)
        except InvalidEvent as exc:
            self._n.invalid += 1
            log.debug("%s: dropped invalid event: %s", self.url, exc)
            return
        if not matches_any(sub.filters, event):
            self._n.invalid += 1
            log.debug("%s: dropped event %s that matches no filter", self.url, event.id)
            return
        if sub.last_seen is None or event.created_at > sub.last_seen:
            sub.last_seen = event.created_at
        await sub.sink._on_event(event, self.url)

    def _on_ok(self, session: _Session, msg: OkMsg) -> None:
        for fut in session.pending.get(msg.event_id, ()):
            if not fut.done():
                fut.set_result(msg)

    async def _on_auth_result(self, session: _Session, msg: OkMsg) -> None:
        session.auth = "ok" if msg.accepted else "refused"
        session.auth_settled.set()
        if not msg.accepted:
            log.warning("%s: AUTH refused: %s", self.url, msg.message[:300])
        for sub in list(self._subs.values()):
            if sub.waiting_auth:
                sub.waiting_auth = False
                if msg.accepted:
                    await self._send_req(session, sub)
                else:
                    self._subs.pop(sub.sub_id, None)
                    sub.sink._on_closed(self.url, f"auth-required: AUTH refused: {msg.message}")

    async def _on_closed(self, session: _Session, msg: ClosedMsg) -> None:
        sub = self._subs.get(msg.sub_id)
        if sub is None:
            return
        if (
            msg.prefix == "auth-required"
            and self._signer is not None
            and session.auth in ("none", "pending")
        ):
            sub.waiting_auth = True  # sent again once our AUTH is accepted
            return
        if msg.prefix == "rate-limited" and not sub.retry_pending and self._tg is not None:
            sub.retry_pending = True
            delay = self._retry_delay(sub.retries)
            sub.retries += 1
            self._tg.create_task(self._retry_req_later(session, sub, delay))
            return
        self._subs.pop(msg.sub_id, None)
        if msg.message:
            log.info("%s: subscription %s closed: %s", self.url, msg.sub_id, msg.message[:300])
        sub.sink._on_closed(self.url, msg.message)

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
            subscriptions=len(self._subs),
            authenticated=session is not None and session.auth == "ok",
            sent=n.sent,
            received=n.received,
            accepted=n.accepted,
            duplicates=n.duplicates,
            rejected=n.rejected,
            timeouts=n.timeouts,
            invalid=n.invalid,
            malformed=n.malformed,
            notices=n.notices,
            reconnects=n.reconnects,
        )
