"""Resolve a job's inputs (NIP-90 §1.2): text as is, urls fetched, events and earlier jobs read.

Every failure becomes a ``BAD_REQUEST`` job error that says which input and what to do.
"""

from __future__ import annotations

import asyncio

from dvmkit import http
from dvmkit.errors import DVMError, JobError
from dvmkit.nostr.event import Event
from dvmkit.protocol.job import (
    MODERN_KIND,
    RESULT_KIND_OFFSET,
    JobInput,
    JobRequest,
)
from dvmkit.provider.config import Limits
from dvmkit.relay.pool import RelayPool
from dvmkit.store import JobState, JobStore


async def resolve(
    request: JobRequest, *, pool: RelayPool, limits: Limits, store: JobStore
) -> list[str]:
    """The data of each input, in order.

    Args:
        request: the job.
        pool: the DVM's relays, where events and earlier results are looked for.
        limits: the size caps and waits.
        store: the DVM's job store: an earlier job it ran itself is read from there (a
            modern result is ephemeral, so no relay keeps it).

    Raises:
        JobError: BAD_REQUEST when an input cannot be fetched, found, or decoded.
    """
    return [await _one(item, n, pool, limits, store) for n, item in enumerate(request.inputs, 1)]


async def _one(
    item: JobInput, number: int, pool: RelayPool, limits: Limits, store: JobStore
) -> str:
    if item.type == "url":
        return await _url(item.data, number, limits)
    if item.type == "event":
        event = await _event(item.data, item.relay, pool, limits.input_timeout)
        if event is None:
            raise JobError("BAD_REQUEST", f"input {number}: event {item.data} was not found")
        return event.content
    if item.type == "job":
        return await _job_result(item.data, number, pool, limits.job_input_wait, store)
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


async def _event(event_id: str, hint: str | None, pool: RelayPool, wait: float) -> Event | None:
    found = await pool.fetch({"ids": [event_id]}, timeout=wait)
    if found or not hint or hint in pool.relays:
        return found[0] if found else None
    # NIP-90 §1.2: the input's relay is where the event was published; ask it once, on a
    # connection of its own that closes with the fetch (a hint the pool refuses as a relay
    # URL raises RelayError, which is a DVMError).
    try:
        async with RelayPool(relays=[hint]) as there:
            found = await there.fetch({"ids": [event_id]}, timeout=wait)
    except DVMError:
        return None
    return found[0] if found else None


def _is_result(event: Event, job_id: str) -> bool:
    if job_id not in event.tag_values("e"):
        return False
    if event.kind == MODERN_KIND:
        return event.tag_value("status") == "success"
    return 5000 + RESULT_KIND_OFFSET <= event.kind < 6000 + RESULT_KIND_OFFSET


async def _own_result(store: JobStore, job_id: str) -> str | None:
    """The result of an earlier job this DVM ran, from its store."""
    record = await store.get(job_id)
    if record is None or record.state is not JobState.SUCCESS:
        return None
    if record.envelope is not None or Event.from_json(record.request).tag("encrypted"):
        # Its result went to its customer encrypted; this DVM cannot read it back, and must
        # not hand it to whoever names the job.
        raise JobError(
            "BAD_REQUEST",
            f"job {job_id} was private: its result cannot be an input; send it as text",
        )
    for item in await store.job_events(job_id):
        if item.event_id == record.result_event_id:
            return Event.from_json(item.event_json).content
    return None


async def _job_result(
    job_id: str, number: int, pool: RelayPool, wait: float, store: JobStore
) -> str:
    """Job chaining: the result of an earlier job, waiting for it up to ``wait`` seconds."""
    # Every event that references the job; results are picked out by kind and status (a
    # kinds list of all 1000 legacy result kinds would trip relays' filter-size limits).
    try:
        async with asyncio.timeout(wait), pool.subscribe({"#e": [job_id]}) as sub:
            # Asked only once the subscription is open: a result stored after this look is
            # published after it, so the subscription sees it.
            own = await _own_result(store, job_id)
            if own is not None:
                return own
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
