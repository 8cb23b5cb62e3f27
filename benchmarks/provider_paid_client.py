"""The customer of ``provider --paid``: the provider benchmark's raw-socket customer, paying.

Every ``payment-required`` status for one of its requests (``["amount", msat, bolt11]``,
either dialect) is stamped on arrival like any answer and queued; :meth:`PayingCustomer.pay`
pays each invoice as it comes, concurrently, with the customer's own dev-wallet account over
NWC (:class:`dvmkit.payments.nwc.NWCClient`), as a customer paying by hand would. An invoice
for more than the expected price is not paid (the job is then lost, which the report shows).

What one paid job spent where is kept per request: sent (the write of its request), asked (its
``payment-required`` came), paying (the ``pay_invoice`` call started) and paid (the wallet's
answer came); its result's arrival is ``results`` as for any job. ``send`` stamps the requests
of the last ``expect``: every phase of :mod:`benchmarks.provider` expects a set of requests,
then writes exactly those.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from benchmarks.provider_client import Customer
from dvmkit.errors import DVMError
from dvmkit.payments.nwc import NWCClient
from dvmkit.protocol.job import FEEDBACK_KIND, MODERN_KIND

PAYMENT_REQUIRED = "payment-required"


class PayingCustomer(Customer):
    """A :class:`~benchmarks.provider_client.Customer` that pays the invoices it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.price_msat = 0  # the most it pays for one job; set before the first request
        self._invoices: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._expected: list[str] = []
        self.sent: dict[str, float] = {}  # request id -> perf_counter() of its write
        self.asked: dict[str, float] = {}  # ... of its payment-required's arrival
        self.paying: dict[str, float] = {}  # ... when pay_invoice was called
        self.paid: dict[str, float] = {}  # ... when the wallet said paid
        self.pay_failures: Counter[str] = Counter()  # reason -> count
        self.overpriced = 0  # invoices above price_msat, left unpaid
        self.unpriced = 0  # payment-required without a bolt11 in its amount tag

    def expect(self, requests: dict[str, str]) -> asyncio.Future[None]:
        self._expected = list(requests)
        return super().expect(requests)

    def send(self, frames: list[bytes]) -> float:
        sent_at = super().send(frames)
        for request in self._expected:
            self.sent.setdefault(request, sent_at)
        self._expected = []
        return sent_at

    def _answer(
        self, kind: object, tags: Sequence[Sequence[str]], content: object, now: float
    ) -> None:
        super()._answer(kind, tags, content, now)
        if kind not in (FEEDBACK_KIND, MODERN_KIND):
            return
        if next((t[1] for t in tags if len(t) > 1 and t[0] == "status"), None) != PAYMENT_REQUIRED:
            return
        request = next((t[1] for t in tags if len(t) > 1 and t[0] == "e"), None)
        if request not in self.inputs or request in self.asked:
            return  # not ours, or asked again (a resent status): paid once
        assert request is not None
        self.asked[request] = now
        amount = next((t for t in tags if len(t) > 2 and t[0] == "amount"), None)
        if amount is None:
            self.unpriced += 1
        elif int(amount[1]) > self.price_msat:
            self.overpriced += 1
        else:
            self._invoices.put_nowait((request, amount[2]))

    async def pay(self, wallet: NWCClient) -> None:
        """Pay every invoice queued, each in its own task, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            while True:
                request, invoice = await self._invoices.get()
                tg.create_task(self._pay_one(wallet, request, invoice))

    async def _pay_one(self, wallet: NWCClient, request: str, invoice: str) -> None:
        self.paying[request] = time.perf_counter()
        try:
            await wallet.pay_invoice(invoice)
        except DVMError as exc:  # WalletError and RelayError: counted, the job stays unpaid
            self.pay_failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            return
        self.paid[request] = time.perf_counter()
