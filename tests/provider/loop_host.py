"""A running DVM on an event loop of a test's own, for tests that Hypothesis drives.

Hypothesis calls plain functions, and between two of them it draws: a loop that ran then
would move the DVM (timers, reconnect jitter drawing from ``random``) while the draw happens.
:class:`LoopHost` keeps one task alive across many ``run_until_complete`` calls, holding what
the test talks to (a relay, the DVM, a customer), and runs the loop only inside
:meth:`LoopHost.call`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Self, TypeVar

T = TypeVar("T")


class LoopHost(ABC):
    """An event loop and the one task on it that holds :meth:`hosting` open until
    :meth:`close`; a context manager too (``start`` on entry, ``close`` on exit).

    Args:
        wait: bound on starting and on stopping; twice that on one :meth:`call`.
    """

    def __init__(self, *, wait: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.wait = wait
        self._stop = asyncio.Event()
        self._host: asyncio.Task[None] | None = None

    @abstractmethod
    def hosting(self) -> AbstractAsyncContextManager[None]:
        """What the host task enters (on the loop) and holds open; ready once entered."""

    def start(self) -> None:
        ready = self.loop.create_future()
        # The one task that owns the relay and the DVM, across many run_until_complete calls.
        self._host = self.loop.create_task(self._serve(ready))
        first = asyncio.FIRST_COMPLETED
        self.loop.run_until_complete(
            asyncio.wait([ready, self._host], timeout=self.wait, return_when=first)
        )
        if self._host.done():
            self._host.result()
        assert ready.done(), "the DVM did not start"

    def close(self) -> None:
        try:
            self._stop.set()
            if self._host is not None:
                self.loop.run_until_complete(asyncio.wait_for(self._host, self.wait))
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        async with self.hosting():
            ready.set_result(None)
            await self._stop.wait()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop (the DVM runs meanwhile); fail if the DVM has stopped."""
        assert self._host is not None
        try:
            if self._host.done():
                coro.close()
                raise AssertionError("the DVM stopped")
            return self.loop.run_until_complete(asyncio.wait_for(coro, self.wait * 2))
        finally:
            if self._host.done():
                self._host.result()  # the DVM crashed: raise what ended it
