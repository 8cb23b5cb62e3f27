"""A subscription across the relays of a pool: one stream, de-duplicated, bounded.

Events from every relay land in one bounded queue. An event id is delivered once per time it
was published: copies from other relays and a relay's stored copies sent again after a
reconnect are dropped, but a relay that sends an id again live (after its EOSE on the current
socket) is passing on a new publication of it, so it is delivered again (the rule is in
:meth:`~dvmkit.relay.pool.RelayPool.subscribe`). Ids are kept in a bounded LRU
(``dedupe_size``) together with how many times each relay sent them.
When the queue is full the relay readers wait (backpressure) instead of buffering or dropping;
while they wait they read nothing else from their socket, OKs included (see
:class:`~dvmkit.relay.pool.RelayPool` for what that means for publishing, and the remedies).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from dvmkit.nostr.event import Event
from dvmkit.nostr.filters import Filter

if TYPE_CHECKING:
    from dvmkit.relay.pool import RelayPool

RelayState = Literal["pending", "eose", "closed", "unavailable"]


class _Wake:
    """Put in the queue to wake a waiting consumer when the subscription's state changes."""


_WAKE = _Wake()


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    delivered: int
    duplicates: int
    queued: int
    relays: Mapping[str, RelayState]


class Subscription:
    """Events matching ``filters`` from every relay of the pool, each publication once.

    Use as ``async with pool.subscribe(...) as sub: async for event in sub: ...``. Iteration
    ends when the subscription is closed, or when every relay has closed it (see
    :attr:`closed_by` for their reasons).
    """

    def __init__(
        self,
        pool: RelayPool,
        sub_id: str,
        filters: tuple[Filter, ...],
        relays: tuple[str, ...],
        *,
        max_queue: int,
        dedupe_size: int,
        rewrite_since: bool,
        follows_pool: bool = True,
    ) -> None:
        self.id = sub_id
        self.follows_pool = follows_pool
        self.filters = filters
        self.rewrite_since = rewrite_since
        self._pool = pool
        self._queue: asyncio.Queue[Event | _Wake] = asyncio.Queue(max_queue)
        # Event id -> relay -> how many publications of it that relay has passed on.
        self._seen: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._dedupe_size = dedupe_size
        self._relays: dict[str, RelayState] = dict.fromkeys(relays, "pending")
        self._closed_by: dict[str, str] = {}
        self._stored = asyncio.Event()
        self._open = False
        self._done = False
        self._delivered = 0
        self._duplicates = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Subscription:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Send the REQ to every relay (``async with`` does this)."""
        if self._open or self._done:
            return
        self._open = True
        self._check_stored()
        await self._pool._open_subscription(self)

    async def close(self) -> None:
        """Send CLOSE to every relay and end iteration. Idempotent."""
        if self._done:
            return
        self._done = True
        await self._pool._close_subscription(self)
        # Free relay readers blocked on a full queue: nobody will read these events now.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._wake()

    # -- consuming ---------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self._next(until_stored=False)
        if event is None:
            raise StopAsyncIteration
        return event

    async def stored(self) -> AsyncIterator[Event]:
        """Yield events until every relay has sent EOSE (or closed, or is unreachable)."""
        while (event := await self._next(until_stored=True)) is not None:
            yield event

    async def wait_stored(self) -> None:
        """Wait until every relay has sent its stored events (EOSE) or cannot (closed it, or
        is unreachable). Bound it with ``asyncio.timeout()``."""
        await self._stored.wait()

    @property
    def is_stored(self) -> bool:
        """Every relay has sent EOSE or cannot."""
        return self._stored.is_set()

    async def _next(self, *, until_stored: bool) -> Event | None:
        while True:
            if self._done:
                return None
            if self._queue.empty() and (self._ended() or (until_stored and self._stored.is_set())):
                return None
            item = await self._queue.get()
            if isinstance(item, Event):
                return item

    # -- inspection --------------------------------------------------------------------------

    @property
    def eose(self) -> frozenset[str]:
        """Relays that have sent EOSE."""
        return frozenset(url for url, state in self._relays.items() if state == "eose")

    @property
    def closed_by(self) -> Mapping[str, str]:
        """Relays that closed this subscription, with their CLOSED message."""
        return dict(self._closed_by)

    @property
    def relays(self) -> Mapping[str, RelayState]:
        return dict(self._relays)

    def seen_on(self, event_id: str) -> frozenset[str]:
        """The relays that sent ``event_id`` (while it is in the de-duplication window)."""
        return frozenset(self._seen.get(event_id, ()))

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(
            delivered=self._delivered,
            duplicates=self._duplicates,
            queued=self._queue.qsize(),
            relays=dict(self._relays),
        )

    # -- called by connections (SubscriptionSink) --------------------------------------------

    async def _on_event(self, event: Event, relay: str, *, live: bool) -> None:
        if self._done:
            return
        # Counts are updated before the await, so a copy arriving meanwhile is judged on them.
        sent = self._seen.get(event.id)
        if sent is None:
            self._seen[event.id] = {relay: 1}
            if len(self._seen) > self._dedupe_size:
                self._seen.popitem(last=False)
        elif relay not in sent:
            sent[relay] = 1  # a copy of a publication another relay passed on first
            self._duplicates += 1
            return
        elif not live:
            self._duplicates += 1  # stored again after a reconnect, or a relay repeating itself
            return
        else:
            # A relay passes on each publication it receives once, so its n-th copy (stored
            # ones sent again aside) is the n-th publication; the first relay to pass one on
            # delivers it, the others' copies of it are dropped.
            count = sent[relay] = sent[relay] + 1
            if any(n >= count for r, n in sent.items() if r != relay):
                self._duplicates += 1
                return
            self._seen.move_to_end(event.id)
        self._delivered += 1
        await self._queue.put(event)

    def _on_eose(self, relay: str) -> None:
        if relay in self._relays and self._relays[relay] != "closed":
            self._relays[relay] = "eose"
            self._check_stored()

    def _on_closed(self, relay: str, message: str) -> None:
        if relay in self._relays:
            self._relays[relay] = "closed"
            self._closed_by[relay] = message
            self._check_stored()

    def _on_unavailable(self, relay: str) -> None:
        if self._relays.get(relay) == "pending":
            self._relays[relay] = "unavailable"
            self._check_stored()

    def _relay_added(self, relay: str) -> None:
        self._relays.setdefault(relay, "pending")
        self._check_stored()

    def _relay_removed(self, relay: str) -> None:
        self._relays.pop(relay, None)
        self._check_stored()

    def _ended(self) -> bool:
        return bool(self._relays) and all(s == "closed" for s in self._relays.values())

    def _check_stored(self) -> None:
        if not self._open:
            return
        if "pending" not in self._relays.values():
            self._stored.set()
        self._wake()

    def _wake(self) -> None:
        # Only an empty queue can have a blocked consumer; a full one needs no wake-up.
        if self._queue.empty():
            self._queue.put_nowait(_WAKE)
