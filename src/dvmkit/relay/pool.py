"""RelayPool: many relay connections owned by one task group.

::

    async with RelayPool(relays=["ws://127.0.0.1:7777", ...], signer=keys) as pool:
        result = await pool.publish(event, wait="first")
        async with pool.subscribe(Filter.build(kinds=[6100])) as sub:
            async for event in sub:
                ...
        events = await pool.fetch(Filter.build(ids=[...]))
        counts = await pool.count(Filter.build(kinds=[6100]))

Each relay is a :class:`~dvmkit.relay.connection.RelayConnection` whose task the pool owns:
leaving the ``async with`` cancels and awaits every one of them. Publishing waits for the
first OK, a quorum or all relays, with a deadline; relays still working when the call returns
keep going in the pool's task group until that deadline. ``count`` (NIP-45) asks every relay
and returns each one's answer, refusal or silence.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from dvmkit.errors import RelayError
from dvmkit.nostr.event import Event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.relay.connection import RelayConnection
from dvmkit.relay.nip11 import RelayInfo
from dvmkit.relay.subscription import Subscription
from dvmkit.relay.values import (
    DEFAULT_TIMEOUTS,
    CountOutcome,
    CountResult,
    Outcome,
    PoolStats,
    PublishResult,
    Timeouts,
    relay_url,
)

# The pool is the public face of the client: its values are importable from here too.
__all__ = [
    "CountOutcome",
    "CountResult",
    "Outcome",
    "PoolStats",
    "PublishResult",
    "RelayPool",
    "Subscription",
    "Timeouts",
    "relay_url",
]

Wait = Literal["first", "all"] | int


class RelayPool:
    """Connections to many relays, with publish, subscribe, fetch and count across them.

    Backpressure is lossless, and it is per connection. Each relay connection has one reader
    that handles what the relay sends in order. When a subscription's queue is full, that
    reader waits for the consumer instead of dropping events (DVM requests must not be lost)
    and stops reading the socket, so TCP pushes back on the relay. Everything behind the
    waiting event on that socket waits too: OKs for events this pool publishes, COUNT
    answers, EOSE and CLOSED of other subscriptions. So a task that publishes on the pool
    while it does not read a full subscription of the same pool gets ``"timeout"`` for that
    relay once the publish deadline passes (the relay may well have stored the event: its OK
    simply was not read). It never hangs past the deadline, and when the consumer reads
    again everything flows again, with no event lost. If the relay keeps sending and the
    consumer stays away longer than ``ping_interval + ping_timeout``, the socket's own buffer
    fills, keepalive pongs go unread and the connection is re-established: events already
    received are kept, stored ones are asked for again (``since`` overlap, de-duplicated),
    but ephemeral events the relay sent into the dropped socket are gone.

    Remedies: consume subscriptions promptly (hand slow work to a queue of your own and keep
    iterating), size ``max_queue`` (per pool or per :meth:`subscribe`) for the bursts you
    expect, or publish through a separate ``RelayPool`` whose sockets no subscription can
    block.

    Args:
        relays: websocket URLs (``ws://`` or ``wss://``) to connect to; each is checked and
            normalised by :func:`relay_url`, which raises :class:`RelayError` for one that
            cannot be dialled (a host or port that does not parse, user information, ...).
        signer: the identity used to answer NIP-42 AUTH challenges; without one, relays that
            require AUTH refuse with ``auth-required:`` and the refusal reaches the caller.
        timeouts: deadlines and backoff settings.
        max_queue: the bound of each subscription's queue; beyond it the relay's reader waits
            for the consumer (see above).
        dedupe_size: how many recent event ids each subscription remembers.
        max_message_size: the largest frame accepted from a relay; a larger one closes that
            socket (and the pool reconnects).
        since_overlap: seconds of overlap when re-subscribing after a reconnect.
        fetch_info: fetch each relay's NIP-11 document before connecting, and respect it.
    """

    def __init__(
        self,
        *,
        relays: Sequence[str] = (),
        signer: Keys | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        max_queue: int = 10_000,
        dedupe_size: int = 50_000,
        max_message_size: int = 1 << 20,
        since_overlap: int = 10,
        fetch_info: bool = True,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_queue < 1 or dedupe_size < 1:
            raise ValueError("max_queue and dedupe_size must be positive")
        self.timeouts = timeouts
        self._signer = signer
        self._max_queue = max_queue
        self._dedupe_size = dedupe_size
        self._conn_args: dict[str, Any] = {
            "signer": signer,
            "timeouts": timeouts,
            "max_message_size": max_message_size,
            "since_overlap": since_overlap,
            "fetch_info": fetch_info,
            "clock": clock,
            "rand": rand,
        }
        self._initial = [relay_url(u) for u in relays]
        self._conns: dict[str, RelayConnection] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._subs: dict[str, Subscription] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._sub_prefix = os.urandom(3).hex()
        self._sub_counter = itertools.count()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> RelayPool:
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        for url in self._initial:
            await self.add_relay(url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        for sub in list(self._subs.values()):
            sub._done = True
            sub._wake()
        self._subs.clear()
        for task in [*self._tasks.values(), *self._background]:
            task.cancel()
        if tg is not None:
            # Hand the group only a cancellation (it must see that to un-cancel our task);
            # the caller's own exception propagates unwrapped, not inside an ExceptionGroup.
            if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
                await tg.__aexit__(exc_type, exc, tb)
            else:
                await tg.__aexit__(None, None, None)
        self._conns.clear()
        self._tasks.clear()

    def _group(self) -> asyncio.TaskGroup:
        if self._tg is None:
            raise RelayError("the pool is not running: use 'async with RelayPool(...)'")
        return self._tg

    async def add_relay(self, url: str) -> None:
        """Connect to one more relay; open subscriptions are sent to it too.

        Raises:
            RelayError: the URL cannot name a relay (see :func:`relay_url`), or the pool is
                not running.
        """
        url = relay_url(url)
        tg = self._group()
        if url in self._conns:
            return
        conn = RelayConnection(url, **self._conn_args)
        self._conns[url] = conn
        self._tasks[url] = tg.create_task(conn.run(), name=f"relay {url}")
        for sub in self._subs.values():
            if not sub.follows_pool:
                continue
            sub._relay_added(url)
            await conn.subscribe(sub.id, sub.filters, sub, rewrite_since=sub.rewrite_since)

    async def remove_relay(self, url: str) -> None:
        """Disconnect from a relay and wait until its task has finished."""
        url = relay_url(url)
        self._conns.pop(url, None)
        task = self._tasks.pop(url, None)
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        for sub in self._subs.values():
            sub._relay_removed(url)

    @property
    def relays(self) -> tuple[str, ...]:
        return tuple(self._conns)

    def relay_info(self, url: str) -> RelayInfo | None:
        """The relay's NIP-11 document, if it served one."""
        conn = self._conns.get(relay_url(url))
        return conn.info if conn else None

    async def wait_connected(self, *, relays: Sequence[str] | None = None) -> None:
        """Wait until every given relay (default: all) has an open websocket.

        It waits as long as it takes: bound it with ``asyncio.timeout()``.
        """
        for conn in self._select(relays):
            await conn.wait_connected()

    def _select(self, relays: Sequence[str] | None) -> list[RelayConnection]:
        if relays is None:
            return list(self._conns.values())
        urls = [relay_url(u) for u in relays]
        missing = [u for u in urls if u not in self._conns]
        if missing:
            raise RelayError(f"not in the pool: {', '.join(missing)}")
        return [self._conns[u] for u in urls]

    # -- publish -----------------------------------------------------------------------------

    async def publish(
        self,
        event: Event,
        *,
        wait: Wait = "all",
        # A deadline for answers, not a cancellation: the partial result is returned.
        timeout: float | None = None,  # noqa: ASYNC109
        relays: Sequence[str] | None = None,
    ) -> PublishResult:
        """Send ``event`` to the relays and collect their OKs.

        Args:
            event: a signed event.
            wait: ``"all"``, ``"first"`` (one relay has it), or a quorum count.
            timeout: seconds until relays without an answer count as timed out; defaults to
                ``timeouts.publish``.
            relays: a subset of the pool's relays; all when omitted.

        Returns:
            The per-relay outcomes. It returns as soon as ``wait`` is met or can no longer be.

        Raises:
            RelayError: the pool is not running, or a relay URL is malformed or not in it.
            ValueError: a quorum outside 1..number of relays.
        """
        tg = self._group()
        conns = self._select(relays)
        required = len(conns) if wait == "all" else 1 if wait == "first" else wait
        if (
            not isinstance(required, int)
            or not 0 <= required <= len(conns)
            or (required == 0 and conns)
        ):
            raise ValueError(f"wait must be 'first', 'all' or 1..{len(conns)}, got {wait!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeouts.publish if timeout is None else timeout)
        outcomes: dict[str, Outcome] = {}
        settled = asyncio.Event()

        async def one(conn: RelayConnection) -> None:
            outcomes[conn.url] = await conn.publish(event, deadline)
            good = sum(o.ok for o in outcomes.values())
            open_ = len(conns) - len(outcomes)
            if good >= required or good + open_ < required or not open_:
                settled.set()

        if not conns:
            settled.set()
        for conn in conns:
            task = tg.create_task(one(conn), name=f"publish {event.id[:8]} {conn.url}")
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        await settled.wait()
        return PublishResult(
            event_id=event.id,
            outcomes={c.url: outcomes.get(c.url, Outcome("pending")) for c in conns},
            required=required,
        )

    # -- subscribe / fetch -------------------------------------------------------------------

    def subscribe(
        self,
        *filters: Filter | Mapping[str, Any],
        relays: Sequence[str] | None = None,
        max_queue: int | None = None,
        rewrite_since: bool = True,
    ) -> Subscription:
        """A subscription to ``filters`` (OR-ed) on the relays; open it with ``async with``.

        Read it promptly. When ``max_queue`` events are waiting, each relay with another one
        for it stops reading its socket until you take one, and that also holds up OKs for
        what this pool publishes to that relay (publish then reports ``"timeout"``), COUNT
        answers, and the other subscriptions on that relay. Nothing is dropped. See
        :class:`RelayPool` for the remedies.

        Each publication of an event is delivered once. For every event id (among the last
        ``dedupe_size``) the subscription counts the copies each relay sent:

        - the first copy from any relay is delivered;
        - a copy from a relay that had not sent this id before is dropped: another relay
          already passed that publication on;
        - a copy a relay sends before its EOSE on the current socket is dropped if that relay
          sent the id before: it is a stored event sent again (after a reconnect, the
          ``since`` overlap; or a relay repeating itself);
        - a copy a relay sends live (after its EOSE on the current socket) when it has sent
          the id before means the event was published again: that relay's count goes up,
          and the copy is delivered when no other relay has already sent the id that many
          times (so a re-publish reaching several relays is still delivered once).

        Relays forward a re-published ephemeral event (NIP-01, kinds 20000-29999) every
        time; a regular event they already store is answered ``duplicate:`` and not sent to
        subscribers again, so only ephemeral re-publishes are normally seen. A re-publish
        that reaches only relays that had not sent the id before, or that a relay sends
        before its EOSE, cannot be told from a copy and is dropped. A relay can make any id
        it sent reappear this way, so consumers that act on events should be idempotent by
        id (the DVM engine is: a repeated request re-sends its stored answer).

        Args:
            filters: :class:`Filter` values or filter dicts (validated).
            relays: a subset of the pool's relays; all (including ones added later) if omitted.
            max_queue: this subscription's queue bound; the pool's ``max_queue`` if omitted.
            rewrite_since: after a reconnect, ask only for events since shortly before the
                gap. Turn off for events whose ``created_at`` lies in the past (NIP-59 gift
                wraps randomise it up to two days back), at the cost of re-reading stored ones.

        Raises:
            InvalidFilter: a filter dict is malformed.
            RelayError: a relay is not in the pool.
        """
        if not filters:
            raise ValueError("subscribe needs at least one filter")
        parsed = tuple(f if isinstance(f, Filter) else Filter.from_dict(f) for f in filters)
        urls = tuple(c.url for c in self._select(relays))
        sub_id = f"{self._sub_prefix}{next(self._sub_counter)}"
        return Subscription(
            self,
            sub_id,
            parsed,
            urls,
            max_queue=max_queue or self._max_queue,
            dedupe_size=self._dedupe_size,
            rewrite_since=rewrite_since,
            follows_pool=relays is None,
        )

    async def fetch(
        self,
        *filters: Filter | Mapping[str, Any],
        # A deadline for EOSE, not a cancellation: what arrived by then is returned.
        timeout: float | None = None,  # noqa: ASYNC109
        relays: Sequence[str] | None = None,
    ) -> list[Event]:
        """Collect stored events matching ``filters`` until every relay sent EOSE or timeout.

        Returns:
            The verified, de-duplicated events in arrival order (partial on timeout).
        """
        events: list[Event] = []
        async with self.subscribe(*filters, relays=relays) as sub:
            try:
                async with asyncio.timeout(self.timeouts.eose if timeout is None else timeout):
                    async for event in sub.stored():
                        events.append(event)
            except TimeoutError:
                pass
        return events

    async def count(
        self,
        *filters: Filter | Mapping[str, Any],
        # A deadline for answers, not a cancellation: relays without one report "timeout".
        timeout: float | None = None,  # noqa: ASYNC109
        relays: Sequence[str] | None = None,
    ) -> CountResult:
        """Ask each relay how many stored events match ``filters`` (NIP-45 COUNT).

        Relays answer independently: one may count, another refuse with CLOSED, answer with a
        malformed COUNT or not at all (many relays do not implement NIP-45). Each relay's
        :class:`CountOutcome` says which; no relay fault raises.

        Args:
            filters: :class:`Filter` values or filter dicts (validated), OR-ed.
            timeout: seconds to wait for the answers; defaults to ``timeouts.count``.
            relays: a subset of the pool's relays; all when omitted.

        Returns:
            One outcome per relay, once every relay has answered or the deadline passed.

        Raises:
            InvalidFilter: a filter dict is malformed.
            RelayError: the pool is not running or a relay is not in it.
            ValueError: no filter given.
        """
        self._group()
        if not filters:
            raise ValueError("count needs at least one filter")
        parsed = tuple(f if isinstance(f, Filter) else Filter.from_dict(f) for f in filters)
        conns = self._select(relays)
        query_id = f"{self._sub_prefix}{next(self._sub_counter)}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeouts.count if timeout is None else timeout)
        outcomes: dict[str, CountOutcome] = {}

        async def one(conn: RelayConnection) -> None:
            outcomes[conn.url] = await conn.count(query_id, parsed, deadline)

        # Each task ends by the deadline on its own, so this group never outlives the call.
        async with asyncio.TaskGroup() as tg:
            for conn in conns:
                tg.create_task(one(conn), name=f"count {query_id} {conn.url}")
        return CountResult({c.url: outcomes[c.url] for c in conns})

    async def _open_subscription(self, sub: Subscription) -> None:
        self._group()
        self._subs[sub.id] = sub
        for url in sub.relays:
            conn = self._conns.get(url)
            if conn is not None:
                await conn.subscribe(sub.id, sub.filters, sub, rewrite_since=sub.rewrite_since)

    async def _close_subscription(self, sub: Subscription) -> None:
        if self._subs.pop(sub.id, None) is None:
            return
        for conn in list(self._conns.values()):
            await conn.unsubscribe(sub.id)

    # -- stats -------------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        per = {url: conn.stats() for url, conn in self._conns.items()}
        values = per.values()
        return PoolStats(
            relays=per,
            connected=sum(s.connected for s in values),
            subscriptions=len(self._subs),
            sent=sum(s.sent for s in values),
            received=sum(s.received for s in values),
            rejected=sum(s.rejected for s in values),
            invalid=sum(s.invalid + s.malformed for s in values),
            reconnects=sum(s.reconnects for s in values),
        )
