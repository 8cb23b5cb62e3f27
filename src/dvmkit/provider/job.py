"""The job context a handler may ask for: its request, progress reports, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dvmkit.protocol.job import JobRequest, StatusKind

Report = Callable[[JobRequest, StatusKind, str, str | None], Awaitable[None]]


class Job:
    """What a handler sees of its job. Declare a parameter annotated ``Job`` to receive it.

    Example::

        @dvm.job
        async def transcribe(input: str, job: Job) -> str:
            await job.progress("downloading")
            ...
            await job.partial(first_paragraph)
            return text
    """

    __slots__ = ("_cancelled", "_report", "request")

    def __init__(self, request: JobRequest, report: Report) -> None:
        self.request = request
        self._report = report
        self._cancelled = asyncio.Event()

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def customer(self) -> str:
        return self.request.customer

    @property
    def cancelled(self) -> bool:
        """True once the customer cancelled; a handler in a thread should poll it."""
        return self._cancelled.is_set()

    async def progress(self, message: str) -> None:
        """Tell the customer what is happening (a ``processing`` status with a message)."""
        await self._report(self.request, StatusKind.PROCESSING, "", message)

    async def partial(self, content: str, message: str | None = None) -> None:
        """Send part of the result early (a ``partial`` status carrying ``content``)."""
        await self._report(self.request, StatusKind.PARTIAL, content, message)

    def _cancel(self) -> None:
        self._cancelled.set()

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, customer={self.customer!r})"
