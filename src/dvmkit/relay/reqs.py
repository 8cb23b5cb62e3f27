"""The REQs one relay connection keeps open on its relay, across reconnects.

:class:`Reqs` is the subscription side of a :class:`~dvmkit.relay.connection.RelayConnection`:
it sends each REQ (capped to the relay's NIP-11 ``max_limit``), sends them all again on every
new socket, checks each incoming event before handing it to the subscriber, and handles the
relay's CLOSED: ``auth-required:`` waits for our NIP-42 AUTH and sends again,
``rate-limited:`` sends again after a backoff, anything else ends the subscription on this
relay with the relay's reason.

After a reconnect, a subscription that had reached EOSE is asked again only from a little
before the gap (``since``), and the subscriber's de-duplication drops the overlap: each event
is handed on marked live or not (after this socket's EOSE or before it), which is how the
subscriber tells a relay's re-sent stored copy from a new publication of the same event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from websockets.exceptions import ConnectionClosed

from dvmkit.errors import InvalidEvent
from dvmkit.nostr.event import Event, parse_event
from dvmkit.nostr.filters import Filter, matches_any
from dvmkit.relay.messages import ClosedMsg, EoseMsg, EventMsg, encode_close, encode_req
from dvmkit.relay.nip11 import Limitation
from dvmkit.relay.session import Session

log = logging.getLogger(__name__)

Send = Callable[[Session, bytes], Awaitable[None]]


class SubscriptionSink(Protocol):
    """What a connection tells the subscriber that owns a subscription id."""

    async def _on_event(self, event: Event, relay: str, *, live: bool) -> None: ...
    def _on_eose(self, relay: str) -> None: ...
    def _on_closed(self, relay: str, message: str) -> None: ...
    def _on_unavailable(self, relay: str) -> None: ...


@dataclass(slots=True)
class _Req:
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


class Reqs:
    """The open subscriptions of one connection, by subscription id.

    Args:
        url: the relay, as subscribers know it.
        send: sends one frame on a session (and counts it).
        overlap: seconds of ``since`` overlap when resuming after a reconnect.
        retry_delay: the backoff before the n-th retry of a ``rate-limited:`` REQ.
    """

    def __init__(
        self, url: str, *, send: Send, overlap: int, retry_delay: Callable[[int], float]
    ) -> None:
        self.url = url
        self.limitation: Limitation | None = None  # from NIP-11, once fetched
        self.disconnected_at: float | None = None  # wall-clock time the last socket ended
        self.invalid = 0  # events dropped: bad id or signature, or matching no filter
        self._send = send
        self._overlap = overlap
        self._retry_delay = retry_delay
        self._reqs: dict[str, _Req] = {}

    def __len__(self) -> int:
        return len(self._reqs)

    # -- opening and closing -----------------------------------------------------------------

    async def open(
        self,
        session: Session | None,
        sub_id: str,
        filters: tuple[Filter, ...],
        sink: SubscriptionSink,
        *,
        rewrite_since: bool,
        unavailable: bool,
    ) -> None:
        """Open ``sub_id`` on ``session`` now, or on the next one when there is none."""
        if self.limitation is not None:
            reason = self.limitation.refuse_req(
                open_subscriptions=len(self._reqs), filters=len(filters)
            )
            if reason:
                sink._on_closed(self.url, reason)
                return
        req = _Req(sub_id, filters, sink, rewrite_since)
        self._reqs[sub_id] = req
        if session is not None:
            await self._send_req(session, req)
        elif unavailable:
            sink._on_unavailable(self.url)

    async def close(self, session: Session | None, sub_id: str) -> None:
        """Forget ``sub_id`` and send CLOSE if the relay still has it open."""
        req = self._reqs.pop(sub_id, None)
        if req is not None and session is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(session, encode_close(sub_id))

    async def send_all(self, session: Session) -> None:
        """A new socket: send every subscription again."""
        for req in list(self._reqs.values()):
            await self._send_req(session, req)

    def session_ended(self) -> None:
        """The socket dropped: subscribers still waiting for EOSE will not get it soon."""
        for req in self._reqs.values():
            req.waiting_auth = False
            if not req.eose_now:
                req.sink._on_unavailable(self.url)

    def unreachable(self) -> None:
        """A connection attempt failed."""
        for req in self._reqs.values():
            req.sink._on_unavailable(self.url)

    async def _send_req(self, session: Session, req: _Req) -> None:
        filters = req.filters
        if req.rewrite_since and req.eosed_once and self.disconnected_at is not None:
            # Resume: ask again from a little before the gap. Events seen before it are
            # dropped by the subscriber's de-duplication, so overlap costs bandwidth only.
            seen = req.last_seen if req.last_seen is not None else self.disconnected_at
            start = max(0, int(min(seen, self.disconnected_at)) - self._overlap)
            filters = tuple(replace(f, since=max(start, f.since or 0), limit=None) for f in filters)
        if self.limitation is not None:
            filters = self.limitation.cap_limits(filters)
        frame = encode_req(req.sub_id, filters)
        reason = self.limitation.refuse_message(frame) if self.limitation else ""
        if reason:
            self._reqs.pop(req.sub_id, None)
            req.sink._on_closed(self.url, reason)
            return
        req.eose_now = False
        with contextlib.suppress(ConnectionClosed):  # if so, the next session sends it
            await self._send(session, frame)

    async def _retry_later(self, session: Session, req: _Req, delay: float) -> None:
        await asyncio.sleep(delay)
        req.retry_pending = False
        if not session.ended.is_set() and self._reqs.get(req.sub_id) is req:
            await self._send_req(session, req)

    # -- what the relay sends ----------------------------------------------------------------

    async def on_event(self, msg: EventMsg) -> None:
        """Verify the event and that it matches, then wait until the subscriber takes it."""
        req = self._reqs.get(msg.sub_id)
        if req is None:
            return  # a late event for a subscription we closed
        try:
            event = parse_event(msg.event)
        except InvalidEvent as exc:
            self.invalid += 1
            log.debug("%s: dropped invalid event: %s", self.url, exc)
            return
        if not matches_any(req.filters, event):
            self.invalid += 1
            log.debug("%s: dropped event %s that matches no filter", self.url, event.id)
            return
        if req.last_seen is None or event.created_at > req.last_seen:
            req.last_seen = event.created_at
        # Live: after this socket's EOSE. Before it, the relay is sending what it has stored.
        await req.sink._on_event(event, self.url, live=req.eose_now)

    def on_eose(self, msg: EoseMsg) -> None:
        req = self._reqs.get(msg.sub_id)
        if req is not None and not req.eose_now:
            req.eose_now = req.eosed_once = True
            req.retries = 0
            req.sink._on_eose(self.url)

    def on_closed(
        self, session: Session, msg: ClosedMsg, *, can_auth: bool, tg: asyncio.TaskGroup | None
    ) -> None:
        req = self._reqs.get(msg.sub_id)
        if req is None:
            return
        if msg.prefix == "auth-required" and can_auth and session.auth in ("none", "pending"):
            req.waiting_auth = True  # sent again once our AUTH is accepted (NIP-42)
            return
        if msg.prefix == "rate-limited" and not req.retry_pending and tg is not None:
            req.retry_pending = True
            delay = self._retry_delay(req.retries)
            req.retries += 1
            tg.create_task(self._retry_later(session, req, delay))
            return
        self._reqs.pop(msg.sub_id, None)
        if msg.message:
            log.info("%s: subscription %s closed: %s", self.url, msg.sub_id, msg.message[:300])
        req.sink._on_closed(self.url, msg.message)

    async def on_auth(self, session: Session, accepted: bool, message: str) -> None:
        """Our AUTH was answered: send the REQs that waited for it, or end them."""
        for req in list(self._reqs.values()):
            if req.waiting_auth:
                req.waiting_auth = False
                if accepted:
                    await self._send_req(session, req)
                else:
                    self._reqs.pop(req.sub_id, None)
                    req.sink._on_closed(self.url, f"auth-required: AUTH refused: {message}")
