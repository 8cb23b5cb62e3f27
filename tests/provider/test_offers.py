"""``DVM(offers=True)``: an open modern request is bid on, not run; the customer picks a winner.

Two real DVMs make offers to the real :class:`dvmkit.customer.Customer`, which compares them by
its strategy (cheapest, fastest, first) and sends the winner a targeted request; only the
winner runs the job. Offers are not jobs: nothing about the open request is stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from dvmkit.customer import Customer, CustomerTimeouts, UpdateType
from dvmkit.customer.answers import Choose
from dvmkit.errors import PaymentRequired
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import JobRequest
from dvmkit.protocol.payment import PaymentMessage, Refund
from dvmkit.provider import DVM, PaymentRequest
from dvmkit.provider.config import Paid
from dvmkit.relay.pool import RelayPool
from dvmkit.store import SQLiteJobStore

from .conftest import WAIT, make_dvm

CUSTOMER = CustomerTimeouts(offer_window=0.5, silence=5.0)


class NeverPaid:
    """A payment hook for a priced DVM: asks, and never confirms (no test pays)."""

    methods: Sequence[str] = ("bolt11", "cashu")

    async def request(
        self, job_id: str, amount_msat: int, request: JobRequest, *, expires_in: int
    ) -> PaymentRequest:
        return PaymentRequest(amount_msat, tuple(self.methods))

    async def confirm(self, job_id: str, payment: PaymentRequest) -> Paid:
        raise AssertionError("no test pays")

    @contextlib.asynccontextmanager
    async def serving(self, pool: RelayPool, keys: Keys) -> AsyncIterator[object]:
        yield self

    def deliver(self, message: PaymentMessage) -> bool:
        return False

    async def refund(self, request: JobRequest, paid: Paid) -> Refund | None:
        return None


def bidder(relay: str, name: str, ran: list[str], **kwargs: object) -> DVM:
    dvm = make_dvm(relay, name=name, offers=True, **kwargs)

    @dvm.job
    async def work(input: str) -> str:
        ran.append(name)
        return f"{name}: {input}"

    return dvm


@contextlib.asynccontextmanager
async def market(*dvms: DVM) -> AsyncIterator[Customer]:
    async with contextlib.AsyncExitStack() as stack:
        for dvm in dvms:
            await stack.enter_async_context(dvm.running())
        relays = list(dvms[0].relays)
        yield await stack.enter_async_context(Customer(relays=relays, timeouts=CUSTOMER))


@pytest.mark.parametrize(("choose", "winner"), [("cheapest", "slow"), ("fastest", "quick")])
async def test_the_customer_chooses_among_offers_and_only_the_winner_runs(
    relay_url: str, choose: Choose, winner: str
) -> None:
    ran: list[str] = []
    # Both free: "slow" promises 9 s, "quick" 1 s. Fastest ranks by ETA (nothing observed
    # yet); cheapest finds equal prices and falls back to arrival order.
    slow = bidder(relay_url, "slow", ran, offer_eta=9)
    quick = bidder(relay_url, "quick", ran, offer_eta=1)
    names = {slow.public_key: "slow", quick.public_key: "quick"}
    async with market(slow, quick) as customer:
        job = await customer.request("text", input="hi", choose=choose)
        if choose == "cheapest":
            # Equal prices: cheapest falls back to arrival order, so the winner is whoever
            # offered first; compute it from the updates rather than assume it.
            result = await job.result(timeout=WAIT)
            updates = [u async for u in job.updates()]
            first_offer = next(u for u in updates if u.type is UpdateType.OFFER)
            assert result.dvm == first_offer.dvm
            expected = names[first_offer.dvm or ""]
        else:
            result = await job.result(timeout=WAIT)
            updates = [u async for u in job.updates()]
            expected = winner
        offers = [u for u in updates if u.type is UpdateType.OFFER]
        assert sorted(names[u.dvm or ""] for u in offers) == ["quick", "slow"]
        etas = {names[u.dvm or ""]: u.event.tag_value("eta") for u in offers if u.event}
        assert etas == {"slow": "9", "quick": "1"}
        assert all(u.amount_msat == 0 for u in offers)
        (chosen,) = [u for u in updates if u.type is UpdateType.CHOSEN]
        assert names[chosen.dvm or ""] == expected
        assert result.content == f"{expected}: hi"
        assert ran == [expected]
        # The winner ran a targeted request (a new event), not the open one.
        assert result.request_id != job.id


async def test_cheapest_takes_the_free_offer_over_a_priced_one(our_relay_url: str) -> None:
    ran: list[str] = []
    priced = bidder(
        our_relay_url, "priced", ran, offer_eta=1, price_msat=21_000, payments=NeverPaid()
    )
    free = bidder(our_relay_url, "free", ran, offer_eta=9)
    async with market(priced, free) as customer:
        job = await customer.request("text", input="x", choose="cheapest")
        result = await job.result(timeout=WAIT)
        updates = [u async for u in job.updates()]
    offers = {u.dvm: u for u in updates if u.type is UpdateType.OFFER}
    priced_offer = offers[priced.public_key]
    assert priced_offer.amount_msat == 21_000
    assert priced_offer.event is not None
    assert priced_offer.event.tag_values("payment") == ["bolt11", "cashu"]
    free_offer = offers[free.public_key]
    assert free_offer.amount_msat == 0
    assert free_offer.event is not None
    assert free_offer.event.tag_values("payment") == []
    assert (result.dvm, result.content, ran) == (free.public_key, "free: x", ["free"])


async def test_fastest_priced_winner_asks_payment_and_the_customer_refuses(
    our_relay_url: str,
) -> None:
    ran: list[str] = []
    priced = bidder(
        our_relay_url, "priced", ran, offer_eta=1, price_msat=21_000, payments=NeverPaid()
    )
    free = bidder(our_relay_url, "free", ran, offer_eta=9)
    async with market(priced, free) as customer:
        job = await customer.request("text", input="x", choose="fastest")
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
    assert (caught.value.dvm, caught.value.amount_msat) == (priced.public_key, 21_000)
    assert ran == []


async def test_first_takes_the_earliest_offer(our_relay_url: str) -> None:
    ran: list[str] = []
    one = bidder(our_relay_url, "one", ran, offer_eta=3)
    two = bidder(our_relay_url, "two", ran, offer_eta=3)
    async with market(one, two) as customer:
        job = await customer.request("text", input="y", choose="first")
        result = await job.result(timeout=WAIT)
        updates = [u async for u in job.updates()]
    first_offer = next(u for u in updates if u.type is UpdateType.OFFER)
    (chosen,) = [u for u in updates if u.type is UpdateType.CHOSEN]
    assert chosen.dvm == first_offer.dvm == result.dvm
    assert len(ran) == 1


async def test_offers_store_nothing_and_eta_follows_observed_latency(our_relay_url: str) -> None:
    ran: list[str] = []
    store = SQLiteJobStore(None)
    dvm = bidder(our_relay_url, "solo", ran, store=store)
    async with market(dvm) as customer:
        first = await customer.request("text", input="a")
        await first.result(timeout=WAIT)
        second = await customer.request("text", input="b")
        await second.result(timeout=WAIT)
        offers = [
            [u for u in updates if u.type is UpdateType.OFFER]
            for updates in ([u async for u in first.updates()], [u async for u in second.updates()])
        ]
        # The open requests were bid on, never admitted as jobs.
        assert await store.get(first.id) is None
        assert await store.get(second.id) is None
    (before,), (after,) = offers
    assert before.event is not None
    assert after.event is not None
    assert before.event.tag_value("eta") is None  # nothing observed yet: no promise
    eta = after.event.tag_value("eta")
    assert eta is not None
    assert int(eta) >= 1
    assert ran == ["solo", "solo"]


async def test_offers_do_not_change_legacy_or_targeted_requests(our_relay_url: str) -> None:
    ran: list[str] = []
    dvm = bidder(our_relay_url, "direct", ran)
    async with market(dvm) as customer:
        legacy = await customer.request(5050, input="old")
        targeted = await customer.request("text", input="new", to=dvm.public_key)
        assert (await legacy.result(timeout=WAIT)).content == "direct: old"
        assert (await targeted.result(timeout=WAIT)).content == "direct: new"
        for job in (legacy, targeted):
            assert UpdateType.OFFER not in [u.type async for u in job.updates()]
    assert ran == ["direct", "direct"]


def test_offer_eta_must_be_a_whole_non_negative_number(our_relay_url: str) -> None:
    with pytest.raises(ValueError, match="offer_eta"):
        make_dvm(our_relay_url, offers=True, offer_eta=-1)
