"""A bounded mailbox keyed by job or payment hash: what arrives before anyone waits is kept."""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Items posted under a key, taken in order by whoever waits on that key.

    A payment can be seen before its job waits for it (a zap receipt read from storage on
    restart, a notification racing the invoice's answer), so items are kept until taken,
    up to ``limit`` keys; past it the oldest keys are dropped (a flood of receipts for jobs
    that do not exist must not grow memory without bound).
    """

    def __init__(self, limit: int = 10_000, per_key: int = 16) -> None:
        self._limit = limit
        self._per_key = per_key
        self._items: collections.OrderedDict[str, collections.deque[T]] = collections.OrderedDict()
        self._posted: dict[str, asyncio.Event] = {}

    def put(self, key: str, item: T) -> None:
        queue = self._items.get(key)
        if queue is None:
            queue = self._items[key] = collections.deque(maxlen=self._per_key)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)
        queue.append(item)
        event = self._posted.get(key)
        if event is not None:
            event.set()

    async def get(self, key: str) -> T:
        """The next item posted under ``key``, waiting for one if there is none yet."""
        while True:
            queue = self._items.get(key)
            if queue:
                item = queue.popleft()
                if not queue:
                    del self._items[key]
                return item
            event = self._posted.setdefault(key, asyncio.Event())
            try:
                await event.wait()
            finally:
                event.clear()
                if self._posted.get(key) is event:
                    del self._posted[key]
