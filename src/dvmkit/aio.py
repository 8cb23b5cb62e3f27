"""Structured-concurrency helpers shared by long-lived async context managers."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


async def close_stack(
    stack: contextlib.AsyncExitStack | None,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    """Leave ``stack`` (which may hold a TaskGroup) on behalf of an ``__aexit__``.

    The task group must see a cancellation, to un-cancel the task leaving it; any other error
    of the caller's is not handed in, so it propagates as it is rather than wrapped in an
    ExceptionGroup.
    """
    if stack is None:
        return
    if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
        await stack.__aexit__(exc_type, exc, tb)
    else:
        await stack.aclose()
