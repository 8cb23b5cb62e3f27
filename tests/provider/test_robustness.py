"""What a misbehaving handler, payment backend or oversized request does: one job's answer,
never the DVM's end."""

from __future__ import annotations

import asyncio

from dvmkit.errors import JobError
from dvmkit.protocol.job import JobRequest
from dvmkit.provider import Limits, PaymentRequest
from dvmkit.provider.config import Paid

from .conftest import Customer, error_of, make_dvm, status_of
from .test_payment_hook import Processor, priced_dvm, send


class BrokenProcessor(Processor):
    """A payment backend with a bug: it raises something other than PaymentError."""

    def __init__(self, *, at: str) -> None:
        super().__init__()
        self.at = at

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        if self.at == "request":
            raise KeyError("backend bug with a secret-looking detail nsec1xyz")
        return await super().request(job_id, amount_msat, request, expires_in=expires_in)

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        if self.at == "confirm":
            raise ZeroDivisionError("backend bug")
        return await super().confirm(job_id, payment)


async def test_a_payment_backend_bug_fails_the_job_not_the_dvm(
    relay_url: str, customer: Customer
) -> None:
    for at, code in (("request", "SERVICE_UNAVAILABLE"), ("confirm", "PAYMENT_FAILED")):
        dvm, ran = priced_dvm(relay_url, BrokenProcessor(at=at))
        async with dvm.running():
            # Distinct inputs per round: the same text in the same second is the same event.
            request = await send(customer, "modern", f"x {at}")
            final = await customer.final(request.id)
            got, message = error_of(final)
            assert got == code
            assert "nsec1" not in message
            assert "bug" not in message
            # The DVM is still up: a second job gets its own answer.
            again = await send(customer, "legacy", f"y {at}")
            assert error_of(await customer.final(again.id))[0] == code
        assert ran == []


async def test_cancelling_while_payment_is_awaited_frees_the_job(
    relay_url: str, customer: Customer
) -> None:
    processor = Processor()
    dvm, ran = priced_dvm(relay_url, processor, limits=Limits(per_customer=1))
    async with dvm.running():
        request = await send(customer, "modern", "x")
        await customer.status(request.id, "payment-required")
        await customer.request(
            25000, tags=[["e", request.id], ["p", dvm.public_key], ["status", "cancel"]]
        )
        assert status_of(await customer.final(request.id)) == "cancelled"
        # The customer's only slot is free again (per_customer=1): the wait really stopped.
        second = await send(customer, "modern", "y")
        await customer.status(second.id, "payment-required")
        processor.pay(second.id, 21_000)
        assert (await customer.final(second.id)).content == "Y"
    assert ran == ["y"]


async def test_a_handler_that_times_out_itself_is_an_internal_error(
    relay_url: str, customer: Customer
) -> None:
    dvm = make_dvm(relay_url)

    @dvm.job
    async def impatient(input: str) -> str:
        async with asyncio.timeout(0):
            await asyncio.sleep(1)
        return input

    async with dvm.running():
        request = await customer.request(25000, content="x", tags=[["t", "text"]])
        assert error_of(await customer.final(request.id)) == ("INTERNAL_ERROR", "the DVM failed")


async def test_a_result_repeating_a_large_request_is_sent_compact(
    relay_url: str, customer: Customer
) -> None:
    dvm = make_dvm(relay_url, limits=Limits(compact_results_above=8_000))

    @dvm.job
    async def first_word(input: str) -> str:
        return input.split()[0]

    async with dvm.running():
        big = "word " + "x" * 6_000
        request = await customer.request(5050, tags=[["i", big, "text"]])
        small = await customer.request(5050, tags=[["i", "tiny input", "text"]])
        compact = await customer.final(request.id)
        full = await customer.final(small.id)
    assert compact.content == "word"
    assert compact.tag("request") is None
    assert compact.tag("i") is None
    assert compact.tag_value("e") == request.id
    assert full.tag("request") is not None
    assert full.tag("i") == ("i", "tiny input", "text")


async def test_an_open_request_for_another_category_is_ignored_even_when_malformed(
    relay_url: str, customer: Customer
) -> None:
    dvm = make_dvm(relay_url)

    @dvm.job
    async def echo(input: str, n: int = 1) -> str:
        return input

    async with dvm.running():
        # Tagged #t text (so the DVM's subscription sees it) but for category "images",
        # and malformed: no answer at all, not even an error.
        foreign = await customer.request(
            25000, content="x", tags=[["t", "text"], ["category", "images"], ["param"]]
        )
        ours = await customer.request(25000, content="y", tags=[["t", "text"]])
        assert (await customer.final(ours.id)).content == "y"
    assert customer.answers(foreign.id) == []
    assert dvm.stats().rejected == 0


def test_job_error_codes_are_strings() -> None:
    assert JobError("TIMEOUT", "x").code == "TIMEOUT"
