"""``Payments``: several processors as one; the first confirmed payment wins."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from dvmkit.errors import PaymentError
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import JobRequest
from dvmkit.protocol.payment import PaymentMessage, Refund
from dvmkit.provider import PaymentRequest
from dvmkit.provider.config import Paid
from dvmkit.provider.payments import Payments
from dvmkit.relay.pool import RelayPool

PAID = Paid(21_000, "bolt11", "bolt11:hash")
SPENT = PaymentError("token already spent")


class Gate:
    """Opens once ``count`` confirms wait at it: they end in one turn of the event loop."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.open = asyncio.Event()

    async def arrive(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.open.set()
        await self.open.wait()


class Settled:
    """A processor whose ``confirm`` ends with ``outcome`` once the gate opens."""

    def __init__(self, method: str, outcome: Paid | PaymentError, gate: Gate) -> None:
        self.methods: Sequence[str] = (method,)
        self.outcome = outcome
        self.gate = gate

    @contextlib.asynccontextmanager
    async def serving(self, pool: RelayPool, keys: Keys) -> AsyncIterator[object]:
        yield self

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        return PaymentRequest(amount_msat, tuple(self.methods))

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        await self.gate.arrive()
        if isinstance(self.outcome, PaymentError):
            raise self.outcome
        return self.outcome

    def deliver(self, message: PaymentMessage) -> bool:
        return False

    async def refund(self, request: JobRequest, paid: Paid) -> Refund | None:
        return None


async def _confirm(invoice: Paid | PaymentError, token: Paid | PaymentError) -> Paid:
    gate = Gate(2)
    payments = Payments(Settled("bolt11", invoice, gate), Settled("cashu", token, gate))
    return await payments.confirm("job", PaymentRequest(21_000, ("bolt11", "cashu")))


async def test_a_payment_confirmed_with_a_failure_in_the_same_instant_pays() -> None:
    # The money that came is not dropped, unrecorded, behind the other method's failure.
    assert await _confirm(PAID, SPENT) == PAID
    assert await _confirm(SPENT, PAID) == PAID


async def test_a_failed_method_alone_fails_the_payment() -> None:
    with pytest.raises(PaymentError, match="already spent"):
        await _confirm(SPENT, SPENT)
