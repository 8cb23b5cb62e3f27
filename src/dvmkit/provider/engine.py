"""The provider's engine: receive, admit, run, answer, in both dialects, durably.

One engine serves one DVM. Requests arrive through one relay-pool subscription; each is
checked, parsed and admitted into the job store (the request id is the job's identity, so a
request seen on five relays, or re-published, runs once), queued, and run by a bounded set of
workers. Every state change is committed together with the signed event that announces it
before that event is published (DESIGN.md §5), so after a crash :meth:`Engine.resume` re-runs
unfinished jobs and re-sends unsent events with their original ids.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from dvmkit.errors import DVMError, JobError, PaymentError, ProtocolError
from dvmkit.nostr import nip40
from dvmkit.nostr.event import Event, UnsignedEvent
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import (
    MODERN_KIND,
    ErrorCode,
    JobRequest,
    StatusKind,
    answerable_request,
    encryption_scheme,
    parse_request,
)
from dvmkit.protocol.legacy import decrypt_legacy_params
from dvmkit.protocol.response import result_event, status_event
from dvmkit.provider import inputs
from dvmkit.provider.config import Limits, PaymentProcessor, PaymentRequest, Price
from dvmkit.provider.handler import Handler
from dvmkit.provider.job import Job
from dvmkit.relay.pool import RelayPool, relay_url
from dvmkit.store import JobRecord, JobState, JobStore, OutboxEvent

log = logging.getLogger("dvmkit.provider")

_NOT_FINISHED = frozenset(s for s in JobState if not s.terminal)


@dataclass(eq=False, slots=True)
class _Entry:
    """A job this process holds in memory while it is queued or running."""

    request: JobRequest
    job: Job
    admitted: float  # monotonic time, for latency
    task: asyncio.Task[None] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """A snapshot for heartbeats, ``dvm status`` and tests."""

    running: int
    queued: int
    done: int
    failed: int
    cancelled: int
    rejected: int
    ignored: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None


class Engine:
    """Runs one DVM's jobs. Owned by :class:`~dvmkit.provider.dvm.DVM`."""

    def __init__(
        self,
        *,
        keys: Keys,
        handler: Handler,
        pool: RelayPool,
        store: JobStore,
        relays: Sequence[str],
        categories: Sequence[str],
        legacy_kinds: Sequence[int],
        limits: Limits,
        price: Price,
        payments: PaymentProcessor | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.me = keys.public_key
        self.handler = handler
        self.pool = pool
        self.store = store
        self.relays = tuple(relays)
        self.categories = frozenset(categories)
        self.legacy_kinds = frozenset(legacy_kinds)
        self.limits = limits
        self.price = price
        self.payments = payments
        self.clock = clock
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._active: dict[str, _Entry] = {}
        self._per_customer: collections.Counter[str] = collections.Counter()
        self._running = 0
        self._latencies: collections.deque[float] = collections.deque(maxlen=2048)
        self._counts = collections.Counter[str]()
        self._tg: asyncio.TaskGroup | None = None
        self._sent: list[str] = []
        self._sent_ready = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    def filters(self, since: int) -> list[dict[str, Any]]:
        """What the DVM subscribes to: its requests, and cancellations of them."""
        out: list[dict[str, Any]] = [{"kinds": [MODERN_KIND], "#p": [self.me]}]
        if self.categories:
            out.append({"kinds": [MODERN_KIND], "#t": sorted(self.categories)})
        kinds = sorted(self.legacy_kinds)
        if kinds:
            out.append({"kinds": kinds, "since": since})
        # NIP-09 deletions name the deleted kinds in `k` tags; cancel by deletion, of a legacy
        # request or of a modern one (a customer may cancel either way: modern.is_cancel).
        deleted = [str(k) for k in kinds] + [str(MODERN_KIND)]
        out.append({"kinds": [5], "#k": deleted, "since": since})
        return out

    async def run(self, ready: asyncio.Event) -> None:
        """Resume, then serve until cancelled. Sets ``ready`` once the DVM is listening."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._mark_sent_batches(), name="dvm outbox marker")
            await self.resume()
            for n in range(self.limits.concurrency):
                tg.create_task(self._worker(), name=f"dvm worker {n}")
            since = int(self.clock()) - self.limits.request_lookback
            async with self.pool.subscribe(*self.filters(since)) as sub:
                # Read while waiting for EOSE: stored requests may outnumber the queue.
                tg.create_task(_set_when_stored(sub.wait_stored(), ready))
                async for event in sub:
                    self.on_event(event)

    async def resume(self) -> None:
        """After a restart: re-queue unfinished jobs and re-send events never marked sent."""
        for record in await self.store.unfinished():
            request = self._reparse(record)
            if request is None:
                continue
            if record.state is JobState.PAYMENT_REQUIRED and self.payments is not None:
                self._spawn(self._await_payment(request, record.price_msat, record.payment_ref))
                continue
            if record.state is JobState.PAYMENT_REQUIRED:
                await self._finish_error(
                    request,
                    ErrorCode.PAYMENT_TIMEOUT,
                    "the DVM restarted without a way to confirm payment; send the job again",
                    expect=(JobState.PAYMENT_REQUIRED,),
                    to=JobState.EXPIRED,
                )
                continue
            if record.state is not JobState.QUEUED:
                moved = await self.store.transition(
                    record.id, expect=record.state, to=JobState.QUEUED
                )
                if not moved:
                    continue
            try:
                kwargs = self.handler.bind(request)
            except JobError as exc:  # admitted under an older handler signature
                await self._finish_error(request, exc.code, exc.message, expect=(JobState.QUEUED,))
                continue
            self._hold(request).kwargs = kwargs
            self._queue.put_nowait(self._active[request.id])
        for item in await self.store.pending_outbox():
            try:
                event = Event.from_json(item.event_json)
            except DVMError:
                continue
            await self._send(event, item.relays)

    def _reparse(self, record: JobRecord) -> JobRequest | None:
        try:
            event = Event.from_json(record.request)
            return self._parse(event)
        except (DVMError, ValueError):
            log.warning("job %s: stored request no longer parses; leaving it", record.id)
            return None

    # -- receiving ----------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Route one verified event from the subscription (never blocks)."""
        if event.kind == 5:
            for target in event.tag_values("e"):
                self._spawn(self.cancel(target, by=event.pubkey))
            return
        status = event.tag_value("status") if event.kind == MODERN_KIND else None
        if status is not None:
            if status == "cancel":
                for target in event.tag_values("e"):
                    self._spawn(self.cancel(target, by=event.pubkey))
            return  # another provider's status or result
        if event.pubkey == self.me:
            return
        now = self.clock()
        expires = nip40.expiration(event)
        if (expires is not None and expires <= now) or (
            event.created_at > now + self.limits.max_future_skew
        ):
            self._counts["ignored"] += 1
            return
        if event.id in self._active:
            return  # already queued or running here
        if event.kind == MODERN_KIND and self.me not in event.tag_values("p"):
            # An open request for another category is not ours, whatever else is wrong with it.
            category = event.tag_value("category") or event.tag_value("t")
            if category not in self.categories:
                self._counts["ignored"] += 1
                return
        try:
            request = self._parse(event)
        except ProtocolError:
            self._counts["ignored"] += 1
            return
        except JobError as exc:
            self._spawn(self._reject(answerable_request(event), exc.code, exc.message, store=True))
            return
        self._admit(request)

    def _parse(self, event: Event) -> JobRequest:
        decrypted = None
        if event.kind != MODERN_KIND and encryption_scheme(event) is not None:
            decrypted = decrypt_legacy_params(event, self.keys)
        return parse_request(event, provider=self.me, decrypted_tags=decrypted)

    def _admit(self, request: JobRequest) -> None:
        try:
            kwargs = self.handler.bind(request)
        except JobError as exc:
            self._spawn(self._reject(request, exc.code, exc.message, store=True))
            return
        if len(self._active) >= self.limits.max_queue + self.limits.concurrency:
            self._spawn(self._reject(request, ErrorCode.RATE_LIMITED, "the DVM is full; retry"))
            return
        if self._per_customer[request.customer] >= self.limits.per_customer:
            message = f"at most {self.limits.per_customer} jobs per customer at once; retry"
            self._spawn(self._reject(request, ErrorCode.RATE_LIMITED, message))
            return
        entry = self._hold(request)
        entry.kwargs = kwargs
        self._spawn(self._store_new(entry))

    def _hold(self, request: JobRequest) -> _Entry:
        entry = _Entry(request, Job(request, self._report), time.monotonic())
        self._active[request.id] = entry
        self._per_customer[request.customer] += 1
        return entry

    def _release(self, job_id: str) -> None:
        entry = self._active.pop(job_id, None)
        if entry is not None:
            self._per_customer[entry.request.customer] -= 1
            if self._per_customer[entry.request.customer] <= 0:
                del self._per_customer[entry.request.customer]

    async def _store_new(self, entry: _Entry) -> None:
        request = entry.request
        try:
            price = await self._price(request)
        except Exception:
            # The developer's price function failed: like a failing handler, this job ends
            # INTERNAL_ERROR (details in our log only) and the DVM serves on.
            log.exception("job %s: the price function failed", request.id)
            self._release(request.id)
            await self._reject(request, ErrorCode.INTERNAL_ERROR, "the DVM failed")
            return
        state = JobState.QUEUED if price == 0 else JobState.PAYMENT_REQUIRED
        record = self._record(request, state, price_msat=price)
        if price == 0:
            if await self.store.insert(record):
                self._queue.put_nowait(entry)
            else:
                self._release(request.id)
                await self._resend(request.id)
            return
        await self._ask_payment(entry, record, price)

    async def _price(self, request: JobRequest) -> int:
        price = self.price
        if isinstance(price, int):
            return price
        value = price(request)
        if not isinstance(value, int):
            value = await value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("a DVM's price must be a non-negative number of millisats")
        return value

    # -- payment hook -------------------------------------------------------------------------

    async def _ask_payment(self, entry: _Entry, record: JobRecord, price: int) -> None:
        request = entry.request
        assert self.payments is not None  # DVM refuses a price without a payment processor
        try:
            payment = await self.payments.request(request.id, price, request)
        except PaymentError as exc:
            self._release(request.id)
            await self._reject(
                request, ErrorCode.SERVICE_UNAVAILABLE, f"cannot take payment: {exc}"
            )
            return
        except Exception:
            # A payment backend's own bug ends this job's errand, not the DVM.
            log.exception("job %s: the payment processor failed to ask for payment", request.id)
            self._release(request.id)
            await self._reject(request, ErrorCode.SERVICE_UNAVAILABLE, "cannot take payment now")
            return
        event = self._sign(
            status_event(
                request,
                StatusKind.PAYMENT_REQUIRED,
                provider=self.me,
                created_at=int(self.clock()),
                amount_msat=payment.amount_msat,
                bolt11=payment.bolt11,
                methods=payment.methods,
                keys=self.keys,
            )
        )
        ref = payment.reference or payment.bolt11
        stored = dataclasses.replace(record, payment_ref=ref)
        if not await self.store.insert(stored, outbox=[self._outbox(event, request)]):
            self._release(request.id)
            await self._resend(request.id)
            return
        await self._send(event, request.relays)
        await self._await_payment(request, price, ref, payment)

    async def _await_payment(
        self,
        request: JobRequest,
        price: int,
        ref: str | None,
        payment: PaymentRequest | None = None,
    ) -> None:
        assert self.payments is not None
        entry = self._active.get(request.id) or self._hold(request)
        # cancel() cancels entry.task: a customer who cancels stops the wait for payment too.
        entry.task = asyncio.current_task()
        payment = payment or PaymentRequest(price, tuple(self.payments.methods), reference=ref)
        unpaid = (JobState.PAYMENT_REQUIRED,)
        try:
            async with asyncio.timeout(self.limits.payment_timeout):
                paid = await self.payments.confirm(request.id, payment)
        except asyncio.CancelledError:
            if not entry.job.cancelled:
                raise
            self._release(request.id)
            return
        except TimeoutError:
            message = "payment was not confirmed in time; send the job again to retry"
            await self._finish_error(
                request, ErrorCode.PAYMENT_TIMEOUT, message, expect=unpaid, to=JobState.EXPIRED
            )
            self._release(request.id)
            return
        except PaymentError as exc:
            await self._finish_error(request, ErrorCode.PAYMENT_FAILED, str(exc), expect=unpaid)
            self._release(request.id)
            return
        except Exception:
            log.exception("job %s: the payment processor failed to confirm", request.id)
            message = "the payment could not be confirmed"
            await self._finish_error(request, ErrorCode.PAYMENT_FAILED, message, expect=unpaid)
            self._release(request.id)
            return
        finally:
            entry.task = None
        if paid < price:
            message = f"received {paid} of {price} msat"
            await self._finish_error(request, ErrorCode.PAYMENT_FAILED, message, expect=unpaid)
            self._release(request.id)
            return
        if await self.store.transition(
            request.id, expect=unpaid, to=JobState.PAID, paid_msat=paid
        ) and await self.store.transition(request.id, expect=JobState.PAID, to=JobState.QUEUED):
            if not entry.kwargs:
                entry.kwargs = self.handler.bind(request)
            self._queue.put_nowait(entry)
        else:
            self._release(request.id)  # cancelled while we waited

    # -- running ------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            entry = await self._queue.get()
            try:
                async with asyncio.TaskGroup() as tg:
                    entry.task = tg.create_task(self._execute(entry))
            finally:
                self._release(entry.request.id)

    async def _execute(self, entry: _Entry) -> None:
        request = entry.request
        moved = await self.store.transition(
            request.id, expect=JobState.QUEUED, to=JobState.PROCESSING, add_attempt=True
        )
        if not moved:
            return  # cancelled or expired while queued
        self._running += 1
        try:
            content = await self._run_handler(entry)
        except asyncio.CancelledError:
            if entry.job.cancelled:
                return  # the customer cancelled; cancel() already answered
            raise
        except JobError as exc:
            await self._finish_error(request, exc.code, exc.message)
        except TimeoutError:
            await self._finish_error(
                request, ErrorCode.TIMEOUT, f"the job ran longer than {self.limits.job_timeout:g} s"
            )
        except Exception:
            # The traceback goes to our log only: it may quote inputs or configuration.
            log.exception("job %s: handler %s failed", request.id, self.handler.name)
            await self._finish_error(request, ErrorCode.INTERNAL_ERROR, "the DVM failed")
        else:
            await self._finish_success(request, content)
            self._latencies.append(time.monotonic() - entry.admitted)
        finally:
            self._running -= 1

    async def _run_handler(self, entry: _Entry) -> str:
        # The processing notice is a timer, not a task per job: most jobs finish before it.
        notice = asyncio.get_running_loop().call_later(
            self.limits.processing_notice, self._notice, entry.request
        )
        try:
            async with asyncio.timeout(self.limits.job_timeout):
                data = await inputs.resolve(
                    entry.request, pool=self.pool, limits=self.limits, store=self.store
                )
                try:
                    return await self.handler.call(entry.job, entry.kwargs, data)
                except TimeoutError:
                    # The handler's own timeout (say, of an HTTP call it made): at the job's
                    # limit the handler is cancelled instead. A failure of the handler.
                    log.error(
                        "job %s: handler %s timed out inside", entry.request.id, self.handler.name
                    )
                    raise JobError(ErrorCode.INTERNAL_ERROR, "the DVM failed") from None
        finally:
            notice.cancel()

    def _notice(self, request: JobRequest) -> None:
        # _spawn guards the report: a notice that cannot be sent never fails the job.
        if self._tg is not None:
            self._spawn(self._report(request, StatusKind.PROCESSING, "", None))

    async def _report(
        self, request: JobRequest, status: StatusKind, content: str, message: str | None
    ) -> None:
        """A processing or partial status: stored with the (unchanged) state, then sent."""
        event = self._sign(
            status_event(
                request,
                status,
                provider=self.me,
                created_at=int(self.clock()),
                content=content,
                message=message,
                keys=self.keys,
            )
        )
        if await self.store.transition(
            request.id,
            expect=JobState.PROCESSING,
            to=JobState.PROCESSING,
            outbox=[self._outbox(event, request)],
        ):
            await self._send(event, request.relays)

    async def _finish_success(self, request: JobRequest, content: str) -> None:
        now = int(self.clock())
        event = self._sign(
            result_event(request, content, provider=self.me, created_at=now, keys=self.keys)
        )
        if len(event.to_json_bytes()) > self.limits.compact_results_above:
            # A legacy result repeats the request (``request`` and ``i`` tags); with a large
            # request that can pass what relays accept. Clients link by ``e`` anyway.
            event = self._sign(
                result_event(
                    request, content, provider=self.me, created_at=now, keys=self.keys, compact=True
                )
            )
        if await self.store.transition(
            request.id,
            expect=JobState.PROCESSING,
            to=JobState.SUCCESS,
            outbox=[self._outbox(event, request)],
            result_event_id=event.id,
        ):
            self._counts["done"] += 1
            # Finished as of this commit: a re-publish from here on is answered from the store.
            self._release(request.id)
            await self._send(event, request.relays)

    async def _finish_error(
        self,
        request: JobRequest,
        code: str,
        message: str,
        *,
        expect: Sequence[JobState] = (JobState.PROCESSING,),
        to: JobState = JobState.ERROR,
    ) -> None:
        event = self._error_event(request, code, message)
        if await self.store.transition(
            request.id,
            expect=expect,
            to=to,
            outbox=[self._outbox(event, request)],
            error_code=str(code),
            error_message=message,
        ):
            self._counts["failed"] += 1
            self._release(request.id)
            await self._send(event, request.relays)

    async def _reject(
        self, request: JobRequest, code: str, message: str, *, store: bool = False
    ) -> None:
        """Answer ``error`` without running. ``store``: remember it, so a re-sent request
        gets the same answer (bad input); rate limits are not remembered (retrying helps)."""
        self._counts["rejected"] += 1
        event = self._error_event(request, code, message)
        if store:
            record = self._record(
                request, JobState.ERROR, error_code=str(code), error_message=message
            )
            if not await self.store.insert(record, outbox=[self._outbox(event, request)]):
                await self._resend(request.id)
                return
        await self._send(event, request.relays)

    def _record(self, request: JobRequest, state: JobState, **fields: Any) -> JobRecord:
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
            **fields,
        )

    def _error_event(self, request: JobRequest, code: str, message: str) -> Event:
        return self._sign(
            status_event(
                request,
                StatusKind.ERROR,
                provider=self.me,
                created_at=int(self.clock()),
                code=code,
                message=message,
                keys=self.keys,
            )
        )

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, job_id: str, *, by: str) -> bool:
        """Cancel a queued or running job at its customer's request; answer ``cancelled``."""
        record = await self.store.get(job_id)
        if record is None or record.customer != by or record.state.terminal:
            return False
        entry = self._active.get(job_id)
        request = entry.request if entry is not None else self._reparse(record)
        if request is None:
            return False
        event = self._sign(
            status_event(
                request,
                StatusKind.CANCELLED,
                provider=self.me,
                created_at=int(self.clock()),
                keys=self.keys,
            )
        )
        moved = await self.store.transition(
            job_id,
            expect=_NOT_FINISHED,
            to=JobState.CANCELLED,
            outbox=[self._outbox(event, request)],
        )
        if not moved:
            return False
        self._counts["cancelled"] += 1
        if entry is not None:
            entry.job._cancel()
            if entry.task is not None:
                entry.task.cancel()
        await self._send(event, request.relays)
        return True

    # -- sending ------------------------------------------------------------------------------

    def _sign(self, template: UnsignedEvent) -> Event:
        return template.sign(self.keys)

    def _outbox(self, event: Event, request: JobRequest) -> OutboxEvent:
        return OutboxEvent.from_event(event, request.relays)

    async def _send(self, event: Event, extra: Sequence[str]) -> None:
        """Publish to our relays and the request's ``relays``, then mark the event sent."""
        # The pool knows relays by their normal form (relay_url); so must the targets.
        targets = [relay_url(url) for url in self.relays]
        for raw in extra:
            try:
                url = relay_url(raw)
            except DVMError:
                continue  # from the request (untrusted): no relay can be dialled at it
            if url in targets:
                continue
            if url in self.pool.relays:
                targets.append(url)
            elif len(self.pool.relays) < len(self.relays) + self.limits.extra_relays:
                try:
                    await self.pool.add_relay(url)
                    targets.append(url)
                except DVMError:
                    pass
        targets = [t for t in dict.fromkeys(targets) if t in self.pool.relays]
        result = await self.pool.publish(event, wait="first", relays=targets)
        if result.ok:
            # Marked sent in batches: a store round trip per event would cost a quarter of
            # a quick job. Unmarked ids left by a crash are re-sent, same ids (harmless).
            self._sent.append(event.id)
            self._sent_ready.set()
        else:
            log.warning("event %s reached no relay; it stays in the outbox", event.id)

    async def _mark_sent_batches(self) -> None:
        while True:
            await self._sent_ready.wait()
            self._sent_ready.clear()
            batch, self._sent = self._sent, []
            await self.store.mark_sent(batch)

    async def _resend(self, job_id: str) -> None:
        """A request seen again: send what was already said about it, with the same ids."""
        for item in await self.store.job_events(job_id):
            try:
                await self._send(Event.from_json(item.event_json), item.relays)
            except DVMError:
                continue

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        assert self._tg is not None, "the engine is not running"
        self._tg.create_task(_guarded(coro))

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> ProviderStats:
        ordered = sorted(self._latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return ProviderStats(
            running=self._running,
            queued=self._queue.qsize(),
            done=self._counts["done"],
            failed=self._counts["failed"],
            cancelled=self._counts["cancelled"],
            rejected=self._counts["rejected"],
            ignored=self._counts["ignored"],
            latency_p50_ms=pct(0.5),
            latency_p99_ms=pct(0.99),
        )


async def _guarded(coro: Coroutine[Any, Any, Any]) -> None:
    # A relay or payment failure ends one job's errand, not the DVM. Anything else is a bug
    # and propagates (the TaskGroup stops the DVM rather than run on in an unknown state).
    try:
        await coro
    except DVMError as exc:
        log.warning("%s", exc)


async def _set_when_stored(stored: Coroutine[Any, Any, None], ready: asyncio.Event) -> None:
    await stored
    ready.set()
