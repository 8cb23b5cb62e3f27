"""Requests a relay answers, and the websocket session they are answered on.

Two client messages get an answer: ``EVENT`` (an ``OK``) and NIP-45 ``COUNT`` (a ``COUNT``,
or a ``CLOSED`` that refuses it). :func:`request` sends one until it is answered or its
deadline passes, across reconnects, NIP-42 AUTH (``auth-required:``) and backoffs
(``rate-limited:``).

A :class:`Session` is one websocket's lifetime, what must reset when the socket does: the
requests waiting for an answer on it, matched by key, and its NIP-42 AUTH state. A relay
answers on the socket the request went out on, so when the socket drops :meth:`Session.end`
wakes every waiter with ``None`` to send again on the next one, which starts unauthenticated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from dvmkit.relay.messages import ClosedMsg, CountMsg, OkMsg

AuthState = Literal["none", "pending", "ok", "refused"]


@dataclass(frozen=True, slots=True)
class BadReply:
    """A reply addressed to a waiting request that does not parse; ``reason`` says why."""

    reason: str


Reply = OkMsg | CountMsg | ClosedMsg | BadReply
Key = tuple[Literal["OK", "COUNT"], str]  # ("OK", event id) or ("COUNT", query id)


class Session:
    """The state of one open websocket to a relay."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ended = asyncio.Event()
        self.auth: AuthState = "none"
        self._auth_event_id: str | None = None
        self._auth_settled = asyncio.Event()
        self._waiting: dict[Key, set[asyncio.Future[Reply | None]]] = {}

    # -- requests waiting for an answer ------------------------------------------------------

    def expect(self, key: Key) -> asyncio.Future[Reply | None]:
        """A future for the next answer to ``key``; ``None`` if the socket ends first.

        Several waiters may share a key (the same event published twice at once): one answer
        wakes them all. Call :meth:`forget` when done, answered or not.
        """
        fut: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, set()).add(fut)
        return fut

    def forget(self, key: Key, fut: asyncio.Future[Reply | None]) -> None:
        waiters = self._waiting.get(key)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._waiting[key]

    def answer(self, key: Key, reply: Reply) -> bool:
        """Wake the waiters for ``key`` with ``reply``; True if there were any."""
        waiters = self._waiting.get(key)
        if not waiters:
            return False
        for fut in waiters:
            if not fut.done():
                fut.set_result(reply)
        return True

    # -- NIP-42 AUTH -------------------------------------------------------------------------

    def auth_sent(self, event_id: str) -> None:
        """We answered a challenge with the AUTH event ``event_id``; its OK settles AUTH."""
        self._auth_event_id = event_id
        self.auth = "pending"
        self._auth_settled.clear()

    def is_auth_answer(self, msg: OkMsg) -> bool:
        return msg.event_id == self._auth_event_id

    def auth_settle(self, accepted: bool) -> None:
        self.auth = "ok" if accepted else "refused"
        self._auth_settled.set()

    async def auth_then_retry(self, can_auth: bool) -> bool:
        """After an ``auth-required:`` refusal: True when the request should be sent again.

        That is when AUTH succeeded on this socket (the challenge may still be on its way, so
        this waits for it to settle), or when the socket ended meanwhile (send on the next).
        False when we have no identity to AUTH with, or AUTH is done and we were still refused.
        """
        if not can_auth or self.auth in ("ok", "refused"):
            return False
        await self._auth_settled.wait()
        return self.auth == "ok" or self.ended.is_set()

    # -- end ---------------------------------------------------------------------------------

    def end(self) -> None:
        """The socket is gone: wake everything waiting on it."""
        self.ended.set()
        self._auth_settled.set()
        for waiters in self._waiting.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)


# -- a request, across sessions ---------------------------------------------------------------


class Link(Protocol):
    """What :func:`request` needs from a relay connection."""

    @property
    def session(self) -> Session | None: ...
    @property
    def can_auth(self) -> bool: ...
    async def wait_connected(self) -> None: ...
    async def send(self, session: Session, frame: bytes) -> None: ...
    def backoff(self, attempt: int) -> float: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """How a :func:`request` ended."""

    reply: Reply | None  # what ended it; None after a final refusal, or at the deadline
    sent: bool  # the frame went out at least once
    refusal: str | None  # the message of the last OK false or CLOSED, if there was one
    rtt: float | None  # seconds from the last send to the last OK, if there was one


async def request(link: Link, frame: bytes, key: Key, deadline: float) -> Answer:
    """Send ``frame`` on ``link`` until the answer to ``key`` comes or the loop time
    ``deadline`` passes.

    Sends again on the next socket when this one drops first, after our AUTH succeeds when
    the relay said ``auth-required:``, and after a backoff when it said ``rate-limited:``
    (while the deadline allows). Any other refusal ends the request.
    """
    loop = asyncio.get_running_loop()
    sent = False
    refusal: str | None = None  # the last refusal we are retrying past
    rtt: float | None = None
    rate_attempt = 0
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                await link.wait_connected()
                session = link.session
                if session is None:
                    continue
                fut = session.expect(key)
                try:
                    started = loop.time()
                    await link.send(session, frame)
                    sent = True
                    reply = await fut
                except ConnectionClosed:
                    await session.ended.wait()
                    continue
                finally:
                    session.forget(key, fut)
                if reply is None:
                    continue  # the socket dropped before the answer: send again
                if isinstance(reply, OkMsg):
                    rtt = loop.time() - started
                refused = _refused(reply)
                if refused is None:
                    return Answer(reply, sent, None, rtt)
                refusal = refused.message
                if refused.prefix == "auth-required" and await session.auth_then_retry(
                    link.can_auth
                ):
                    continue
                if refused.prefix == "rate-limited":
                    delay = link.backoff(rate_attempt)
                    rate_attempt += 1
                    if loop.time() + delay < deadline:
                        await asyncio.sleep(delay)
                        continue
                return Answer(None, sent, refusal, rtt)
    except TimeoutError:
        return Answer(None, sent, refusal, rtt)


def _refused(reply: Reply) -> OkMsg | ClosedMsg | None:
    """``reply`` when it refuses the request (OK false, CLOSED), else ``None``."""
    if isinstance(reply, ClosedMsg):
        return reply
    if isinstance(reply, OkMsg) and not reply.accepted and reply.prefix != "duplicate":
        return reply
    return None
