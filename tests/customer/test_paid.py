"""The customer pays, up to its cap, and never wrongly: real relays, the real dev wallet (NWC)
and a real nutshell mint.

The DVM here is played by the test (``hand_dvm.HandDVM``): a real key with a real wallet
account, publishing the answers the test chooses on the real relay while a real job waits.
That is how the forgeries are made (a third key asking, an ask for another request, the same
ask twice, an invoice for more than asked, an expired one). Answers are published one after
another on one connection, so the customer reads them in that order: once the last one has
been acted on, the ones before it were read too.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from coincurve import PrivateKey

from dvmkit.customer import JobRefunded, PaymentFailed, UpdateType
from dvmkit.errors import PaymentRequired
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11
from dvmkit.payments.cashu import CashuWallet
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.payments.nwc import NWCClient
from dvmkit.protocol.job import StatusKind
from dvmkit.protocol.payment import Refund, read_payment, refund_tag
from payments.mint import funded

from .conftest import PRICE, WAIT, assert_no_secret, customer_on
from .hand_dvm import HandDVM, kinds, paying_customer, until, updates_of

# -- bolt11 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["text", 5050])
async def test_a_bolt11_ask_is_paid_once_and_the_result_follows(
    relay_url: str, dev_wallet: DevWallet, target: str | int
) -> None:
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, uri) as customer:
        job = await customer.request(target, input="x", to=dvm.pubkey, max_price_msat=PRICE)
        assert (await dvm.next_request()).id == job.id
        first = await dvm.ask_payment(PRICE, request=job.request)
        paid = await until(job, UpdateType.PAID)
        assert (paid.amount_msat, paid.method, paid.dvm) == (PRICE, "bolt11", dvm.pubkey)
        # The DVM restarted, or a relay replays: asked again for the same request, with a
        # fresh invoice. Never paid twice.
        again = await dvm.ask_payment(PRICE, request=job.request)
        await dvm.result(job.request, "done")
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm) == ("done", dvm.pubkey)
        assert await dvm.settled(first)
        assert not await dvm.settled(again)
    assert dev_wallet.balance(uri.client) == 100_000 - PRICE
    assert dvm.balance == PRICE
    updates = [u async for u in job.updates()]
    assert kinds(updates).count(UpdateType.PAYMENT_REQUIRED) == 2
    assert kinds(updates).count(UpdateType.PAID) == 1
    assert "paid 21000 msat to" in paid.describe()
    assert paid.to_dict()["method"] == "bolt11"


@pytest.mark.parametrize("cap", [None, PRICE - 1])
async def test_never_pays_above_the_cap_or_without_one(
    relay_url: str, dev_wallet: DevWallet, cap: int | None
) -> None:
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, uri) as customer:
        job = await customer.request("text", input="x", to=dvm.pubkey, max_price_msat=cap)
        invoice = await dvm.ask_payment(PRICE)
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
        assert not await dvm.settled(invoice)
    assert (caught.value.amount_msat, caught.value.cap_msat) == (PRICE, cap)
    assert ("above your cap" if cap else "no cap") in str(caught.value)
    assert dev_wallet.balance(uri.client) == 100_000
    assert dvm.balance == 0


async def test_an_ask_signed_by_a_third_key_is_not_paid(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = HandDVM(relay_url, dev_wallet)
    thief = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), thief.running(), paying_customer(relay_url, uri) as customer:
        job = await customer.request("text", input="x", to=dvm.pubkey, max_price_msat=PRICE)
        await dvm.next_request()
        stolen = await thief.ask_payment(PRICE, request=job.request)
        await dvm.ask_payment(PRICE, request=job.request)
        await until(job, UpdateType.PAID)
        await dvm.result(job.request, "done")
        assert (await job.result(timeout=WAIT)).content == "done"
        assert not await thief.settled(stolen)
    assert thief.balance == 0
    assert dvm.balance == PRICE
    assert dev_wallet.balance(uri.client) == 100_000 - PRICE
    asked = await updates_of(job, UpdateType.PAYMENT_REQUIRED)
    assert [u.dvm for u in asked] == [dvm.pubkey]  # the forgery was not even reported


async def test_an_ask_for_an_earlier_request_is_not_paid_after_a_rebid(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    """A targeted request bidding below the price gets an offer; the customer asks again at
    the price (a new request id). An ask about the first request is then not paid."""
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, uri) as customer:
        job = await customer.request(
            "text", input="x", to=dvm.pubkey, bid_msat=1000, max_price_msat=PRICE
        )
        first = await dvm.next_request()
        assert (first.id, first.tag_value("bid")) == (job.id, "1000")
        await dvm.say(first, StatusKind.OFFER, amount_msat=PRICE, methods=["bolt11"])
        request = await dvm.next_request()
        assert request.id != job.id
        assert request.tag_value("bid") == str(PRICE)
        assert request.tag_values("p") == [dvm.pubkey]
        stale = await dvm.ask_payment(PRICE, request=job.request)
        fresh = await dvm.ask_payment(PRICE, request=request)
        paid = await until(job, UpdateType.PAID)
        assert paid.request_id == request.id
        await dvm.result(request, "done")
        result = await job.result(timeout=WAIT)
        assert (result.content, result.request_id) == ("done", request.id)
        assert await dvm.settled(fresh)
        assert not await dvm.settled(stale)
    assert dev_wallet.balance(uri.client) == 100_000 - PRICE


@pytest.mark.parametrize(("offers", "cap"), [(2, PRICE), (1, PRICE - 1)])
async def test_a_rebid_happens_once_and_only_within_the_cap(
    relay_url: str, dev_wallet: DevWallet, offers: int, cap: int
) -> None:
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, uri) as customer:
        job = await customer.request(
            "text", input="x", to=dvm.pubkey, bid_msat=1, max_price_msat=cap
        )
        for _ in range(offers):
            await dvm.say(await dvm.next_request(), StatusKind.OFFER, amount_msat=PRICE)
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
    sent = await updates_of(job, UpdateType.SENT)
    assert len({u.request_id for u in sent}) == offers  # asked again once at most
    assert dvm.requests.empty()
    assert ("offer again" if offers == 2 else "above your cap") in str(caught.value)
    assert dev_wallet.balance(uri.client) == 100_000


async def test_an_invoice_paid_once_is_refused_on_any_later_job(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, uri) as customer:
        first = await customer.request("text", input="1", to=dvm.pubkey, max_price_msat=PRICE)
        invoice = await dvm.ask_payment(PRICE)
        await until(first, UpdateType.PAID)
        second = await customer.request("text", input="2", to=dvm.pubkey, max_price_msat=PRICE)
        await dvm.ask_payment(PRICE, bolt11=invoice)
        with pytest.raises(PaymentRequired) as caught:
            await second.result(timeout=WAIT)
        assert "already paid" in str(caught.value)
        await first.cancel()
    assert dev_wallet.balance(uri.client) == 100_000 - PRICE
    assert dvm.balance == PRICE


def _expired_invoice(amount_msat: int) -> str:
    """A real BOLT-11 invoice, properly signed, that expired an hour ago."""
    return bolt11.encode(
        PrivateKey().secret,
        payment_hash=bytes(range(32)),
        amount_msat=amount_msat,
        timestamp=int(time.time()) - 7200,
        expiry=3600,
        description="stale",
        payment_secret=bytes(32),
    )


@pytest.mark.parametrize("flaw", ["more", "expired", "garbled", "any amount"])
async def test_a_flawed_invoice_is_refused(
    relay_url: str, dev_wallet: DevWallet, flaw: str
) -> None:
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, uri) as customer:
        job = await customer.request("text", input="x", to=dvm.pubkey, max_price_msat=10 * PRICE)
        if flaw == "more":  # the amount tag says PRICE; the invoice wants more
            invoice = await dvm.invoice(PRICE + 1)
        elif flaw == "any amount":
            invoice = bolt11.encode(PrivateKey().secret, payment_hash=bytes(32), amount_msat=None)
        elif flaw == "expired":
            invoice = _expired_invoice(PRICE)
        else:
            invoice = "lnbcrt1garbled"
        await dvm.ask_payment(PRICE, bolt11=invoice)
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
    reason = {
        "more": f"an invoice for {PRICE + 1} msat",
        "expired": "expired",
        "garbled": "does not decode",
        "any amount": "any amount",
    }[flaw]
    assert reason in str(caught.value)
    assert dev_wallet.balance(uri.client) == 100_000
    assert dvm.balance == 0


async def test_a_wallet_failure_ends_the_job_without_showing_secrets(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    uri = dev_wallet.create_account(name="poor", deposit_msat=PRICE - 1)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, uri) as customer:
        job = await customer.request("text", input="x", to=dvm.pubkey, max_price_msat=PRICE)
        await dvm.ask_payment(PRICE)
        with pytest.raises(PaymentFailed) as caught:
            await job.result(timeout=WAIT)
        shown = f"{caught.value} {caught.value!r} {customer!r} {customer.payer!r}"
    assert (caught.value.dvm, caught.value.method) == (dvm.pubkey, "bolt11")
    assert caught.value.code == "INSUFFICIENT_BALANCE"
    assert "INSUFFICIENT_BALANCE" in str(caught.value)
    assert_no_secret(uri, shown)
    assert dev_wallet.balance(uri.client) == PRICE - 1


async def test_a_wallet_that_never_answers_fails_with_its_code(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    """The NWC URI names a wallet no service answers for: the payment times out, and the
    failure keeps the wallet's code (``TIMEOUT``: money may have gone; ``dvm ask`` exits 4
    on it, as ``dvm wallet`` does)."""
    silent = ConnectionURI(
        wallet=Keys.generate().public_key, relays=(relay_url,), keys=Keys.generate()
    )
    dvm = HandDVM(relay_url, dev_wallet)
    async with (
        dvm.running(),
        NWCClient(silent, timeout=0.5) as wallet,
        customer_on(relay_url, wallet=wallet) as customer,
    ):
        job = await customer.request("text", input="x", to=dvm.pubkey, max_price_msat=PRICE)
        await dvm.ask_payment(PRICE)
        with pytest.raises(PaymentFailed) as caught:
            await job.result(timeout=WAIT)
    assert (caught.value.code, caught.value.method) == ("TIMEOUT", "bolt11")
    assert_no_secret(silent, str(caught.value))


async def test_no_wallet_the_dvm_takes_means_payment_required(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url) as customer:
        job = await customer.request("text", input="x", to=dvm.pubkey, max_price_msat=PRICE)
        await dvm.ask_payment(PRICE)
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
    assert "no wallet" in str(caught.value)
    assert dvm.balance == 0


async def test_an_open_legacy_request_pays_the_dvm_it_chooses(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    """NIP-90 has no offers: a priced DVM answers an open request with payment-required. The
    customer takes the cheaper of two asks within its cap and pays only that one."""
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    cheap, dear = HandDVM(relay_url, dev_wallet), HandDVM(relay_url, dev_wallet)
    async with cheap.running(), dear.running(), paying_customer(relay_url, uri) as customer:
        dear_invoice, cheap_invoice = await dear.invoice(PRICE), await cheap.invoice(PRICE // 2)
        # Asks are collected for the offer window (from the request's sending): both fit.
        job = await customer.request(5050, input="x", max_price_msat=PRICE, offer_window=1.0)
        assert job.request.tag_values("p") == []
        await dear.ask_payment(PRICE, request=job.request, bolt11=dear_invoice)
        await cheap.ask_payment(PRICE // 2, request=job.request, bolt11=cheap_invoice)
        paid = await until(job, UpdateType.PAID)
        assert (paid.dvm, paid.amount_msat, paid.request_id) == (cheap.pubkey, PRICE // 2, job.id)
        await dear.result(job.request, "too late")  # not the DVM chosen: not believed
        await cheap.result(job.request, "cheap")
        result = await job.result(timeout=WAIT)
        assert (result.content, result.dvm) == ("cheap", cheap.pubkey)
        assert not await dear.settled(dear_invoice)
    assert (cheap.balance, dear.balance) == (PRICE // 2, 0)
    assert dev_wallet.balance(uri.client) == 100_000 - PRICE // 2
    chosen = await updates_of(job, UpdateType.CHOSEN)
    assert [u.dvm for u in chosen] == [cheap.pubkey]


# -- Cashu -------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["text", 5050])
async def test_cashu_pays_in_a_payment_message_and_a_refund_comes_back(
    relay_url: str, dev_wallet: DevWallet, cashu_mint: str, target: str | int
) -> None:
    """The DVM names the customer's mint: a token goes in an encrypted payment message (no
    NWC wallet at all). The job then fails, and the DVM's refund lands in the customer's
    Cashu wallet."""
    alice = await funded(cashu_mint, 100)
    till = CashuWallet(mint_url=cashu_mint)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, cashu=alice) as customer:
        job = await customer.request(target, input="x", to=dvm.pubkey, max_price_msat=PRICE)
        request = await dvm.next_request()
        await dvm.ask_payment(
            PRICE,
            request=request,
            methods=["bolt11", "cashu"],
            method_details={"cashu": cashu_mint + "/"},  # wallets differ on the slash
        )
        paid = await until(job, UpdateType.PAID)
        assert (paid.method, paid.amount_msat) == ("cashu", PRICE)
        async with asyncio.timeout(WAIT):
            message = read_payment(await dvm.payments.get(), dvm.keys)
        assert (message.job_id, message.payer, message.method) == (
            job.id,
            customer.keys.public_key,
            "cashu",
        )
        assert await till.receive(message.payload) == PRICE // 1000
        assert alice.balance == 100 - PRICE // 1000
        refund = await till.send(PRICE // 1000)
        await dvm.say(
            request,
            StatusKind.ERROR,
            code="INTERNAL_ERROR",
            message="the handler failed",
            extra=(refund_tag(dvm.keys, customer.keys.public_key, Refund(PRICE, "cashu", refund)),),
        )
        with pytest.raises(JobRefunded) as caught:
            await job.result(timeout=WAIT)
    assert (caught.value.refund_msat, caught.value.refund_method) == (PRICE, "cashu")
    assert caught.value.code == "INTERNAL_ERROR"
    assert alice.balance == 100
    assert till.balance == 0
    assert dvm.balance == 0  # the invoice beside the Cashu offer was never paid
    error = [u async for u in job.updates()][-1]
    assert (error.type, error.refund_msat) == (UpdateType.ERROR, PRICE)
    assert f"refunded {PRICE} msat" in error.describe()


async def test_cashu_of_another_mint_is_not_used(
    relay_url: str, dev_wallet: DevWallet, cashu_mint: str
) -> None:
    alice = await funded(cashu_mint, 100)
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = HandDVM(relay_url, dev_wallet)
    async with dvm.running(), paying_customer(relay_url, uri, cashu=alice) as customer:
        job = await customer.request("text", input="x", to=dvm.pubkey, max_price_msat=PRICE)
        await dvm.ask_payment(
            PRICE,
            methods=["cashu", "bolt11"],
            method_details={"cashu": "https://mint.elsewhere.example"},
        )
        paid = await until(job, UpdateType.PAID)
        await job.cancel()
    assert paid.method == "bolt11"
    assert alice.balance == 100
    assert dvm.balance == PRICE


async def test_the_cap_is_for_the_whole_job_across_failovers(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    """Paid, the first DVM falls silent; the job fails over, and the second DVM's ask does
    not fit in what the cap leaves."""
    uri = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    first, second = HandDVM(relay_url, dev_wallet), HandDVM(relay_url, dev_wallet)
    async with first.running(), second.running(), paying_customer(relay_url, uri) as customer:
        job = await customer.request(
            "text",
            input="x",
            to=[first.pubkey, second.pubkey],
            max_price_msat=PRICE,
            silence_timeout=0.5,
        )
        await first.ask_payment(PRICE)
        await until(job, UpdateType.PAID)
        invoice = await second.ask_payment(PRICE)
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
        assert not await second.settled(invoice)
    assert f"{PRICE} msat already paid for this job" in str(caught.value)
    assert (first.balance, second.balance) == (PRICE, 0)
    assert dev_wallet.balance(uri.client) == 100_000 - PRICE
