"""``count``: how many events match a filter on given relays (kind 5400, category ``count``).

Request: the filter as JSON (an ``i`` tag of type ``text``, or the content): one NIP-01 filter
object, or a list of them (OR-ed). Param ``relay`` (repeatable, up to 8): the relays to ask; the
DVM's own relays when absent. Each relay is asked with a NIP-45 COUNT; a relay that does not
answer one (many do not implement NIP-45) is read with a REQ instead and the matching events
are counted (bounded by what the relay returns for one REQ).

Result: the count as a decimal string. With several relays it is the largest of their counts:
relays count independently, the same event stored on two is counted by both, so a sum would
overstate and the largest is the best lower bound on the events held between them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from dvmkit.errors import DVMError, JobError
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM, Job
from dvmkit.relay.pool import RelayPool, relay_url

#: Relays one job may ask: each is a connection the DVM opens for the customer.
MAX_RELAYS = 8
#: Filters one job may OR together.
MAX_FILTERS = 10


def build(
    *,
    relays: list[str] | tuple[str, ...],
    keys: Keys | None = None,
    wait: float = 10.0,
    **options: Any,
) -> DVM:
    """The count DVM.

    Args:
        relays: where it listens and publishes, and what it counts on by default.
        keys: its identity (a fresh one when omitted).
        wait: seconds to wait for each relay to connect and answer.
        options: passed on to :class:`~dvmkit.provider.DVM` (``limits``, ``store_path``, ...).
    """
    dvm = DVM(
        name="dvmkit count",
        about="Counts the events matching a filter on the relays you name (NIP-45)",
        categories=["count"],
        legacy_kinds=[5400],
        relays=relays,
        keys=keys,
        examples=[{"input": '{"kinds": [1]}', "params": {"relay": ["wss://relay.example"]}}],
        **options,
    )

    @dvm.job
    async def count(inputs: list[str], job: Job, relay: list[str] | None = None) -> str:
        # The registry's kind 5400 also allows the filter as a legacy request's content,
        # which the framework never treats as an input.
        text = inputs[0] if inputs else job.request.event.content
        if not text:
            raise JobError("BAD_REQUEST", "send the filter as JSON, in an i tag or the content")
        filters = parse_filters(text)
        urls = parse_relays(relay) if relay else list(dvm.relays)
        return str(await count_on(urls, filters, wait=wait))

    return dvm


def parse_filters(text: str) -> list[Filter]:
    """The filters of a count job: one JSON filter object or a list of them.

    Raises:
        JobError: BAD_REQUEST saying what is wrong.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise JobError("BAD_REQUEST", "the input must be a NIP-01 filter as JSON") from None
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_FILTERS:
        raise JobError("BAD_REQUEST", f"send 1 to {MAX_FILTERS} filters")
    try:
        return [Filter.from_dict(item) for item in items]
    except DVMError as exc:
        raise JobError("BAD_REQUEST", f"not a valid filter: {exc}") from None


def parse_relays(values: list[str]) -> list[str]:
    """Checked, normalised relay URLs of the ``relay`` params.

    Raises:
        JobError: INVALID_PARAMETER for too many or a malformed URL.
    """
    urls: list[str] = []
    for value in values:
        try:
            urls.append(relay_url(value))
        except DVMError:
            raise JobError(
                "INVALID_PARAMETER", f"param 'relay' {value[:80]!r} is not a ws:// or wss:// URL"
            ) from None
    urls = list(dict.fromkeys(urls))
    if len(urls) > MAX_RELAYS:
        raise JobError("INVALID_PARAMETER", f"name at most {MAX_RELAYS} relays")
    return urls


async def count_on(urls: list[str], filters: list[Filter], *, wait: float) -> int:
    """The largest count of events matching ``filters`` among ``urls``' answers.

    Raises:
        JobError: SERVICE_UNAVAILABLE when no relay could be reached.
    """
    async with RelayPool(relays=urls) as pool:
        try:
            async with asyncio.timeout(wait):
                await pool.wait_connected()
        except TimeoutError:
            pass  # count with the relays that did connect
        result = await pool.count(*filters, timeout=wait)
        counts = list(result.counts.values())
        for url, outcome in result.outcomes.items():
            if outcome.ok or outcome.status == "not_connected":
                continue
            # No NIP-45 here: read the matching events and count them instead.
            events = await pool.fetch(*filters, timeout=wait, relays=[url])
            counts.append(len({e.id for e in events}))
    if not counts:
        raise JobError(
            "SERVICE_UNAVAILABLE", f"could not reach {', '.join(urls)[:200]}; try other relays"
        )
    return max(counts)
