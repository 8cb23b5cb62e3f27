"""Payment for a priced job: ask, wait for the DVM's own confirmation, then queue; refund or
owe when a paid job fails.

The order is the guarantee (DESIGN.md §5): ``payment-required`` is committed with its event
before it is sent; a payment counts only when the :class:`PaymentProcessor` confirms it (the
DVM's own wallet, mint or LNURL server, never the customer's word), and it is entered in the
store's payment ledger, under its unique key, in the same transaction that marks the job
paid. Only then is the job queued. A payment that arrives for a job that already ended is
entered late and owed; one whose key was used before releases nothing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

from dvmkit.errors import DVMError, PaymentError, ProtocolError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import ErrorCode, JobRequest, StatusKind
from dvmkit.protocol.payment import ZAP, read_payment, refund_tag
from dvmkit.provider.config import Limits, PaymentProcessor, PaymentRequest
from dvmkit.provider.held import Held, HeldJobs
from dvmkit.provider.ledger import Ledger
from dvmkit.provider.sender import Sender
from dvmkit.store import OWED, REFUNDED, JobRecord, JobState, JobStore, PaymentEntry

log = logging.getLogger("dvmkit.provider")

_UNPAID = (JobState.PAYMENT_REQUIRED,)


class Checkout:
    """The payment side of one DVM's engine. Owned by :class:`~dvmkit.provider.engine.Engine`.

    Args:
        held: the engine's jobs in memory; a job waiting for payment is held here too.
        enqueue: queues a paid job for a worker.
        bind: the handler's arguments for a request (a job resumed after a restart has none
            bound yet).
    """

    def __init__(
        self,
        *,
        keys: Keys,
        payments: PaymentProcessor,
        store: JobStore,
        ledger: Ledger,
        sender: Sender,
        limits: Limits,
        held: HeldJobs,
        counts: collections.Counter[str],
        enqueue: Callable[[Held], None],
        bind: Callable[[JobRequest], dict[str, Any]],
    ) -> None:
        self.keys = keys
        self.payments = payments
        self.store = store
        self.ledger = ledger
        self.sender = sender
        self.limits = limits
        self.held = held
        self._counts = counts
        self._enqueue = enqueue
        self._bind = bind

    def on_payment(self, event: Event) -> None:
        """A customer's payment message (a Cashu token): handed to the processor of its
        method if it is for a job of that customer's waiting here for payment."""
        try:
            message = read_payment(event, self.keys)
        except ProtocolError as exc:
            self._counts["ignored"] += 1
            log.debug("payment %s ignored: %s", event.id, exc)
            return
        held = self.held.get(message.job_id)
        if held is None or not held.unpaid or held.request.customer != message.payer:
            # Money for no job of ours, or a job of someone else's: nothing to release.
            self._counts["ignored"] += 1
            return
        if not self.payments.deliver(message):
            self._counts["ignored"] += 1

    async def ask(self, held: Held, record: JobRecord, price: int) -> None:
        """Ask for ``price`` (``record`` is the new job, not yet stored), then wait for it."""
        request = held.request
        try:
            expires_in = math.ceil(self.limits.payment_timeout)
            payment = await self.payments.request(request.id, price, request, expires_in=expires_in)
        except PaymentError as exc:
            self.held.release(request.id)
            await self.ledger.reject(
                request, ErrorCode.SERVICE_UNAVAILABLE, f"cannot take payment: {exc}"
            )
            return
        except Exception:
            # A payment backend's own bug ends this job's errand, not the DVM.
            log.exception("job %s: the payment processor failed to ask for payment", request.id)
            self.held.release(request.id)
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
            self.held.release(request.id)
            await self.sender.resend(request.id)
            return
        held.unpaid = True
        await self.sender.send(event, request.relays)
        await self.wait(request, price, ref, payment)

    async def wait(
        self,
        request: JobRequest,
        price: int,
        ref: str | None,
        payment: PaymentRequest | None = None,
    ) -> None:
        """Wait for the payment of a job in ``payment-required`` (just asked, or resumed after
        a restart), up to ``Limits.payment_timeout``; queue it once paid in full."""
        held = self.held.get(request.id) or self.held.hold(request)
        # The engine's cancel() cancels held.task: a customer who cancels stops this wait too.
        held.task = asyncio.current_task()
        payment = payment or PaymentRequest(price, tuple(self.payments.methods), reference=ref)
        held.unpaid = True
        try:
            async with asyncio.timeout(self.limits.payment_timeout):
                paid = await self.payments.confirm(request.id, payment)
        except asyncio.CancelledError:
            if not held.job.cancelled:
                raise
            self.held.release(request.id)
            return
        except TimeoutError:
            message = "payment was not confirmed in time; send the job again to retry"
            await self.ledger.fail(
                request, ErrorCode.PAYMENT_TIMEOUT, message, expect=_UNPAID, to=JobState.EXPIRED
            )
            self.held.release(request.id)
            return
        except PaymentError as exc:
            await self.ledger.fail(request, ErrorCode.PAYMENT_FAILED, str(exc), expect=_UNPAID)
            self.held.release(request.id)
            return
        except Exception:
            log.exception("job %s: the payment processor failed to confirm", request.id)
            message = "the payment could not be confirmed"
            await self.ledger.fail(request, ErrorCode.PAYMENT_FAILED, message, expect=_UNPAID)
            self.held.release(request.id)
            return
        finally:
            held.task = None
        held.unpaid = False
        ledger_row = PaymentEntry(paid.key, request.id, paid.method, paid.amount_msat)
        if paid.amount_msat < price:
            # Money came, but not enough: recorded and owed back, never silently kept.
            message = f"received {paid.amount_msat} of {price} msat; it is owed back to you"
            if not await self.ledger.fail(
                request,
                ErrorCode.PAYMENT_FAILED,
                message,
                expect=_UNPAID,
                refund=OWED,
                paid_msat=paid.amount_msat,
                payment_method=paid.method,
                payment=ledger_row,
            ):
                await self._not_entered(request, ledger_row)
            self.held.release(request.id)
            return
        moved = await self.store.transition(
            request.id,
            expect=_UNPAID,
            to=JobState.PAID,
            paid_msat=paid.amount_msat,
            payment_method=paid.method,
            payment=ledger_row,
        )
        if not moved:
            await self._not_entered(request, ledger_row)
            self.held.release(request.id)
            return
        held.paid = paid
        if await self.store.transition(request.id, expect=JobState.PAID, to=JobState.QUEUED):
            if not held.kwargs:
                held.kwargs = self._bind(request)
            self._enqueue(held)
        else:
            self.held.release(request.id)  # cancelled while we waited

    async def _not_entered(self, request: JobRequest, payment: PaymentEntry) -> None:
        """A confirmed payment the ledger did not take with the job's transition: either its
        key was used before (the job still waits: it fails), or the job ended while the
        payment came (a cancel racing it): then it is entered late, and owed."""
        record = await self.store.get(request.id)
        if record is not None and record.state is JobState.PAYMENT_REQUIRED:
            # This payment (a zap receipt, an invoice, a token) already released a job.
            message = "that payment was already used for a job; pay this one"
            await self.ledger.fail(request, ErrorCode.PAYMENT_FAILED, message, expect=_UNPAID)
        elif await self.store.late_payment(payment):
            log.warning(
                "job %s: %d msat arrived after it ended; recorded as owed",
                request.id,
                payment.amount_msat,
            )

    async def fail_paid(self, held: Held, code: str, message: str) -> None:
        """End a paid, running job ``error``: refunded where its method allows, and otherwise
        recorded as owed (``dvm jobs --owed``)."""
        request, paid = held.request, held.paid
        assert paid is not None
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
