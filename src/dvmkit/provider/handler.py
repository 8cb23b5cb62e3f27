"""A registered handler: its signature read once, and how to call it for a job."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from dvmkit.errors import JobError
from dvmkit.protocol.job import JobRequest
from dvmkit.provider.job import Job
from dvmkit.provider.params import Signature, read_signature


class Handler:
    """A job function and what it takes. Plain functions run in a worker thread."""

    __slots__ = ("func", "is_async", "name", "signature")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.name: str = getattr(func, "__name__", "handler")
        self.is_async = inspect.iscoroutinefunction(func)
        self.signature: Signature = read_signature(func, job_type=Job)

    def bind(self, request: JobRequest) -> dict[str, Any]:
        """Keyword arguments from the request's params (no inputs yet).

        Raises:
            JobError: MISSING_PARAMETER or INVALID_PARAMETER.
        """
        params: dict[str, list[str]] = {}
        for name, values in request.params:
            params.setdefault(name, []).extend(values)
        return self.signature.bind(params)

    async def call(self, job: Job, kwargs: dict[str, Any], inputs: Sequence[str]) -> str:
        """Run the handler for ``job``; return the result as the event content.

        Raises:
            JobError: raised by the handler, or BAD_REQUEST when it needs an input the
                request does not have.
        """
        sig = self.signature
        kwargs = dict(kwargs)
        if sig.input_name is not None:
            if not inputs:
                raise JobError("BAD_REQUEST", "this DVM needs an input: add an i tag")
            kwargs[sig.input_name] = inputs[0]
        if sig.inputs_name is not None:
            kwargs[sig.inputs_name] = list(inputs)
        if sig.job_name is not None:
            kwargs[sig.job_name] = job
        if self.is_async:
            result = await self.func(**kwargs)
        else:
            result = await asyncio.to_thread(self.func, **kwargs)
        return render(result)


def render(result: object) -> str:
    """The result as event content: text as is, other JSON values encoded."""
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    if isinstance(result, bytes | bytearray):
        raise TypeError("a handler must return text or JSON values, not bytes")
    try:
        return orjson.dumps(result).decode()
    except TypeError:
        raise TypeError(
            f"a handler returned a {type(result).__name__}, which is not JSON"
        ) from None
