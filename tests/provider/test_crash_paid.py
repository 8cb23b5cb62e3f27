"""kill -9 a priced provider between payment and result, and while a job waits for payment.

The provider runs ``dvm_script.py --price`` in a child process and takes bolt11 payments into
its account at a dev wallet; the relay, the wallet and the customer run here, so that they
outlive the provider. The customer pays the invoice each job asks for with its own NWC
connection to the same wallet, and fails the test the moment any job asks a second time.

After a restart on the same job store and key, every paid job must end exactly once (one
result event id, the one the store committed) and be paid exactly once: the customer's
account fell by the price of each job, the provider's rose by as much, each job holds one
row in the store's payment ledger, and no job was ever asked for payment in a second event.
A customer who sends a finished request again (on the same relay, or on one the provider
added since) is answered from the store and asked for nothing.

Legacy answers are stored by the relay; modern kind-25000 answers are ephemeral, so a
customer subscription that stays open across the restarts sees them.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.payments.nwc import NWCClient
from dvmkit.protocol.job import MODERN_KIND
from dvmkit.relay.pool import RelayPool, Subscription
from dvmkit.relay.server import Relay
from dvmkit.store import JobRecord, JobState, PaymentEntry, SQLiteJobStore

from .dvm_script import CATEGORY, KIND
from .subprocess_dvm import DVMProcess

PRICE = 21_000
DEPOSIT = 1_000_000
JOBS_PER_DIALECT = 3
WAIT = 30.0  # bound on every wait; generous for a loaded 2-core CI machine


@dataclass(slots=True)
class Seen:
    """What the customer saw of its jobs, every delivery kept, and what it paid."""

    asked: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    invoices: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    results: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    paid: dict[str, str] = field(default_factory=dict)  # invoice -> job

    def asked_once(self, job: str) -> str:
        """The one invoice ``job`` was asked to pay, in one payment-required event."""
        assert len(set(self.asked[job])) == 1, f"{job} was asked to pay again: {self.asked[job]}"
        (invoice,) = self.invoices[job]
        return invoice


class Customer:
    """The customer: its keys, its wallet connection, and what it saw."""

    def __init__(self, keys: Keys, wallet: NWCClient) -> None:
        self.keys = keys
        self.wallet = wallet
        self.seen = Seen()

    def requests(self, label: str) -> list[Event]:
        legacy = [
            sign_event(self.keys, kind=KIND, tags=[["i", f"{label} legacy {n}", "text"]])
            for n in range(JOBS_PER_DIALECT)
        ]
        modern = [
            sign_event(
                self.keys,
                kind=MODERN_KIND,
                content=f"{label} modern {n}",
                tags=[["t", CATEGORY], ["category", CATEGORY]],
            )
            for n in range(JOBS_PER_DIALECT)
        ]
        return legacy + modern

    def answers(self) -> dict[str, object]:
        return {"kinds": [KIND + 1000, 7000, MODERN_KIND], "#p": [self.keys.public_key]}

    async def pay(self, job: str, invoice: str) -> None:
        await self.wallet.pay_invoice(invoice)
        self.seen.paid[invoice] = job

    async def follow(self, sub: Subscription, until: Callable[[], bool], *, pay: bool) -> None:
        """Read answers until ``until()``; with ``pay``, pay each invoice not yet paid.

        Fails on any error status. Bound it with a timeout."""
        seen = self.seen
        while not until():
            event = await anext(sub)
            status = event.tag_value("status")
            assert status != "error", event.tags
            job = event.tag_value("e")
            assert job is not None, event.tags
            if event.kind == KIND + 1000 or (event.kind == MODERN_KIND and status == "success"):
                seen.results[job].append(event.id)
            elif status == "payment-required":
                amount = event.tag("amount")
                assert amount is not None, event.tags
                _, msat, invoice = amount  # the bolt11 rides in the amount tag (NIP-90)
                assert int(msat) == PRICE
                seen.asked[job].append(event.id)
                seen.invoices[job].add(invoice)
                # Fail at once, not at the end: a second ask is the double charge we test for.
                seen.asked_once(job)
                if pay and invoice not in seen.paid:
                    await self.pay(job, invoice)


@dataclass(slots=True)
class Market:
    """Everything that outlives the provider: relay, wallet, the customer and its view."""

    relay: Relay
    pool: RelayPool
    sub: Subscription
    wallet: DevWallet
    dvm_wallet: ConnectionURI  # the provider's account (its URI goes to the child only)
    customer: Customer
    buyer: str  # the customer's account at the wallet

    def dvm(self, db: Path, keys: Keys, log: Path, *, gate: bool, relays: list[str]) -> DVMProcess:
        return DVMProcess(
            relays=relays,
            db=db,
            keys=keys,
            log=log,
            gate=gate,
            args=["--price", str(PRICE)],
            env={"DVM_TEST_NWC": self.dvm_wallet.reveal()},
        )

    def charged(self, jobs: int) -> None:
        """Exactly ``jobs`` prices moved from the customer to the provider, nothing else."""
        assert self.wallet.balance(self.buyer) == DEPOSIT - jobs * PRICE
        assert self.wallet.balance(self.dvm_wallet.client) == jobs * PRICE

    def settled(self, invoice: str) -> bool:
        """The wallet holds ``invoice`` paid by the customer into the provider's account."""
        found = self.wallet.ledger.invoice(bolt11.decode(invoice).payment_hash)
        return (
            found is not None
            and found.settled_at is not None
            and (found.payer, found.account, found.amount_msat)
            == (self.buyer, self.dvm_wallet.client, PRICE)
        )

    async def publish(self, requests: Collection[Event]) -> None:
        for request in requests:
            assert (await self.pool.publish(request, timeout=WAIT)).ok


@asynccontextmanager
async def market(tmp_path: Path) -> AsyncIterator[Market]:
    async with (
        Relay(port=0, db_path=tmp_path / "relay.sqlite3") as relay,
        DevWallet(relays=[relay.url], db=tmp_path / "wallet.sqlite3") as wallet,
    ):
        dvm_wallet = wallet.create_account(name="dvm")
        buyer = wallet.create_account(name="customer", deposit_msat=DEPOSIT)
        customer_keys = Keys.generate()
        async with (
            NWCClient(buyer) as paying,
            RelayPool(relays=[relay.url]) as pool,
        ):
            customer = Customer(customer_keys, paying)
            async with pool.subscribe(customer.answers()) as sub:
                await asyncio.wait_for(sub.wait_stored(), WAIT)
                yield Market(relay, pool, sub, wallet, dvm_wallet, customer, buyer.client)


async def read_jobs(
    db: Path, ids: Collection[str]
) -> dict[str, tuple[JobRecord, list[PaymentEntry]]]:
    """Each job's record and payment-ledger rows, read once the provider is not running."""
    out = {}
    async with SQLiteJobStore(db) as store:
        for job in ids:
            record = await store.get(job)
            assert record is not None, job
            out[job] = (record, await store.payments(job))
    return out


def paid_once(record: JobRecord, ledger: list[PaymentEntry], invoice: str) -> None:
    """The job holds the one payment the customer made for it, and no other."""
    payment_hash = bolt11.decode(invoice).payment_hash
    assert (record.paid_msat, record.payment_method, record.payment_ref) == (
        PRICE,
        "bolt11",
        payment_hash,
    )
    assert [(p.key, p.method, p.amount_msat) for p in ledger] == [
        ("bolt11:" + payment_hash, "bolt11", PRICE)
    ]


async def test_sigkill_between_payment_and_result_charges_once(tmp_path: Path) -> None:
    dvm_keys = Keys.generate()
    db, log = tmp_path / "jobs.sqlite3", tmp_path / "dvm.log"
    async with market(tmp_path) as m:
        customer, seen = m.customer, m.customer.seen
        requests = customer.requests("kill after payment")
        ids = {r.id for r in requests}
        legacy = [r for r in requests if r.kind == KIND]
        modern = [r for r in requests if r.kind == MODERN_KIND]
        url = m.relay.url

        # Paid, confirmed by the provider's wallet, inside the handler: then kill -9.
        async with m.dvm(db, dvm_keys, log, gate=True, relays=[url]) as proc:
            await m.publish(requests)
            async with asyncio.timeout(WAIT):
                await customer.follow(m.sub, lambda: len(seen.paid) == len(ids), pay=True)
                # A job reaches the handler only once its payment was confirmed.
                assert await proc.started(len(ids)) == ids
            await proc.kill()

        invoices = {job: seen.asked_once(job) for job in ids}
        assert seen.paid == {invoice: job for job, invoice in invoices.items()}
        m.charged(len(ids))
        for job, (record, ledger) in (await read_jobs(db, ids)).items():
            assert (record.state, record.attempts) == (JobState.PROCESSING, 1)
            paid_once(record, ledger, invoices[job])

        # Restarted on the same store and key: each job runs again, asking nothing.
        async with m.dvm(db, dvm_keys, log, gate=True, relays=[url]) as restarted:
            async with asyncio.timeout(WAIT):
                # Resumed from the store: the modern requests were ephemeral and are gone
                # from the relay, so only the store can have brought them back.
                assert await restarted.started(len(ids)) == ids
            restarted.release()
            async with asyncio.timeout(WAIT):
                await customer.follow(m.sub, lambda: ids <= seen.results.keys(), pay=True)

            # The customer retries every request on the same relay. A legacy request is a
            # duplicate there (the relay passes it on to no one; its answers are stored);
            # a modern one reaches the provider, which answers from its store.
            for request in requests:
                sent = await m.pool.publish(request, timeout=WAIT)
                expect = "duplicate" if request.kind == KIND else "accepted"
                assert [o.status for o in sent.outcomes.values()] == [expect], sent.outcomes
            async with asyncio.timeout(WAIT):
                await customer.follow(
                    m.sub, lambda: all(len(seen.results[r.id]) >= 2 for r in modern), pay=True
                )
            assert await restarted.terminate() == 0, restarted.stderr()

        # It starts again, also serving a relay it did not serve before, where the customer
        # retries its legacy requests: it reads them there and again (look-back) on the old
        # relay, and answers each from its store, on both.
        async with (
            Relay(port=0) as other,
            RelayPool(relays=[other.url]) as other_pool,
            other_pool.subscribe(customer.answers()) as other_sub,
        ):
            await asyncio.wait_for(other_sub.wait_stored(), WAIT)
            async with m.dvm(db, dvm_keys, log, gate=False, relays=[url, other.url]) as again:
                for request in legacy:
                    assert (await other_pool.publish(request, timeout=WAIT)).ok
                async with asyncio.timeout(WAIT):
                    await customer.follow(
                        other_sub,
                        lambda: all(len(seen.results[r.id]) >= 2 for r in legacy),
                        pay=True,
                    )
                assert await again.terminate() == 0, again.stderr()

        jobs = await read_jobs(db, ids)
        m.charged(len(ids))  # no second charge, and nothing the customer paid was lost
        # Each payment settled into the provider's account (the wallet's own word).
        settled = [m.settled(invoice) for invoice in invoices.values()]
        secret = m.dvm_wallet.reveal()

    assert seen.paid == {invoice: job for job, invoice in invoices.items()}
    for job, (record, ledger) in jobs.items():
        # One payment-required event and one invoice ever, through the kill and the retries.
        assert seen.asked_once(job) == invoices[job]
        assert (record.state, record.attempts) == (JobState.SUCCESS, 2)
        paid_once(record, ledger, invoices[job])
        # One result ever: the one the store committed, sent again with the same id.
        assert set(seen.results[job]) == {record.result_event_id}
    assert all(settled)
    assert secret not in log.read_text()


async def test_sigkill_while_waiting_for_payment_then_paid_while_down_runs_once(
    tmp_path: Path,
) -> None:
    dvm_keys = Keys.generate()
    db, log = tmp_path / "jobs.sqlite3", tmp_path / "dvm.log"
    async with market(tmp_path) as m:
        customer, seen = m.customer, m.customer.seen
        requests = customer.requests("paid while down")
        ids = {r.id for r in requests}
        url = m.relay.url

        # Every job asked for payment (committed before it was sent): then kill -9.
        async with m.dvm(db, dvm_keys, log, gate=False, relays=[url]) as proc:
            await m.publish(requests)
            async with asyncio.timeout(WAIT):
                await customer.follow(m.sub, lambda: ids <= seen.asked.keys(), pay=False)
            await proc.kill()
        for record, ledger in (await read_jobs(db, ids)).values():
            assert (record.state, record.paid_msat, ledger) == (JobState.PAYMENT_REQUIRED, 0, [])

        # The customer pays while no provider runs: only the wallet knows.
        invoices = {job: seen.asked_once(job) for job in ids}
        for job, invoice in invoices.items():
            await customer.pay(job, invoice)
        m.charged(len(ids))

        # On restart each job waits for payment again, finds its invoice settled, runs once.
        async with m.dvm(db, dvm_keys, log, gate=False, relays=[url]) as restarted:
            async with asyncio.timeout(WAIT):
                await customer.follow(m.sub, lambda: ids <= seen.results.keys(), pay=True)
            assert await restarted.terminate() == 0, restarted.stderr()

        jobs = await read_jobs(db, ids)
        m.charged(len(ids))
        settled = [m.settled(invoice) for invoice in invoices.values()]
        secret = m.dvm_wallet.reveal()

    assert seen.paid == {invoice: job for job, invoice in invoices.items()}
    for job, (record, ledger) in jobs.items():
        assert seen.asked_once(job) == invoices[job]
        assert (record.state, record.attempts) == (JobState.SUCCESS, 1)
        paid_once(record, ledger, invoices[job])
        assert set(seen.results[job]) == {record.result_event_id}
    assert all(settled)
    assert secret not in log.read_text()
