"""``Payments``: accept several methods at once; the first confirmed payment wins."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from dvmkit.errors import PaymentError
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import JobRequest
from dvmkit.protocol.payment import PaymentMessage, Refund
from dvmkit.provider.config import Paid, PaymentProcessor, PaymentRequest
from dvmkit.relay.pool import RelayPool


class Payments:
    """Several payment processors as one: ``Payments(NWCPayments(uri), CashuPayments(...))``.

    ``payment-required`` names every method (with the invoice of the one that makes invoices);
    the job is released by whichever confirms first, and the others stop waiting. A method
    that fails outright (a spent Cashu token) fails the payment: the customer tried to pay
    with something worthless, and is told so rather than left waiting.
    """

    def __init__(self, *processors: PaymentProcessor) -> None:
        if not processors:
            raise ValueError("Payments needs at least one payment processor")
        self.processors = processors

    def __repr__(self) -> str:
        return f"Payments({', '.join(map(repr, self.processors))})"

    @property
    def methods(self) -> Sequence[str]:
        return tuple(dict.fromkeys(m for p in self.processors for m in p.methods))

    @contextlib.asynccontextmanager
    async def serving(self, pool: RelayPool, keys: Keys) -> AsyncIterator[object]:
        async with contextlib.AsyncExitStack() as stack:
            for processor in self.processors:
                await stack.enter_async_context(processor.serving(pool, keys))
            yield self

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        asks = [
            await p.request(job_id, amount_msat, request, expires_in=expires_in)
            for p in self.processors
        ]
        invoice = next((a for a in asks if a.bolt11 is not None), None)
        return PaymentRequest(
            amount_msat,
            tuple(dict.fromkeys(m for a in asks for m in a.methods)),
            bolt11=None if invoice is None else invoice.bolt11,
            reference=None if invoice is None else invoice.reference,
            details=tuple(d for a in asks for d in a.details),
        )

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        async def first(processor: PaymentProcessor) -> Paid:
            raise _Won(await processor.confirm(job_id, payment))

        won: list[Paid] = []
        try:
            async with asyncio.TaskGroup() as tg:
                for processor in self.processors:
                    tg.create_task(first(processor))
        except* _Won as group:
            won.extend(exc.paid for exc in group.exceptions if isinstance(exc, _Won))
        except* PaymentError as failed:
            # Another method may have confirmed in the same instant: that money came, so it
            # pays the job rather than be dropped unrecorded behind the failure.
            if not won:
                raise failed.exceptions[0] from None
        # Every confirm ends in _Won or an exception: the group always raised.
        return won[0]

    def deliver(self, message: PaymentMessage) -> bool:
        return any(p.deliver(message) for p in self.processors)

    async def refund(self, request: JobRequest, paid: Paid) -> Refund | None:
        for processor in self.processors:
            if paid.method in processor.methods:
                return await processor.refund(request, paid)
        return None


class _Won(Exception):
    """Carries the winning payment out of the task group, cancelling the other waits."""

    def __init__(self, paid: Paid) -> None:
        super().__init__("paid")
        self.paid = paid
