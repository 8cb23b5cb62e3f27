"""The customer against a DVM written directly on nostr-sdk: answers, offers, payment asks."""

from __future__ import annotations

import pytest

from dvmkit.customer import UpdateType
from dvmkit.errors import PaymentRequired

from .conftest import WAIT, SdkResponder, customer_on, echo_dvm


@pytest.mark.parametrize("target", ["text", 5050])
@pytest.mark.parametrize("targeted", [True, False])
async def test_sdk_dvm_answers_both_dialects(
    relay_url: str, target: str | int, targeted: bool
) -> None:
    responder = SdkResponder(relay_url)
    async with responder.running(), customer_on(relay_url) as customer:
        job = await customer.request(target, input="hi", to=responder.pubkey if targeted else None)
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm) == ("sdk:hi", responder.pubkey)
        assert result.event.kind == (25000 if target == "text" else 6050)


@pytest.mark.parametrize("choose", ["cheapest", "first"])
async def test_offers_are_compared_and_the_winner_targeted(relay_url: str, choose: str) -> None:
    dear = SdkResponder(relay_url, offer_msat=9000)
    cheap = SdkResponder(relay_url, offer_msat=0)
    async with dear.running(), cheap.running(), customer_on(relay_url) as customer:
        job = await customer.request("text", input="deal", choose=choose, offer_window=0.5)  # type: ignore[arg-type]
        result = await job.result(timeout=WAIT)
        updates = [u async for u in job.updates()]
        offers = {u.dvm: u.amount_msat for u in updates if u.type is UpdateType.OFFER}
        chosen = [u.dvm for u in updates if u.type is UpdateType.CHOSEN]
        if choose == "cheapest":
            assert offers == {dear.pubkey: 9000, cheap.pubkey: 0}
            assert chosen == [cheap.pubkey]
        assert len(chosen) == 1
        assert chosen[0] in offers
        assert result.dvm == chosen[0]
        assert result.content == "sdk:deal"
        assert result.request_id != job.id  # the targeted request to the winner
        winner = cheap if result.dvm == cheap.pubkey else dear
        assert winner.seen[-1].tag_values("p") == [winner.pubkey]


async def test_offers_above_the_cap_are_never_accepted(relay_url: str) -> None:
    dear = SdkResponder(relay_url, offer_msat=9000)
    async with dear.running(), customer_on(relay_url) as customer:
        job = await customer.request("text", input="x", max_price_msat=1000)
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
        assert (caught.value.amount_msat, caught.value.cap_msat) == (9000, 1000)
        assert "cap" in str(caught.value)
        assert all(r.tag_values("p") == [] for r in dear.seen)  # never targeted


@pytest.mark.parametrize("target", ["text", 5050])
async def test_payment_required_fails_with_the_payment_error(
    relay_url: str, target: str | int
) -> None:
    seller = SdkResponder(relay_url, payment_msat=2000)
    async with seller.running(), customer_on(relay_url) as customer:
        job = await customer.request(target, input="x", to=seller.pubkey)
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
        assert (caught.value.dvm, caught.value.amount_msat) == (seller.pubkey, 2000)


async def test_fastest_prefers_the_dvm_seen_fastest(relay_url: str) -> None:
    slow = SdkResponder(relay_url, offer_msat=0, eta=60)
    quick = SdkResponder(relay_url, offer_msat=0, eta=1)
    async with slow.running(), quick.running(), customer_on(relay_url) as customer:
        job = await customer.request("text", input="x", choose="fastest", offer_window=0.5)
        assert (await job.result(timeout=WAIT)).dvm == quick.pubkey


async def test_free_result_wins_over_offers(relay_url: str) -> None:
    dvm = echo_dvm(relay_url)
    dear = SdkResponder(relay_url, offer_msat=5000)
    async with dvm.running(), dear.running(), customer_on(relay_url) as customer:
        job = await customer.request("text", input="free")
        result = await job.result(timeout=WAIT)
        assert (result.dvm, result.content, result.request_id) == (dvm.public_key, "free", job.id)
