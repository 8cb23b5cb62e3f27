"""The provider's engine: receive, admit, run, answer, in both dialects, durably.

One engine serves one DVM. Requests arrive through one relay-pool subscription; each is
checked, parsed and admitted into the job store (the request id is the job's identity, so a
request seen on five relays, or re-published, runs once), queued, and run by a bounded set of
workers. Every state change is committed together with the signed event that announces it
before that event is published (DESIGN.md §5), so after a crash :meth:`Engine.resume` re-runs
unfinished jobs and re-sends unsent events with their original ids. Committing and
announcing is the :class:`~dvmkit.provider.ledger.Ledger`'s job, publishing the
:class:`~dvmkit.provider.sender.Sender`'s, and payment the
:class:`~dvmkit.provider.checkout.Checkout`'s; the engine decides what happens to each job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Literal

from dvmkit.errors import DVMError, JobError, ProtocolError
from dvmkit.nostr import nip40
from dvmkit.nostr.event import Event
from dvmkit.nostr.giftwrap import MAX_BACKDATE
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import WRAP_KINDS, Envelope, open_wrap
from dvmkit.protocol.job import (
    MODERN_KIND,
    Dialect,
    ErrorCode,
    JobRequest,
    StatusKind,
    answerable_request,
    encryption_scheme,
    parse_request,
)
from dvmkit.protocol.legacy import decrypt_legacy_params
from dvmkit.protocol.payment import PAYMENT_STATUS
from dvmkit.provider import inputs
from dvmkit.provider.checkout import Checkout
from dvmkit.provider.config import Limits, Paid, PaymentProcessor, Price
from dvmkit.provider.handler import Handler
from dvmkit.provider.held import Held, HeldJobs
from dvmkit.provider.ledger import Ledger
from dvmkit.provider.pricing import price_of
from dvmkit.provider.sender import Sender
from dvmkit.provider.stats import Counters, ProviderStats
from dvmkit.relay.pool import RelayPool
from dvmkit.store import OWED, JobRecord, JobState, JobStore

log = logging.getLogger("dvmkit.provider")

_NOT_FINISHED = frozenset(s for s in JobState if not s.terminal)
_UNPAID = frozenset({JobState.RECEIVED, JobState.PAYMENT_REQUIRED})
#: Unsent outbox events read per store call while resuming.
_OUTBOX_PAGE = 1000

#: ``optional``: plain and private jobs; ``required``: private jobs only (gift-wrapped, or
#: NIP-90 encrypted params); ``off``: gift wraps are not read (legacy encrypted params still are).
Encryption = Literal["optional", "required", "off"]


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
        offers: bool = False,
        offer_eta: int | None = None,
        encryption: Encryption = "optional",
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
        self.offers = offers
        self.offer_eta = offer_eta
        self.encryption = encryption
        self.clock = clock
        self._queue: asyncio.Queue[Held] = asyncio.Queue()
        self._running = 0
        self._stats = Counters()
        self._counts = self._stats.counts
        self._tg: asyncio.TaskGroup | None = None
        self.sender = Sender(
            pool=pool, store=store, relays=relays, extra_relays=limits.extra_relays
        )
        self.ledger = Ledger(
            keys=keys,
            store=store,
            sender=self.sender,
            counts=self._counts,
            on_final=self._release,
            compact_results_above=limits.compact_results_above,
            clock=clock,
        )
        self.held = HeldJobs(self.ledger.report)
        self.checkout = (
            None
            if payments is None
            else Checkout(
                keys=keys,
                payments=payments,
                store=store,
                ledger=self.ledger,
                sender=self.sender,
                limits=limits,
                held=self.held,
                counts=self._counts,
                enqueue=self._queue.put_nowait,
                bind=handler.bind,
            )
        )

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

    def wrap_filter(self, since: int) -> dict[str, Any]:
        """Gift wraps addressed to the DVM: private requests and their cancellations.

        A stored (1059) wrap's ``created_at`` may be up to two days in the past (NIP-59), so
        the window reaches that much further back than ``since``.
        """
        return {"kinds": sorted(WRAP_KINDS), "#p": [self.me], "since": since - MAX_BACKDATE}

    async def run(self, ready: asyncio.Event) -> None:
        """Resume, then serve until cancelled. Sets ``ready`` once the DVM is listening."""
        async with contextlib.AsyncExitStack() as serving, asyncio.TaskGroup() as tg:
            if self.payments is not None:
                # Connected (wallet, mint, receipts) before resume: waiting jobs confirm now.
                await serving.enter_async_context(self.payments.serving(self.pool, self.keys))
            self._tg = tg
            tg.create_task(self.sender.run(), name="dvm outbox marker")
            await self.resume()
            for n in range(self.limits.concurrency):
                tg.create_task(self._worker(), name=f"dvm worker {n}")
            since = int(self.clock()) - self.limits.request_lookback
            async with contextlib.AsyncExitStack() as subs:
                sub = await subs.enter_async_context(self.pool.subscribe(*self.filters(since)))
                stored = [sub.wait_stored()]
                if self.encryption != "off":
                    # Its own subscription: after a reconnect it must not be narrowed to
                    # "since the gap" (wraps are back-dated), unlike the one above.
                    wraps = await subs.enter_async_context(
                        self.pool.subscribe(self.wrap_filter(since), rewrite_since=False)
                    )
                    stored.append(wraps.wait_stored())
                    tg.create_task(self._read(wraps), name="dvm wraps")
                # Read while waiting for EOSE: stored requests may outnumber the queue.
                tg.create_task(_set_when_stored(asyncio.gather(*stored), ready))
                await self._read(sub)

    async def _read(self, sub: AsyncIterable[Event]) -> None:
        async for event in sub:
            self.on_event(event)

    async def resume(self) -> None:
        """After a restart: re-queue unfinished jobs and re-send events never marked sent."""
        for record in await self.store.unfinished():
            request = self._reparse(record)
            if request is None:
                continue
            if record.refund == OWED:
                # It failed and was being refunded when the DVM stopped: whether the refund
                # left is unknown, so it is owed (dvm jobs --owed), never run or paid again.
                message = "the DVM stopped while refunding this job; the payment is owed to you"
                await self.ledger.fail(
                    request, ErrorCode.INTERNAL_ERROR, message, expect=(record.state,), refund=OWED
                )
                continue
            if record.state is JobState.PAYMENT_REQUIRED and self.checkout is not None:
                self._spawn(self.checkout.wait(request, record.price_msat, record.payment_ref))
                continue
            if record.state is JobState.PAYMENT_REQUIRED:
                await self.ledger.fail(
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
                await self.ledger.fail(request, exc.code, exc.message, expect=(JobState.QUEUED,))
                continue
            entry = self.held.hold(request)
            entry.kwargs = kwargs
            if record.paid_msat:
                # Enough to refund it (amount and method); its ledger key is not needed again.
                entry.paid = Paid(record.paid_msat, record.payment_method or "", "")
            self._queue.put_nowait(entry)
        # Page by seq to the end: one call returns at most a page, and a long outage can
        # leave more unsent than that.
        after = 0
        while page := await self.store.pending_outbox(limit=_OUTBOX_PAGE, after=after):
            for item in page:
                try:
                    event = Event.from_json(item.event_json)
                except DVMError:
                    continue
                await self.sender.send(event, item.relays)
            after = page[-1].seq

    def _reparse(self, record: JobRecord) -> JobRequest | None:
        try:
            event = Event.from_json(record.request)
            envelope = None if record.envelope is None else Envelope.parse(record.envelope)
            return self._parse(event, envelope)
        except (DVMError, ValueError):
            log.warning("job %s: stored request no longer parses; leaving it", record.id)
            return None

    # -- receiving ----------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Route one verified event from the subscriptions (never blocks)."""
        if event.kind in WRAP_KINDS:
            self._on_wrap(event)
        else:
            self._on_request(event, None)

    def _on_wrap(self, wrap: Event) -> None:
        """A gift wrap: a private request or cancellation, if it opens and checks out.

        One that does not (not for us, forged, tampered, an inner signature or seal that does
        not match its claimed author) is dropped unanswered: there is no one we could answer
        without trusting what failed the check.
        """
        if self.encryption == "off":
            self._counts["ignored"] += 1
            return
        try:
            # The pool verified the wrap's signature on receipt: not twice.
            opened = open_wrap(wrap, self.keys, verified=True)
        except ProtocolError as exc:
            self._counts["refused_wraps"] += 1
            log.debug("wrap %s refused: %s", wrap.id, exc)
            return
        inner = opened.event
        if (
            inner.kind in WRAP_KINDS
            or inner.created_at < self.clock() - self.limits.request_lookback
        ):
            # A wrap in a wrap is nobody's request. The inner event's time is the real one
            # (only wraps and seals are back-dated): one older than the look-back window is a
            # stored wrap read again, which in the clear we would not have read either.
            self._counts["ignored"] += 1
            return
        self._on_request(inner, opened.envelope)

    def _on_request(self, event: Event, envelope: Envelope | None) -> None:
        if event.kind == 5:
            for target in event.tag_values("e"):
                self._spawn(self.cancel(target, by=event.pubkey))
            return
        status = event.tag_value("status") if event.kind == MODERN_KIND else None
        if status is not None:
            if status == "cancel":
                for target in event.tag_values("e"):
                    self._spawn(self.cancel(target, by=event.pubkey))
            elif status == PAYMENT_STATUS:
                if self.checkout is None:
                    self._counts["ignored"] += 1  # this DVM takes no payments
                else:
                    self.checkout.on_payment(event)
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
        if event.id in self.held:
            return  # already queued or running here
        targeted = envelope is not None or self.me in event.tag_values("p")
        if event.kind == MODERN_KIND and not targeted:
            # An open request for another category is not ours, whatever else is wrong with it.
            category = event.tag_value("category") or event.tag_value("t")
            if category not in self.categories:
                self._counts["ignored"] += 1
                return
        try:
            request = self._parse(event, envelope)
        except ProtocolError:
            self._counts["ignored"] += 1
            return
        except JobError as exc:
            answerable = answerable_request(event, envelope=envelope)
            self._spawn(self.ledger.reject(answerable, exc.code, exc.message, store=True))
            return
        if self.encryption == "required" and not request.private:
            if request.is_open:
                self._counts["ignored"] += 1  # others of the category may take it in the clear
                return
            message = (
                "this DVM takes private jobs only: gift-wrap the request to it (NIP-59), or "
                "encrypt a NIP-90 request's params"
            )
            self._spawn(
                self.ledger.reject(request, ErrorCode.POLICY_VIOLATION, message, store=True)
            )
            return
        self._admit(request)

    def _parse(self, event: Event, envelope: Envelope | None = None) -> JobRequest:
        decrypted = None
        if event.kind != MODERN_KIND and encryption_scheme(event) is not None:
            decrypted = decrypt_legacy_params(event, self.keys)
        request = parse_request(
            event, provider=self.me, decrypted_tags=decrypted, envelope=envelope
        )
        if envelope is not None and request.is_open:
            # A wrap has one recipient: a request wrapped to us is for us, p tag or not.
            request = dataclasses.replace(request, providers=(self.me,))
        return request

    def _admit(self, request: JobRequest) -> None:
        try:
            kwargs = self.handler.bind(request)
        except JobError as exc:
            self._spawn(self.ledger.reject(request, exc.code, exc.message, store=True))
            return
        if self.offers and request.event.kind == MODERN_KIND and request.is_open:
            # DESIGN.md §4.2: an open request is bid on, not run; the customer compares the
            # offers and sends the winner a targeted request (a new job, admitted below).
            self._spawn(self._offer(request))
            return
        if len(self.held) >= self.limits.max_queue + self.limits.concurrency:
            self._spawn(
                self.ledger.reject(request, ErrorCode.RATE_LIMITED, "the DVM is full; retry")
            )
            return
        if self.held.of(request.customer) >= self.limits.per_customer:
            message = f"at most {self.limits.per_customer} jobs per customer at once; retry"
            self._spawn(self.ledger.reject(request, ErrorCode.RATE_LIMITED, message))
            return
        entry = self.held.hold(request)
        entry.kwargs = kwargs
        self._spawn(self._store_new(entry))

    def _release(self, job_id: str) -> None:
        # Also the ledger's on_final, which is built before self.held exists.
        self.held.release(job_id)

    async def _store_new(self, entry: Held) -> None:
        request = entry.request
        try:
            price = await self._price(request)
        except Exception:
            # The developer's price function failed: like a failing handler, this job ends
            # INTERNAL_ERROR (details in our log only) and the DVM serves on.
            log.exception("job %s: the price function failed", request.id)
            self._release(request.id)
            await self.ledger.reject(request, ErrorCode.INTERNAL_ERROR, "the DVM failed")
            return
        if price and await self.store.get(request.id) is not None:
            # Seen before (re-sent, or read again after a restart): answered from the store,
            # and never with a second invoice. Free jobs learn this from the insert instead.
            self._release(request.id)
            await self.sender.resend(request.id)
            return
        bid = request.bid_msat
        if price and bid is not None and bid < price and request.dialect is Dialect.MODERN:
            # A bid below the price gets an offer, not work: the customer may send the job
            # again with a bid that covers it. (NIP-90 has no offer: a legacy job is asked
            # for payment, which is how NIP-90 names its price, and runs only once paid.)
            self._release(request.id)
            await self._send_offer(request, price)
            return
        state = JobState.QUEUED if price == 0 else JobState.PAYMENT_REQUIRED
        record = self.ledger.record(request, state, price_msat=price)
        if price == 0:
            if await self.store.insert(record):
                self._queue.put_nowait(entry)
            else:
                self._release(request.id)
                await self.sender.resend(request.id)
            return
        assert self.checkout is not None  # DVM refuses a price without a payment processor
        await self.checkout.ask(entry, record, price)

    async def _offer(self, request: JobRequest) -> None:
        """Answer an open request with ``offer`` (price, ETA, payment methods); run nothing.

        An offer is not a job transition: nothing is stored, and a full DVM stays silent
        rather than promise work it would refuse.
        """
        if len(self.held) >= self.limits.max_queue + self.limits.concurrency:
            self._counts["ignored"] += 1
            return
        try:
            price = await self._price(request)
        except Exception:
            log.exception("job %s: the price function failed; no offer made", request.id)
            return
        await self._send_offer(request, price)

    async def _send_offer(self, request: JobRequest, price: int) -> None:
        methods = tuple(self.payments.methods) if price and self.payments is not None else ()
        event = self.ledger.status(
            request, StatusKind.OFFER, amount_msat=price, methods=methods, eta_seconds=self._eta()
        )
        self._counts["offered"] += 1
        await self.sender.send(event, request.relays)

    def _eta(self) -> int | None:
        """The configured ETA, else the median latency observed so far (None before any)."""
        if self.offer_eta is not None:
            return self.offer_eta
        p50 = self._stats.snapshot(running=0, queued=0).latency_p50_ms
        return None if p50 is None else max(1, math.ceil(p50 / 1000))

    async def _price(self, request: JobRequest) -> int:
        return await price_of(self.price, request, store=self.store, now=self.clock())

    # -- running ------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            entry = await self._queue.get()
            try:
                async with asyncio.TaskGroup() as tg:
                    entry.task = tg.create_task(self._execute(entry))
            finally:
                self._release(entry.request.id)

    async def _execute(self, entry: Held) -> None:
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
            await self._fail(entry, exc.code, exc.message)
        except TimeoutError:
            limit = f"the job ran longer than {self.limits.job_timeout:g} s"
            await self._fail(entry, ErrorCode.TIMEOUT, limit)
        except Exception:
            # The traceback goes to our log only: it may quote inputs or configuration.
            log.exception("job %s: handler %s failed", request.id, self.handler.name)
            await self._fail(entry, ErrorCode.INTERNAL_ERROR, "the DVM failed")
        else:
            await self.ledger.succeed(request, content)
            self._stats.latencies.append(time.monotonic() - entry.admitted)
        finally:
            self._running -= 1

    async def _fail(self, entry: Held, code: str, message: str) -> None:
        if entry.paid is None or self.checkout is None:
            await self.ledger.fail(entry.request, code, message)
        else:
            await self.checkout.fail_paid(entry, code, message)

    async def _run_handler(self, entry: Held) -> str:
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
            self._spawn(self.ledger.report(request, StatusKind.PROCESSING, "", None))

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, job_id: str, *, by: str) -> bool:
        """Cancel a queued or running job at its customer's request; answer ``cancelled``."""
        for _ in range(2):
            record = await self.store.get(job_id)
            if record is None or record.customer != by or record.state.terminal:
                return False
            entry = self.held.get(job_id)
            request = entry.request if entry is not None else self._reparse(record)
            if request is None:
                return False
            # A paid job cancelled before its result is owed its money back. The payment may
            # commit between the read and the cancel: an unpaid priced job is cancelled only
            # while still unpaid, and read again (now paid) when that fails.
            if record.paid_msat:
                expect, fields = _NOT_FINISHED, {"refund": OWED}
            elif record.price_msat:
                expect, fields = _UNPAID, {}
            else:
                expect, fields = _NOT_FINISHED, {}
            if await self.ledger.cancelled(request, expect=expect, **fields):
                break
        else:
            return False
        if entry is not None:
            entry.job._cancel()
            if entry.task is not None:
                entry.task.cancel()
        return True

    # -- helpers ----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        assert self._tg is not None, "the engine is not running"
        self._tg.create_task(_guarded(coro))

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> ProviderStats:
        return self._stats.snapshot(running=self._running, queued=self._queue.qsize())


async def _guarded(coro: Coroutine[Any, Any, Any]) -> None:
    # A relay or payment failure ends one job's errand, not the DVM. Anything else is a bug
    # and propagates (the TaskGroup stops the DVM rather than run on in an unknown state).
    try:
        await coro
    except DVMError as exc:
        log.warning("%s", exc)


async def _set_when_stored(stored: Awaitable[Any], ready: asyncio.Event) -> None:
    await stored
    ready.set()
