"""The provider's engine: receive, admit, run, answer, in both dialects, durably.

One engine serves one DVM. Requests arrive through one relay-pool subscription; each is
checked, parsed and admitted into the job store (the request id is the job's identity, so a
request seen on five relays, or re-published, runs once), queued, and run by a bounded set of
workers. Every state change is committed together with the signed event that announces it
before that event is published (DESIGN.md §5), so after a crash :meth:`Engine.resume` re-runs
unfinished jobs and re-sends unsent events with their original ids. Committing and
announcing is the :class:`~dvmkit.provider.ledger.Ledger`'s job, publishing the
:class:`~dvmkit.provider.sender.Sender`'s; the engine decides what happens to each job.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dvmkit.errors import DVMError, JobError, PaymentError, ProtocolError
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
from dvmkit.protocol.payment import PAYMENT_STATUS, ZAP, read_payment, refund_tag
from dvmkit.provider import inputs
from dvmkit.provider.config import Limits, Paid, PaymentProcessor, PaymentRequest, Price
from dvmkit.provider.handler import Handler
from dvmkit.provider.job import Job
from dvmkit.provider.ledger import Ledger
from dvmkit.provider.pricing import price_of
from dvmkit.provider.sender import Sender
from dvmkit.provider.stats import Counters, ProviderStats
from dvmkit.relay.pool import RelayPool
from dvmkit.store import OWED, REFUNDED, JobRecord, JobState, JobStore, PaymentEntry

log = logging.getLogger("dvmkit.provider")

_NOT_FINISHED = frozenset(s for s in JobState if not s.terminal)
_UNPAID = frozenset({JobState.RECEIVED, JobState.PAYMENT_REQUIRED})

#: ``optional``: plain and private jobs; ``required``: private jobs only (gift-wrapped, or
#: NIP-90 encrypted params); ``off``: gift wraps are not read (legacy encrypted params still are).
Encryption = Literal["optional", "required", "off"]


@dataclass(eq=False, slots=True)
class _Entry:
    """A job this process holds in memory while it is queued or running."""

    request: JobRequest
    job: Job
    admitted: float  # monotonic time, for latency
    task: asyncio.Task[None] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    unpaid: bool = False  # payment-required was committed: payment messages are taken
    paid: Paid | None = None  # what it was paid, for a refund if it fails


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
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._active: dict[str, _Entry] = {}
        self._per_customer: collections.Counter[str] = collections.Counter()
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
            if record.state is JobState.PAYMENT_REQUIRED and self.payments is not None:
                self._spawn(self._await_payment(request, record.price_msat, record.payment_ref))
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
            entry = self._hold(request)
            entry.kwargs = kwargs
            if record.paid_msat:
                # Enough to refund it (amount and method); its ledger key is not needed again.
                entry.paid = Paid(record.paid_msat, record.payment_method or "", "")
            self._queue.put_nowait(entry)
        for item in await self.store.pending_outbox():
            try:
                event = Event.from_json(item.event_json)
            except DVMError:
                continue
            await self.sender.send(event, item.relays)

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
                self._on_payment(event)
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

    def _on_payment(self, event: Event) -> None:
        """A customer's payment message (a Cashu token): handed to the processor of its
        method if it is for a job of that customer's waiting here for payment."""
        try:
            if self.payments is None:
                raise ProtocolError("this DVM takes no payments")
            message = read_payment(event, self.keys)
        except ProtocolError as exc:
            self._counts["ignored"] += 1
            log.debug("payment %s ignored: %s", event.id, exc)
            return
        entry = self._active.get(message.job_id)
        if entry is None or not entry.unpaid or entry.request.customer != message.payer:
            # Money for no job of ours, or a job of someone else's: nothing to release.
            self._counts["ignored"] += 1
            return
        if not self.payments.deliver(message):
            self._counts["ignored"] += 1

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
        if len(self._active) >= self.limits.max_queue + self.limits.concurrency:
            self._spawn(
                self.ledger.reject(request, ErrorCode.RATE_LIMITED, "the DVM is full; retry")
            )
            return
        if self._per_customer[request.customer] >= self.limits.per_customer:
            message = f"at most {self.limits.per_customer} jobs per customer at once; retry"
            self._spawn(self.ledger.reject(request, ErrorCode.RATE_LIMITED, message))
            return
        entry = self._hold(request)
        entry.kwargs = kwargs
        self._spawn(self._store_new(entry))

    def _hold(self, request: JobRequest) -> _Entry:
        entry = _Entry(request, Job(request, self.ledger.report), time.monotonic())
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
        await self._ask_payment(entry, record, price)

    async def _offer(self, request: JobRequest) -> None:
        """Answer an open request with ``offer`` (price, ETA, payment methods); run nothing.

        An offer is not a job transition: nothing is stored, and a full DVM stays silent
        rather than promise work it would refuse.
        """
        if len(self._active) >= self.limits.max_queue + self.limits.concurrency:
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

    # -- payment hook -------------------------------------------------------------------------

    async def _ask_payment(self, entry: _Entry, record: JobRecord, price: int) -> None:
        request = entry.request
        assert self.payments is not None  # DVM refuses a price without a payment processor
        try:
            expires_in = math.ceil(self.limits.payment_timeout)
            payment = await self.payments.request(request.id, price, request, expires_in=expires_in)
        except PaymentError as exc:
            self._release(request.id)
            await self.ledger.reject(
                request, ErrorCode.SERVICE_UNAVAILABLE, f"cannot take payment: {exc}"
            )
            return
        except Exception:
            # A payment backend's own bug ends this job's errand, not the DVM.
            log.exception("job %s: the payment processor failed to ask for payment", request.id)
            self._release(request.id)
            await self.ledger.reject(
                request, ErrorCode.SERVICE_UNAVAILABLE, "cannot take payment now"
            )
            return
        bid = request.bid_msat
        below = bid is not None and bid < price
        methods = payment.methods
        if request.private:
            # A zap request is a public event naming the DVM and the job: paying a private
            # job that way would undo its privacy, so it is not offered.
            methods = tuple(m for m in methods if m != ZAP)
        event = self.ledger.status(
            request,
            StatusKind.PAYMENT_REQUIRED,
            amount_msat=payment.amount_msat,
            bolt11=payment.bolt11,
            methods=methods,
            method_details=dict(payment.details),
            message=f"your bid of {bid} msat is below the price" if below else None,
        )
        ref = payment.reference or payment.bolt11
        stored = dataclasses.replace(record, payment_ref=ref)
        if not await self.store.insert(stored, outbox=[self.ledger.outbox(event, request)]):
            self._release(request.id)
            await self.sender.resend(request.id)
            return
        entry.unpaid = True
        await self.sender.send(event, request.relays)
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
        entry.unpaid = True
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
            await self.ledger.fail(
                request, ErrorCode.PAYMENT_TIMEOUT, message, expect=unpaid, to=JobState.EXPIRED
            )
            self._release(request.id)
            return
        except PaymentError as exc:
            await self.ledger.fail(request, ErrorCode.PAYMENT_FAILED, str(exc), expect=unpaid)
            self._release(request.id)
            return
        except Exception:
            log.exception("job %s: the payment processor failed to confirm", request.id)
            message = "the payment could not be confirmed"
            await self.ledger.fail(request, ErrorCode.PAYMENT_FAILED, message, expect=unpaid)
            self._release(request.id)
            return
        finally:
            entry.task = None
        entry.unpaid = False
        ledger_row = PaymentEntry(paid.key, request.id, paid.method, paid.amount_msat)
        if paid.amount_msat < price:
            # Money came, but not enough: recorded and owed back, never silently kept.
            message = f"received {paid.amount_msat} of {price} msat; it is owed back to you"
            if not await self.ledger.fail(
                request,
                ErrorCode.PAYMENT_FAILED,
                message,
                expect=unpaid,
                refund=OWED,
                paid_msat=paid.amount_msat,
                payment_method=paid.method,
                payment=ledger_row,
            ):
                await self._not_entered(request, ledger_row)
            self._release(request.id)
            return
        moved = await self.store.transition(
            request.id,
            expect=unpaid,
            to=JobState.PAID,
            paid_msat=paid.amount_msat,
            payment_method=paid.method,
            payment=ledger_row,
        )
        if not moved:
            await self._not_entered(request, ledger_row)
            self._release(request.id)
            return
        entry.paid = paid
        if await self.store.transition(request.id, expect=JobState.PAID, to=JobState.QUEUED):
            if not entry.kwargs:
                entry.kwargs = self.handler.bind(request)
            self._queue.put_nowait(entry)
        else:
            self._release(request.id)  # cancelled while we waited

    async def _not_entered(self, request: JobRequest, payment: PaymentEntry) -> None:
        """A confirmed payment the ledger did not take with the job's transition: either its
        key was used before (the job still waits: it fails), or the job ended while the
        payment came (a cancel racing it): then it is entered late, and owed."""
        unpaid = (JobState.PAYMENT_REQUIRED,)
        record = await self.store.get(request.id)
        if record is not None and record.state is JobState.PAYMENT_REQUIRED:
            # This payment (a zap receipt, an invoice, a token) already released a job.
            message = "that payment was already used for a job; pay this one"
            await self.ledger.fail(request, ErrorCode.PAYMENT_FAILED, message, expect=unpaid)
        elif await self.store.late_payment(payment):
            log.warning(
                "job %s: %d msat arrived after it ended; recorded as owed",
                request.id,
                payment.amount_msat,
            )

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

    async def _fail(self, entry: _Entry, code: str, message: str) -> None:
        """End a running job ``error``; a paid one is refunded where its method allows, and
        otherwise recorded as owed (``dvm jobs --owed``)."""
        request, paid = entry.request, entry.paid
        if paid is None or self.payments is None:
            await self.ledger.fail(request, code, message)
            return
        # The intent is committed before any money moves: if the DVM stops mid-refund, the
        # job is owed on restart (resume), never run again nor refunded twice.
        if not await self.store.transition(
            request.id, expect=JobState.PROCESSING, to=JobState.PROCESSING, refund=OWED
        ):
            return
        refund = None
        try:
            refund = await self.payments.refund(request, paid)
        except DVMError as exc:
            log.warning("job %s: refund of %d msat failed: %s", request.id, paid.amount_msat, exc)
        except Exception:
            log.exception("job %s: the payment processor failed to refund", request.id)
        if refund is None:
            owed = f"{message}; the {paid.amount_msat} msat you paid are owed to you"
            await self.ledger.fail(request, code, owed, refund=OWED)
            return
        tag = refund_tag(self.keys, request.customer, refund)
        await self.ledger.fail(request, code, message, refund=REFUNDED, extra_tags=(tag,))

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
            self._spawn(self.ledger.report(request, StatusKind.PROCESSING, "", None))

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, job_id: str, *, by: str) -> bool:
        """Cancel a queued or running job at its customer's request; answer ``cancelled``."""
        for _ in range(2):
            record = await self.store.get(job_id)
            if record is None or record.customer != by or record.state.terminal:
                return False
            entry = self._active.get(job_id)
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
