"""State changes a job goes through, each committed with the event that announces it.

DESIGN.md §5: every transition is written to the job store before the event that announces
it is published, so that after a crash the store says exactly what was said. The ledger
builds the event in the request's dialect, commits the transition with it in the outbox,
and only then hands it to the :class:`~dvmkit.provider.sender.Sender`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from dvmkit.nostr.event import Event, Tag, UnsignedEvent
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import seal_answer
from dvmkit.protocol.job import JobRequest, StatusKind
from dvmkit.protocol.response import result_event, status_event
from dvmkit.provider.sender import Sender
from dvmkit.store import JobRecord, JobState, JobStore, OutboxEvent, PaymentEntry


class Ledger:
    """Commits and announces job state changes for one DVM.

    Args:
        keys: the DVM's keys (author of every answer; decrypts and encrypts legacy params).
        store: the job store.
        sender: publishes what was committed.
        counts: the engine's counters (done, failed, rejected).
        on_final: called with a job id once its final state is committed, before the
            answer is sent, so that a re-publish from then on is answered from the store.
        compact_results_above: see :class:`~dvmkit.provider.config.Limits`.
        clock: unix time.
    """

    def __init__(
        self,
        *,
        keys: Keys,
        store: JobStore,
        sender: Sender,
        counts: collections.Counter[str],
        on_final: Callable[[str], None],
        compact_results_above: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.me = keys.public_key
        self.store = store
        self.sender = sender
        self.counts = counts
        self.on_final = on_final
        self.compact_results_above = compact_results_above
        self.clock = clock

    # -- building -----------------------------------------------------------------------------

    def seal(self, request: JobRequest, answer: UnsignedEvent) -> tuple[str, Event]:
        """``(answer id, event to publish)``: the signed answer, or for a private
        (gift-wrapped) request the wrap that carries it back to the customer only."""
        if request.envelope is None:
            event = answer.sign(self.keys)
            return event.id, event
        return seal_answer(answer, self.keys, request.customer, request.envelope)

    def status(self, request: JobRequest, status: StatusKind, **fields: Any) -> Event:
        """A status about ``request`` in its dialect (see ``protocol.status_event``), signed,
        and wrapped when the request was."""
        unsigned = status_event(
            request,
            status,
            provider=self.me,
            created_at=int(self.clock()),
            keys=self.keys,
            **fields,
        )
        return self.seal(request, unsigned)[1]

    def error(
        self, request: JobRequest, code: str, message: str, extra_tags: Sequence[Tag] = ()
    ) -> Event:
        return self.status(
            request, StatusKind.ERROR, code=code, message=message, extra_tags=extra_tags
        )

    def outbox(self, event: Event, request: JobRequest) -> OutboxEvent:
        return OutboxEvent.from_event(event, request.relays)

    def record(self, request: JobRequest, state: JobState, **fields: Any) -> JobRecord:
        """A new job record for ``request``, as received now."""
        now = self.clock()
        return JobRecord(
            id=request.id,
            dialect=request.dialect,
            customer=request.customer,
            kind=request.kind,
            request=request.event.to_json(),
            state=state,
            created_at=now,
            updated_at=now,
            envelope=None if request.envelope is None else str(request.envelope),
            **fields,
        )

    # -- committing ---------------------------------------------------------------------------

    async def report(
        self, request: JobRequest, status: StatusKind, content: str, message: str | None
    ) -> None:
        """A processing or partial status: stored with the (unchanged) state, then sent."""
        event = self.status(request, status, content=content, message=message)
        if await self.store.transition(
            request.id,
            expect=JobState.PROCESSING,
            to=JobState.PROCESSING,
            outbox=[self.outbox(event, request)],
        ):
            await self.sender.send(event, request.relays)

    async def succeed(self, request: JobRequest, content: str) -> None:
        now = int(self.clock())
        result_id, event = self.seal(
            request,
            result_event(request, content, provider=self.me, created_at=now, keys=self.keys),
        )
        if len(event.to_json_bytes()) > self.compact_results_above:
            # A legacy result repeats the request (``request`` and ``i`` tags); with a large
            # request that can pass what relays accept. Clients link by ``e`` anyway.
            result_id, event = self.seal(
                request,
                result_event(
                    request, content, provider=self.me, created_at=now, keys=self.keys, compact=True
                ),
            )
        if await self.store.transition(
            request.id,
            expect=JobState.PROCESSING,
            to=JobState.SUCCESS,
            outbox=[self.outbox(event, request)],
            result_event_id=result_id,
        ):
            self.counts["done"] += 1
            self.on_final(request.id)
            await self.sender.send(event, request.relays)

    async def fail(
        self,
        request: JobRequest,
        code: str,
        message: str,
        *,
        expect: Sequence[JobState] = (JobState.PROCESSING,),
        to: JobState = JobState.ERROR,
        extra_tags: Sequence[Tag] = (),
        payment: PaymentEntry | None = None,
        **fields: Any,
    ) -> bool:
        """End the job ``error`` and say so. ``extra_tags`` go on the error (a refund);
        ``payment`` and ``fields`` (``refund``, ``paid_msat``, ...) are committed with it.

        Returns:
            False when nothing was written: the job was not in ``expect``, or ``payment``'s
            key is already in the ledger.
        """
        event = self.error(request, code, message, extra_tags)
        if not await self.store.transition(
            request.id,
            expect=expect,
            to=to,
            outbox=[self.outbox(event, request)],
            error_code=str(code),
            error_message=message,
            payment=payment,
            **fields,
        ):
            return False
        self.counts["failed"] += 1
        self.on_final(request.id)
        await self.sender.send(event, request.relays)
        return True

    async def reject(
        self, request: JobRequest, code: str, message: str, *, store: bool = False
    ) -> None:
        """Answer ``error`` without running. ``store``: remember it, so a re-sent request
        gets the same answer (bad input); rate limits are not remembered (retrying helps)."""
        self.counts["rejected"] += 1
        event = self.error(request, code, message)
        if store:
            record = self.record(
                request, JobState.ERROR, error_code=str(code), error_message=message
            )
            if not await self.store.insert(record, outbox=[self.outbox(event, request)]):
                await self.sender.resend(request.id)
                return
        await self.sender.send(event, request.relays)

    async def cancelled(
        self, request: JobRequest, *, expect: Collection[JobState], **fields: Any
    ) -> bool:
        """Move a job in one of ``expect`` to ``cancelled`` and say so; False when it was not
        in one. ``fields`` (a paid job's ``refund``) are committed with it."""
        event = self.status(request, StatusKind.CANCELLED)
        if not await self.store.transition(
            request.id,
            expect=expect,
            to=JobState.CANCELLED,
            outbox=[self.outbox(event, request)],
            **fields,
        ):
            return False
        self.counts["cancelled"] += 1
        await self.sender.send(event, request.relays)
        return True
