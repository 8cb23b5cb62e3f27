"""A Hypothesis state machine over the job and payment lifecycle of a real, running DVM.

Rules send priced jobs (both dialects), pay them (in full, short, or with a payment key that
already released another job), let their handlers succeed or fail, and cancel them as their
customer, in any order. After every step the job store, its payment ledger, the customer's
answers and the handler's own record are checked against the lifecycle's promises
(DESIGN.md §5): nothing runs or succeeds unpaid, money that came is in the ledger exactly
once, and a finished job stays finished.

Everything is real (our relay, the DVM, an in-memory SQLite store, a nostr-sdk customer)
except the payment processor, which is the payment hook's contract-level ``Processor`` from
``test_payment_hook.py``: ``confirm`` returns when the test pays.

Two violations the machine found (and the engine no longer has) are kept as the plain
tests at the end: a payment confirmed while a cancellation commits, and a short payment
with a key already used.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from dvmkit.errors import JobError
from dvmkit.nostr.event import Event
from dvmkit.protocol.job import ErrorCode
from dvmkit.provider import DVM, Limits, PaymentRequest
from dvmkit.provider.config import Paid
from dvmkit.provider.job import Job
from dvmkit.relay.server import Relay
from dvmkit.store import OWED, REFUNDED, JobRecord, JobState, PaymentEntry, SQLiteJobStore

from .conftest import WAIT, Customer, customer_on, eventually, is_final, make_dvm, status_of
from .loop_host import LoopHost
from .test_cancel import cancel
from .test_payment_hook import Processor, send

PRICE = 21_000
#: The answer each final state is announced with (an expired job answers error).
ANSWERED_AS = {
    JobState.SUCCESS: "success",
    JobState.ERROR: "error",
    JobState.EXPIRED: "error",
    JobState.CANCELLED: "cancelled",
}
#: Nothing here waits on the payment timeout or the processing notice.
LIMITS = Limits(processing_notice=60.0, input_timeout=5.0, job_input_wait=5.0)


class Confirming(Processor):
    """The hook's test processor, also remembering the payments ``confirm`` returned."""

    def __init__(self) -> None:
        super().__init__()
        self.confirmed: dict[str, Paid] = {}

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        paid = await super().confirm(job_id, payment)
        self.confirmed[job_id] = paid
        return paid


@dataclass(frozen=True, slots=True)
class Call:
    """The handler was called for ``job_id``; what the store held for it at that moment."""

    job_id: str
    record: JobRecord | None
    ledger: tuple[PaymentEntry, ...]


def priced_dvm(relay: str, processor: Processor, store: SQLiteJobStore) -> DVM:
    return make_dvm(relay, price_msat=PRICE, payments=processor, store=store, limits=LIMITS)


async def released(dvm: DVM, job_id: str) -> None:
    """Wait until the engine holds ``job_id`` no more (nothing announces that)."""
    engine = dvm._engine
    assert engine is not None
    await eventually(lambda: job_id not in engine.held)


class Served(LoopHost):
    """Our relay, a priced DVM on an in-memory SQLite store, and a customer, on one loop.

    The loop runs only inside :meth:`call`, never while Hypothesis draws a step: the DVM
    stands still between steps, so each step starts from the state the last one left.
    """

    def __init__(self) -> None:
        super().__init__(wait=WAIT)
        self.store = SQLiteJobStore()
        self.processor = Confirming()
        self.calls: list[Call] = []
        self.started: dict[str, asyncio.Event] = {}
        self.gates: dict[str, asyncio.Future[bool]] = {}
        self._dvm: DVM | None = None
        self._customer: Customer | None = None

    @property
    def dvm(self) -> DVM:
        assert self._dvm is not None
        return self._dvm

    @property
    def customer(self) -> Customer:
        assert self._customer is not None
        return self._customer

    def started_event(self, job_id: str) -> asyncio.Event:
        return self.started.setdefault(job_id, asyncio.Event())

    def _make_dvm(self, relay: str) -> DVM:
        dvm = priced_dvm(relay, self.processor, self.store)

        @dvm.job
        async def work(input: str, job: Job) -> str:
            record = await self.store.get(job.id)
            ledger = await self.store.payments(job.id)
            self.calls.append(Call(job.id, record, tuple(ledger)))
            self.started_event(job.id).set()
            # The `finish` rule says how the job ends, if it is not cancelled first.
            gate = self.gates.setdefault(job.id, self.loop.create_future())
            if not await gate:
                raise JobError(ErrorCode.SERVICE_UNAVAILABLE, f"{input} was told to fail")
            return input.upper()

        return dvm

    @contextlib.asynccontextmanager
    async def hosting(self) -> AsyncIterator[None]:
        async with Relay(port=0) as relay:
            self._dvm = self._make_dvm(relay.url)
            async with self.dvm.running(), customer_on(relay.url) as customer:
                self._customer = customer
                yield


class PaymentMachine(RuleBasedStateMachine):
    """Jobs of one customer on one DVM, paid and cancelled in any order."""

    jobs = Bundle("jobs")  # request ids
    unpaid = Bundle("unpaid")  # the same, until a pay rule drew it
    keys = Bundle("keys")  # payment keys in the ledger

    def __init__(self) -> None:
        super().__init__()
        self.served = Served()
        self.served.start()
        self.requests: dict[str, Event] = {}
        self.counter = itertools.count()
        self.paid: set[str] = set()  # jobs the processor was told were paid
        self.bad: dict[str, str] = {}  # jobs paid short or with a used key: how
        self.first_final: dict[str, JobState] = {}

    def teardown(self) -> None:
        try:
            # A cancellation of a finished job is never answered: one more request, answered
            # once everything before it was read, then the invariants a last time.
            self.served.call(self._barrier())
            self.served.call(self._check())
        finally:
            self.served.close()

    # -- on the loop ---------------------------------------------------------------------------

    async def _state(self, job_id: str) -> JobState:
        record = await self.served.store.get(job_id)
        assert record is not None, job_id
        return record.state

    async def _barrier(self) -> None:
        event = await send(self.served.customer, "modern", "barrier")
        await self.served.customer.status(event.id, "payment-required")

    async def _send(self, dialect: str) -> str:
        event = await send(self.served.customer, dialect, f"job {next(self.counter)}")
        await self.served.customer.status(event.id, "payment-required")
        self.requests[event.id] = event
        return event.id

    async def _pay(self, job_id: str, amount: int, key: str) -> bool:
        """Pay a job waiting for payment; False (and nothing paid) if it is not waiting."""
        if job_id in self.paid or await self._state(job_id) is not JobState.PAYMENT_REQUIRED:
            return False
        self.paid.add(job_id)
        self.served.processor.pay(job_id, amount, key)
        return True

    async def _final(self, job_id: str) -> str | None:
        return status_of(await self.served.customer.final(job_id))

    def _cancel(self, job_id: str, form: str) -> Coroutine[Any, Any, Event]:
        request, provider = self.requests[job_id], self.served.dvm.public_key
        return cancel(self.served.customer, request, form, provider)

    # -- rules --------------------------------------------------------------------------------

    @initialize(targets=(jobs, unpaid), dialect=st.sampled_from(["modern", "legacy"]))
    def first_job(self, dialect: str) -> str:
        return self.served.call(self._send(dialect))

    @rule(targets=(jobs, unpaid), dialect=st.sampled_from(["modern", "legacy"]))
    def send_job(self, dialect: str) -> str:
        return self.served.call(self._send(dialect))

    @rule(target=keys, job=consumes(unpaid), over=st.sampled_from([0, 0, 1, 5_000]))
    def pay_in_full(self, job: str, over: int) -> Any:
        key = f"payment {next(self.counter)}"

        async def step() -> bool:
            if not await self._pay(job, PRICE + over, key):
                return False
            await asyncio.wait_for(self.served.started_event(job).wait(), WAIT)
            return True

        return key if self.served.call(step()) else multiple()

    @rule(target=keys, job=consumes(unpaid), amount=st.integers(1, PRICE - 1))
    def pay_short(self, job: str, amount: int) -> Any:
        key = f"payment {next(self.counter)}"

        async def step() -> bool:
            if not await self._pay(job, amount, key):
                return False
            self.bad[job] = f"paid {amount} of {PRICE} msat"
            assert await self._final(job) == "error"
            return True

        return key if self.served.call(step()) else multiple()

    @rule(job=consumes(unpaid), key=keys, short=st.booleans())
    def replay_a_payment(self, job: str, key: str, short: bool) -> None:
        async def step() -> None:
            if not await self._pay(job, PRICE - 1 if short else PRICE, key):
                return
            self.bad[job] = f"replayed {key!r}" + (" short" if short else "")
            assert await self._final(job) == "error"

        self.served.call(step())

    @rule(job=jobs, ok=st.booleans())
    def finish(self, job: str, ok: bool) -> None:
        gate = self.served.gates.get(job)
        if gate is None or gate.done():
            return  # not running: never started, or cancelled
        gate.set_result(ok)
        assert self.served.call(self._final(job)) == ("success" if ok else "error")

    @rule(job=jobs, form=st.sampled_from(["cancel", "deletion"]))
    def cancel_job(self, job: str, form: str) -> None:
        async def step() -> None:
            finished = (await self._state(job)).terminal
            await self._cancel(job, form)
            if not finished:
                assert await self._final(job) == "cancelled"

        self.served.call(step())

    @rule(job=consumes(unpaid), form=st.sampled_from(["cancel", "deletion"]))
    def cancel_and_pay_at_once(self, job: str, form: str) -> None:
        """The cancellation and the payment race; the job ends cancelled either way.

        Which one wins varies from run to run, so nothing here goes into a bundle: what a
        step adds to one must not depend on timing (Hypothesis replays the draws).
        """
        key = f"payment {next(self.counter)}"

        async def step() -> None:
            if job in self.paid or await self._state(job) is not JobState.PAYMENT_REQUIRED:
                return
            await self._cancel(job, form)
            await self._pay(job, PRICE, key)  # unless the cancellation was already committed
            assert await self._final(job) == "cancelled"
            await released(self.served.dvm, job)

        self.served.call(step())

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def lifecycle_holds(self) -> None:
        self.served.call(self._check())

    async def _check(self) -> None:
        store, customer, served = self.served.store, self.served.customer, self.served
        records = {r.id: r for r in await store.list_jobs(limit=10_000)}
        ledger = await store.payments()
        rows: dict[str, list[PaymentEntry]] = collections.defaultdict(list)
        for entry in ledger:
            rows[entry.job_id].append(entry)

        # A payment key is in the ledger once: one payment never releases two jobs.
        keys = collections.Counter(entry.key for entry in ledger)
        assert all(n == 1 for n in keys.values()), keys

        # Money that came is in the ledger, once, against a job that says it was paid.
        for entry in ledger:
            assert records[entry.job_id].paid_msat == entry.amount_msat > 0, entry
        for record in records.values():
            if record.paid_msat > 0:
                assert len(rows[record.id]) == 1, (record, rows[record.id])
        for job_id, paid in served.processor.confirmed.items():
            state = records[job_id].state
            if state is JobState.PAYMENT_REQUIRED:
                continue  # confirmed, and not yet committed
            assert paid.key in keys, f"{paid} confirmed for a {state} job, not in the ledger"

        # Nothing succeeds unpaid: neither in the store nor in what the customer was told.
        for record in records.values():
            if record.state is JobState.SUCCESS:
                assert _paid_in_full(record, rows[record.id]), (record, rows[record.id])
        for job_id in self.requests:
            finals = [e for e in customer.answers(job_id) if is_final(e)]
            assert len(finals) <= 1, [e.tags for e in finals]
            record = records[job_id]
            for answer in finals:
                assert ANSWERED_AS.get(record.state) == status_of(answer), (record, answer.tags)

        # Terminal states stay terminal.
        for record in records.values():
            first = self.first_final.get(record.id)
            if first is not None:
                assert record.state is first, f"{record.id} left {first} for {record.state}"
            elif record.state.terminal:
                self.first_final[record.id] = record.state

        # Nothing runs before its payment was confirmed and entered in the ledger, or twice.
        for call in served.calls:
            assert call.record is not None
            # Read by the handler as it starts: a cancel may have committed in between.
            assert call.record.state in (JobState.PROCESSING, JobState.CANCELLED), call
            assert call.record.attempts == 1, call  # it was moved to processing to run
            assert _paid_in_full(call.record, list(call.ledger)), call
            assert call.job_id in served.processor.confirmed, call
        ran = collections.Counter(call.job_id for call in served.calls)
        assert all(n == 1 for n in ran.values()), ran

        # A job paid short or with a used payment key never runs and ends PAYMENT_FAILED.
        for job_id, how in self.bad.items():
            record = records[job_id]
            assert job_id not in ran, f"{how}, yet it ran"
            assert record.state is JobState.ERROR, f"{how}, yet it is {record.state}"
            assert record.error_code == ErrorCode.PAYMENT_FAILED, (how, record)

        # A paid job that failed, or that its customer cancelled, gave its money back or says
        # it owes it (DESIGN.md §5); one that failed running was offered to the processor for
        # a refund first.
        refunded = {paid.key for paid in served.processor.refunded}
        for record in records.values():
            if record.state in (JobState.ERROR, JobState.CANCELLED) and record.paid_msat:
                assert record.refund in (OWED, REFUNDED), record
            if record.state is JobState.ERROR and record.id in ran:
                assert served.processor.confirmed[record.id].key in refunded, record


def _paid_in_full(record: JobRecord, rows: list[PaymentEntry]) -> bool:
    return (
        record.price_msat == PRICE
        and len(rows) == 1
        and rows[0].amount_msat == record.paid_msat >= PRICE
    )


def test_payments_keep_the_lifecycle_s_promises_in_any_order() -> None:
    run_state_machine_as_test(
        PaymentMachine, settings=settings(max_examples=30, stateful_step_count=12)
    )


# -- what the machine found, shrunk ---------------------------------------------------------------


class PaysWhileCancelling(SQLiteJobStore):
    """The real store, where a payment confirms just as a cancellation is being committed."""

    def __init__(self, pay: Callable[[str], None]) -> None:
        super().__init__()
        self.pay = pay

    async def transition(self, job_id: str, *args: Any, **kwargs: Any) -> bool:
        if kwargs.get("to") is JobState.CANCELLED:
            self.pay(job_id)
        return await super().transition(job_id, *args, **kwargs)


def echo_dvm(relay: str, processor: Processor, store: SQLiteJobStore) -> tuple[DVM, list[str]]:
    """A priced DVM whose handler echoes its input, and the inputs it ran, in order."""
    dvm = priced_dvm(relay, processor, store)
    ran: list[str] = []

    @dvm.job
    async def work(input: str) -> str:
        ran.append(input)
        return input

    return dvm, ran


async def test_a_payment_confirmed_while_a_cancellation_commits_is_in_the_ledger(
    our_relay_url: str,
) -> None:
    processor = Confirming()
    store = PaysWhileCancelling(lambda job_id: processor.pay(job_id, PRICE, "the payment"))
    dvm, ran = echo_dvm(our_relay_url, processor, store)
    async with dvm.running(), customer_on(our_relay_url) as customer:
        job = await send(customer, "modern", "x")
        await customer.status(job.id, "payment-required")
        await cancel(customer, job, "cancel", dvm.public_key)
        assert status_of(await customer.final(job.id)) == "cancelled"
        await released(dvm, job.id)
        record = await store.get(job.id)
        ledger = await store.payments()
    assert processor.confirmed == {job.id: Paid(PRICE, "bolt11", "the payment")}
    assert ran == []
    # The money came (confirm returned it): it must be in the ledger, and given or owed back.
    assert [(e.key, e.job_id) for e in ledger] == [("the payment", job.id)]
    assert record is not None
    assert (record.state, record.paid_msat) == (JobState.CANCELLED, PRICE)
    assert record.refund in (OWED, REFUNDED)


async def test_a_short_payment_with_a_used_key_fails_the_job(our_relay_url: str) -> None:
    processor = Confirming()
    store = SQLiteJobStore()
    dvm, ran = echo_dvm(our_relay_url, processor, store)
    async with dvm.running(), customer_on(our_relay_url) as customer:
        first = await send(customer, "modern", "first")
        await customer.status(first.id, "payment-required")
        processor.pay(first.id, PRICE, "the payment")
        assert status_of(await customer.final(first.id)) == "success"
        second = await send(customer, "modern", "second")
        await customer.status(second.id, "payment-required")
        processor.pay(second.id, PRICE - 1, "the payment")  # the same payment, and short
        await released(dvm, second.id)
        record = await store.get(second.id)
    assert ran == ["first"]
    assert record is not None
    assert (record.state, record.error_code) == (JobState.ERROR, ErrorCode.PAYMENT_FAILED)
