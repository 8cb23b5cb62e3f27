"""The payment hook's contract: a priced job waits in payment-required until confirmed.

``Processor`` is not a payment implementation: it records what the DVM asks for and confirms
(or fails) only when the test says so, which is exactly the contract the hook defines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from dvmkit.errors import PaymentError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import JobRequest
from dvmkit.protocol.payment import PaymentMessage, Refund
from dvmkit.provider import DVM, Limits, PaymentRequest
from dvmkit.provider.config import Paid
from dvmkit.relay.pool import RelayPool
from dvmkit.store import OWED, SQLiteJobStore

from .conftest import FAST, Customer, error_of, make_dvm, status_of

INVOICE = "lnbc210n1ptestinvoice"


class Processor:
    """Records payment requests; ``confirm`` returns what the test pays, when it pays."""

    methods: Sequence[str] = ("bolt11",)

    def __init__(self, *, bolt11: str | None = None, refuse: bool = False) -> None:
        self.bolt11 = bolt11
        self.refuse = refuse
        self.asked: list[tuple[str, int]] = []
        self._paid: dict[str, asyncio.Future[Paid]] = {}
        self.refunded: list[Paid] = []

    def _future(self, job_id: str) -> asyncio.Future[Paid]:
        return self._paid.setdefault(job_id, asyncio.get_running_loop().create_future())

    @contextlib.asynccontextmanager
    async def serving(self, pool: RelayPool, keys: Keys) -> AsyncIterator[object]:
        yield self

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        if self.refuse:
            raise PaymentError("the wallet is offline")
        self.asked.append((job_id, amount_msat))
        return PaymentRequest(amount_msat, tuple(self.methods), bolt11=self.bolt11)

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        return await self._future(job_id)

    def deliver(self, message: PaymentMessage) -> bool:
        return False

    async def refund(self, request: JobRequest, paid: Paid) -> Refund | None:
        self.refunded.append(paid)
        return None

    def pay(self, job_id: str, amount_msat: int, key: str | None = None) -> None:
        paid = Paid(amount_msat, "bolt11", key or f"test:{job_id}")
        self._future(job_id).set_result(paid)

    def fail(self, job_id: str, reason: str) -> None:
        self._future(job_id).set_exception(PaymentError(reason))


def priced_dvm(relay: str, processor: Processor, **kwargs: object) -> tuple[DVM, list[str]]:
    options: dict[str, object] = {"price_msat": 21_000, "payments": processor, "limits": FAST}
    options.update(kwargs)
    dvm = make_dvm(relay, **options)
    ran: list[str] = []

    @dvm.job
    async def paid_work(input: str) -> str:
        ran.append(input)
        return input.upper()

    return dvm, ran


async def send(customer: Customer, dialect: str, text: str) -> Event:
    if dialect == "modern":
        return await customer.request(25000, content=text, tags=[["t", "text"]])
    return await customer.request(5050, tags=[["i", text, "text"]])


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
async def test_priced_job_runs_only_once_paid(
    relay_url: str, customer: Customer, dialect: str
) -> None:
    processor = Processor(bolt11=INVOICE)
    dvm, ran = priced_dvm(relay_url, processor)
    async with dvm.running():
        request = await send(customer, dialect, "worth it")
        asking = await customer.status(request.id, "payment-required")
        assert asking.tag("amount") == ("amount", "21000", INVOICE)
        if dialect == "modern":
            assert asking.tag("payment") == ("payment", "bolt11")
        else:
            assert asking.kind == 7000
            assert asking.tag("status") == ("status", "payment-required")
        assert processor.asked == [(request.id, 21_000)]
        # Nothing runs while confirm() has not returned.
        assert ran == []
        assert dvm.stats().done == 0
        processor.pay(request.id, 21_000)
        result = await customer.final(request.id)
    assert result.content == "WORTH IT"
    assert ran == ["worth it"]
    assert [status_of(e) for e in customer.answers(request.id)] == [
        "payment-required",
        "success",
    ]


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
async def test_payment_failed(relay_url: str, customer: Customer, dialect: str) -> None:
    processor = Processor()
    dvm, ran = priced_dvm(relay_url, processor)
    async with dvm.running():
        request = await send(customer, dialect, "x")
        asking = await customer.status(request.id, "payment-required")
        assert asking.tag("amount") == ("amount", "21000")  # no invoice given
        processor.fail(request.id, "the invoice was cancelled")
        answer = await customer.final(request.id)
    assert error_of(answer) == ("PAYMENT_FAILED", "the invoice was cancelled")
    assert ran == []


async def test_underpayment_fails(relay_url: str, customer: Customer) -> None:
    processor = Processor()
    store = SQLiteJobStore()
    dvm, ran = priced_dvm(relay_url, processor, store=store)
    async with dvm.running():
        request = await send(customer, "modern", "x")
        await customer.status(request.id, "payment-required")
        processor.pay(request.id, 20_999)
        answer = await customer.final(request.id)
        record = await store.get(request.id)
    message = "received 20999 of 21000 msat; it is owed back to you"
    assert error_of(answer) == ("PAYMENT_FAILED", message)
    assert ran == []
    # Money that came is never silently kept: it is in the ledger, and owed.
    assert record is not None
    assert (record.paid_msat, record.refund, record.payment_method) == (20_999, OWED, "bolt11")


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
async def test_payment_timeout(relay_url: str, customer: Customer, dialect: str) -> None:
    processor = Processor()
    limits = Limits(payment_timeout=0.2, processing_notice=5.0)
    dvm, ran = priced_dvm(relay_url, processor, limits=limits)
    async with dvm.running():
        request = await send(customer, dialect, "x")
        answer = await customer.final(request.id)
        code, message = error_of(answer)
        assert code == "PAYMENT_TIMEOUT"
        assert "not confirmed in time" in message
        assert dvm.stats().failed == 1
    assert ran == []


async def test_payment_request_refused_is_service_unavailable(
    relay_url: str, customer: Customer
) -> None:
    dvm, ran = priced_dvm(relay_url, Processor(refuse=True))
    async with dvm.running():
        request = await send(customer, "legacy", "x")
        code, message = error_of(await customer.final(request.id))
    assert code == "SERVICE_UNAVAILABLE"
    assert "the wallet is offline" in message
    assert ran == []


async def test_price_is_a_function_of_the_request(relay_url: str, customer: Customer) -> None:
    processor = Processor()

    async def per_char(request: JobRequest) -> int:
        return 1000 * sum(len(i.data) for i in request.inputs)

    dvm, ran = priced_dvm(relay_url, processor, price_msat=per_char)
    async with dvm.running():
        short = await send(customer, "modern", "abc")
        free = await send(customer, "modern", "")
        longer = await send(customer, "legacy", "abcdefgh")
        assert (await customer.status(short.id, "payment-required")).tag("amount") == (
            "amount",
            "3000",
        )
        assert (await customer.status(longer.id, "payment-required")).tag("amount") == (
            "amount",
            "8000",
        )
        processor.pay(short.id, 3000)
        processor.pay(longer.id, 8000)
        assert (await customer.final(short.id)).content == "ABC"
        assert (await customer.final(longer.id)).content == "ABCDEFGH"
        # No input: priced 0, so it is not asked to pay; it fails on the missing input.
        assert error_of(await customer.final(free.id))[0] == "BAD_REQUEST"
    assert sorted(processor.asked) == sorted([(short.id, 3000), (longer.id, 8000)])
    assert sorted(ran) == ["abc", "abcdefgh"]


async def test_a_failing_price_function_fails_the_job_not_the_dvm(
    relay_url: str, customer: Customer, caplog: pytest.LogCaptureFixture
) -> None:
    processor = Processor()

    def price(request: JobRequest) -> int:
        text = request.inputs[0].data
        if text == "raise":
            raise LookupError("price table is missing 'raise'")
        return -1 if text == "negative" else 0

    dvm, ran = priced_dvm(relay_url, processor, price_msat=price)
    async with dvm.running():
        raising = await send(customer, "modern", "raise")
        negative = await send(customer, "legacy", "negative")
        free = await send(customer, "modern", "free")
        for request in (raising, negative):
            assert error_of(await customer.final(request.id)) == (
                "INTERNAL_ERROR",
                "the DVM failed",
            )
        assert (await customer.final(free.id)).content == "FREE"
        assert dvm.stats().rejected == 2
    assert ran == ["free"]
    assert processor.asked == []
    assert any(r.exc_info and "price table" in str(r.exc_info[1]) for r in caplog.records)


async def test_a_request_seen_again_is_answered_from_the_store_not_asked_to_pay_again(
    relay_url: str, customer: Customer
) -> None:
    processor = Processor(bolt11=INVOICE)
    store = SQLiteJobStore()
    dvm, ran = priced_dvm(relay_url, processor, store=store)
    async with dvm.running():
        first = await send(customer, "modern", "once")
        await customer.status(first.id, "payment-required")
        processor.pay(first.id, 21_000)
        await customer.final(first.id)
        # Re-sent after it finished: the DVM must not make a second invoice for it, nor
        # answer it with anything but what it stored.
        await customer.publish(first)
        second = await send(customer, "modern", "twice")
        await customer.status(second.id, "payment-required")
        events = await store.job_events(first.id)
    assert processor.asked == [(first.id, 21_000), (second.id, 21_000)]
    assert ran == ["once"]
    assert [status_of(Event.from_json(e.event_json)) for e in events] == [
        "payment-required",
        "success",
    ]
