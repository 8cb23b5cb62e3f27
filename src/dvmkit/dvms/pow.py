"""``pow``: NIP-13 proof of work mined for someone else's event (kind 5970, category ``pow``).

Request: the event to mine, either as its JSON (an ``i`` tag of type ``text``, or the
content), or as an ``event`` input naming a stored event. Param ``difficulty`` (or ``pow``,
as the NIP-90 registry's kind 5970 calls it): the leading zero bits wanted, 1 to
``max_difficulty`` (32 by default).

Result: the mined event as JSON, **unsigned**: same pubkey, created_at, kind, content and tags,
plus a ``["nonce", "<n>", "<difficulty>"]`` tag and the new ``id``, with no ``sig``. Only the
pubkey's owner can sign it, so the customer signs and publishes it; the DVM never holds their
key. Mining is CPU work: it runs in a worker thread, checks between batches of hashes whether
the job was cancelled or timed out, and stops when it was.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson

from dvmkit.errors import DVMError, JobError
from dvmkit.nostr import nip13
from dvmkit.nostr.event import Event, UnsignedEvent
from dvmkit.nostr.keys import Keys
from dvmkit.provider import DVM, Job, Limits
from dvmkit.relay.pool import RelayPool

MAX_DIFFICULTY = 32


def build(
    *,
    relays: list[str] | tuple[str, ...],
    keys: Keys | None = None,
    max_difficulty: int = MAX_DIFFICULTY,
    limits: Limits | None = None,
    **options: Any,
) -> DVM:
    """The proof-of-work DVM.

    Args:
        relays: where it listens and publishes (and looks for ``event`` inputs).
        keys: its identity (a fresh one when omitted).
        max_difficulty: the most leading zero bits a job may ask for (each bit doubles the
            work: 32 bits is about four billion hashes).
        limits: by default two jobs at a time: mining threads share one interpreter.
        options: passed on to :class:`~dvmkit.provider.DVM` (``store_path``, ...).
    """
    dvm = DVM(
        name="dvmkit pow",
        about=f"Mines NIP-13 proof of work on your event, up to {max_difficulty} bits",
        categories=["pow"],
        legacy_kinds=[5970],
        relays=relays,
        keys=keys,
        limits=limits or Limits(concurrency=2),
        examples=[{"input": '{"pubkey": "...", "kind": 1, ...}', "params": {"difficulty": "16"}}],
        **options,
    )

    @dvm.job
    async def mine_pow(
        input: str, job: Job, difficulty: int | None = None, pow: int | None = None
    ) -> str:
        bits = difficulty if difficulty is not None else pow
        if bits is None:
            raise JobError("MISSING_PARAMETER", "param 'difficulty' (leading zero bits) is needed")
        if not 1 <= bits <= max_difficulty:
            raise JobError(
                "INVALID_PARAMETER", f"param 'difficulty' must be 1 to {max_difficulty} bits"
            )
        first = job.request.inputs[0] if job.request.inputs else None
        if first is not None and first.type == "event":
            event = await _stored_event(first.data, [*dvm.relays, *filter(None, [first.relay])])
        else:
            event = parse_template(input)
        stop = threading.Event()
        try:
            mined = await asyncio.to_thread(
                nip13.mine, event, bits, should_stop=lambda: stop.is_set() or job.cancelled
            )
        finally:
            stop.set()  # a timeout or cancellation ends the thread's search too
        if mined is None:
            raise JobError("BAD_REQUEST", "mining stopped before it found a nonce")
        return mined.to_json()

    return dvm


def parse_template(text: str) -> UnsignedEvent:
    """The event to mine, from JSON (``id`` and ``sig`` are ignored: mining replaces both).

    Raises:
        JobError: BAD_REQUEST saying what is wrong with it.
    """
    try:
        return UnsignedEvent.from_dict(orjson.loads(text))
    except orjson.JSONDecodeError:
        raise JobError("BAD_REQUEST", "the input must be the event to mine, as JSON") from None
    except DVMError as exc:
        raise JobError("BAD_REQUEST", f"the input is not a Nostr event: {exc}") from None


async def _stored_event(event_id: str, relays: list[str]) -> UnsignedEvent:
    # The framework resolves an event input to its content; mining needs the whole event.
    try:
        async with RelayPool(relays=list(dict.fromkeys(relays))) as pool:
            found: list[Event] = await pool.fetch({"ids": [event_id]}, timeout=10)
    except DVMError:
        found = []
    if not found:
        raise JobError("BAD_REQUEST", f"event {event_id[:64]} was not found on the relays")
    e = found[0]
    return UnsignedEvent(e.pubkey, e.created_at, e.kind, e.tags, e.content)
