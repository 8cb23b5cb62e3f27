"""Resolve a job's inputs (NIP-90 §1.2): text as is, urls fetched, events and earlier jobs read.

Every failure becomes a ``BAD_REQUEST`` job error that says which input and what to do.
"""

from __future__ import annotations

import asyncio

from dvmkit import http
from dvmkit.errors import JobError
from dvmkit.nostr.event import Event
from dvmkit.protocol.job import MODERN_KIND, RESULT_KIND_OFFSET, JobInput, JobRequest
from dvmkit.provider.config import Limits
from dvmkit.relay.pool import RelayPool


async def resolve(request: JobRequest, *, pool: RelayPool, limits: Limits) -> list[str]:
    """The data of each input, in order.

    Raises:
        JobError: BAD_REQUEST when an input cannot be fetched, found, or decoded.
    """
    return [await _one(item, n, pool, limits) for n, item in enumerate(request.inputs, 1)]


async def _one(item: JobInput, number: int, pool: RelayPool, limits: Limits) -> str:
    if item.type == "url":
        return await _url(item.data, number, limits)
    if item.type == "event":
        event = await _event(item.data, pool, limits.input_timeout)
        if event is None:
            raise JobError("BAD_REQUEST", f"input {number}: event {item.data} was not found")
        return event.content
    if item.type == "job":
        return await _job_result(item.data, number, pool, limits.job_input_wait)
    return item.data


async def _url(url: str, number: int, limits: Limits) -> str:
    try:
        response = await http.get(
            url, max_bytes=limits.max_input_bytes, timeout=limits.input_timeout
        )
    except http.HttpError as exc:
        raise JobError("BAD_REQUEST", f"input {number}: could not fetch it: {exc}") from None
    try:
        return response.body.decode("utf-8")
    except UnicodeDecodeError:
        raise JobError("BAD_REQUEST", f"input {number}: {url[:80]} is not UTF-8 text") from None


async def _event(event_id: str, pool: RelayPool, wait: float) -> Event | None:
    found = await pool.fetch({"ids": [event_id]}, timeout=wait)
    return found[0] if found else None


def _is_result(event: Event, job_id: str) -> bool:
    if job_id not in event.tag_values("e"):
        return False
    if event.kind == MODERN_KIND:
        return event.tag_value("status") == "success"
    return 5000 + RESULT_KIND_OFFSET <= event.kind < 6000 + RESULT_KIND_OFFSET


async def _job_result(job_id: str, number: int, pool: RelayPool, wait: float) -> str:
    """Job chaining: the result of an earlier job, waiting for it up to ``wait`` seconds."""
    # Every event that references the job; results are picked out by kind and status (a
    # kinds list of all 1000 legacy result kinds would trip relays' filter-size limits).
    try:
        async with asyncio.timeout(wait), pool.subscribe({"#e": [job_id]}) as sub:
            async for event in sub:
                if _is_result(event, job_id):
                    return event.content
    except TimeoutError:
        pass
    raise JobError(
        "BAD_REQUEST",
        f"input {number}: no result for job {job_id} arrived within {wait:g} s; "
        "send the request again once that job has finished",
    )
