"""dvmkit's customer paying dvmkit's priced DVMs, end to end: real relays (ours and
nostr-sdk's), the real dev wallet over NWC, a real nutshell mint, a real LNURL server.

Each test checks the money as well as the result: the customer's balance goes down by exactly
the price, the DVM's goes up by it, and nothing moves when the job is not to be paid.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from dvmkit.customer import JobRefunded, UpdateType
from dvmkit.errors import PaymentRequired
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.lnurl_server import LnurlServer
from dvmkit.payments.nip47 import ConnectionURI
from dvmkit.payments.nwc import NWCClient
from dvmkit.protocol.envelope import Envelope
from dvmkit.provider import DVM
from dvmkit.provider.payments import CashuPayments, NWCPayments, Payments, ZapPayments
from dvmkit.relay.pool import RelayPool
from payments.alby_wallet import alby_wallet
from payments.mint import funded

from .conftest import PRICE, WAIT, echo_dvm, priced
from .hand_dvm import paying_customer, updates_of


@contextlib.asynccontextmanager
async def zap_only_dvm(relay: str, wallet: DevWallet) -> AsyncIterator[tuple[DVM, ConnectionURI]]:
    """A running DVM paid only by zaps to its lightning address, and the dev-wallet account
    behind that address (its LNURL server's wallet)."""
    account = wallet.create_account(name="lnurl")
    async with (
        NWCClient(account, timeout=WAIT) as receiving,
        LnurlServer(wallet=receiving, keys=Keys.generate(), relays=[relay]) as server,
    ):
        dvm = priced(relay, ZapPayments(address=server.address("dvm")))
        async with dvm.running():
            yield dvm, account


@pytest.mark.parametrize("target", ["text", 5050])
async def test_a_bolt11_priced_job_is_paid_and_answered(
    relay_url: str, dev_wallet: DevWallet, target: str | int
) -> None:
    seller = dev_wallet.create_account(name="dvm")
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = priced(relay_url, NWCPayments(seller, poll_interval=0.5))
    async with dvm.running(), paying_customer(relay_url, buyer) as customer:
        job = await customer.request(target, input="hi", to=dvm.public_key, max_price_msat=PRICE)
        result = await job.result(timeout=WAIT)
    assert (result.content, result.dvm) == ("HI", dvm.public_key)
    assert dev_wallet.balance(buyer.client) == 100_000 - PRICE
    assert dev_wallet.balance(seller.client) == PRICE
    updates = [u async for u in job.updates()]
    types = [u.type for u in updates]
    assert types.index(UpdateType.PAYMENT_REQUIRED) < types.index(UpdateType.PAID)
    (paid,) = [u for u in updates if u.type is UpdateType.PAID]
    assert (paid.amount_msat, paid.method) == (PRICE, "bolt11")
    (asked,) = [u for u in updates if u.type is UpdateType.PAYMENT_REQUIRED]
    assert asked.methods == {"bolt11": None}


@pytest.mark.parametrize("target", ["text", 5050])
async def test_a_bolt11_priced_job_is_paid_through_an_alby_wallet_service(
    relay_url: str, target: str | int
) -> None:
    """Both wallets on an independent NIP-47 service (Alby's NWCWalletService). It sends no
    notifications, so the DVM learns of the payment by polling ``lookup_invoice``."""
    seller, buyer = Keys.generate(), Keys.generate()
    async with alby_wallet([relay_url], {seller: 0, buyer: 100_000}) as service:
        dvm = priced(relay_url, NWCPayments(service.uri(seller), poll_interval=0.2))
        async with dvm.running(), paying_customer(relay_url, service.uri(buyer)) as customer:
            job = await customer.request(
                target, input="hi", to=dvm.public_key, max_price_msat=PRICE
            )
            result = await job.result(timeout=WAIT)
        async with (
            NWCClient(service.uri(seller), timeout=WAIT) as seller_wallet,
            NWCClient(service.uri(buyer), timeout=WAIT) as buyer_wallet,
        ):
            balances = (
                (await seller_wallet.get_balance()).msat,
                (await buyer_wallet.get_balance()).msat,
            )
    assert (result.content, result.dvm) == ("HI", dvm.public_key)
    assert balances == (PRICE, 100_000 - PRICE)
    paid = [(u.amount_msat, u.method) for u in await updates_of(job, UpdateType.PAID)]
    assert paid == [(PRICE, "bolt11")]


async def test_a_priced_dvm_above_the_cap_is_never_paid(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    seller = dev_wallet.create_account(name="dvm")
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = priced(relay_url, NWCPayments(seller, poll_interval=0.5))
    async with dvm.running(), paying_customer(relay_url, buyer) as customer:
        job = await customer.request(
            "text", input="hi", to=dvm.public_key, max_price_msat=PRICE - 1
        )
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
    assert (caught.value.amount_msat, caught.value.cap_msat) == (PRICE, PRICE - 1)
    assert dev_wallet.balance(buyer.client) == 100_000
    assert dev_wallet.balance(seller.client) == 0


@pytest.mark.parametrize("target", ["text", 5050])
async def test_cashu_is_preferred_when_the_dvm_takes_the_customers_mint(
    relay_url: str, dev_wallet: DevWallet, cashu_mint: str, target: str | int
) -> None:
    seller = dev_wallet.create_account(name="dvm")
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    purse = await funded(cashu_mint, 50)
    till = CashuPayments(mint_url=cashu_mint)
    dvm = priced(relay_url, Payments(NWCPayments(seller, poll_interval=0.5), till))
    async with dvm.running(), paying_customer(relay_url, buyer, cashu=purse) as customer:
        job = await customer.request(target, input="ecash", to=dvm.public_key, max_price_msat=PRICE)
        result = await job.result(timeout=WAIT)
    assert result.content == "ECASH"
    assert purse.balance == 50 - PRICE // 1000
    assert till.wallet.balance == PRICE // 1000
    assert dev_wallet.balance(buyer.client) == 100_000  # the invoice beside it went unpaid
    assert dev_wallet.balance(seller.client) == 0
    paid = await updates_of(job, UpdateType.PAID)
    assert [(u.method, u.amount_msat) for u in paid] == [("cashu", PRICE)]


@pytest.mark.parametrize("target", ["text", 5050])
async def test_a_failed_cashu_job_refunds_into_the_customers_wallet(
    relay_url: str, cashu_mint: str, target: str | int
) -> None:
    purse = await funded(cashu_mint, PRICE // 1000)
    till = CashuPayments(mint_url=cashu_mint)
    dvm = priced(relay_url, till, fail=True)
    async with dvm.running(), paying_customer(relay_url, cashu=purse) as customer:
        job = await customer.request(target, input="x", to=dvm.public_key, max_price_msat=PRICE)
        with pytest.raises(JobRefunded) as caught:
            await job.result(timeout=WAIT)
    assert (caught.value.refund_msat, caught.value.refund_method) == (PRICE, "cashu")
    assert caught.value.code == "INTERNAL_ERROR"
    assert purse.balance == PRICE // 1000  # spent, then given back
    assert till.wallet.balance == 0
    error = [u async for u in job.updates()][-1]
    assert (error.type, error.refund_msat) == (UpdateType.ERROR, PRICE)


@pytest.mark.parametrize("target", ["text", 5050])
async def test_a_failed_bolt11_job_is_refunded_to_the_wallets_own_lightning_address(
    relay_url: str, dev_wallet: DevWallet, target: str | int
) -> None:
    """The customer's NWC URI names its lightning address (``lud16``): the request carries
    it as ``["refund", address]``, and the DVM pays the refund there."""
    seller = dev_wallet.create_account(name="dvm")
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    async with (
        NWCClient(buyer, timeout=WAIT) as receiving,
        LnurlServer(wallet=receiving, keys=Keys.generate(), relays=[relay_url]) as server,
    ):
        address = server.address("alice")
        with_address = dataclasses.replace(buyer, lud16=address)
        dvm = priced(relay_url, NWCPayments(seller, poll_interval=0.5), fail=True)
        async with dvm.running(), paying_customer(relay_url, with_address) as customer:
            job = await customer.request(target, input="x", to=dvm.public_key, max_price_msat=PRICE)
            with pytest.raises(JobRefunded) as caught:
                await job.result(timeout=WAIT)
    assert job.request.tag_value("refund") == address
    assert (caught.value.refund_msat, caught.value.refund_method) == (PRICE, "bolt11")
    assert dev_wallet.balance(buyer.client) == 100_000  # paid, then paid back
    assert dev_wallet.balance(seller.client) == 0


async def test_a_refund_invoice_named_by_the_customer_is_the_one_paid(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    seller = dev_wallet.create_account(name="dvm")
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = priced(relay_url, NWCPayments(seller, poll_interval=0.5), fail=True)
    async with (
        NWCClient(buyer, timeout=WAIT) as own,
        dvm.running(),
        paying_customer(relay_url, buyer) as customer,
    ):
        back = await own.make_invoice(PRICE, description="refund")
        job = await customer.request(
            "text", input="x", to=dvm.public_key, max_price_msat=PRICE, refund_to=back.invoice
        )
        with pytest.raises(JobRefunded):
            await job.result(timeout=WAIT)
        assert (await own.lookup_invoice(payment_hash=back.payment_hash)).settled
    assert dev_wallet.balance(buyer.client) == 100_000


async def test_no_refund_address_is_guessed_for_a_free_or_encrypted_legacy_job(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    """The default address goes only on jobs that may be paid, and never in the clear beside
    encrypted params (it would be the one thing about the job anyone could read)."""
    buyer = dataclasses.replace(
        dev_wallet.create_account(name="alice", deposit_msat=1_000), lud16="alice@example.com"
    )
    dvm = echo_dvm(relay_url)
    async with dvm.running(), paying_customer(relay_url, buyer) as customer:
        free = await customer.request("text", input="x", to=dvm.public_key)
        hidden = await customer.request(
            5050, input="x", to=dvm.public_key, max_price_msat=PRICE, encrypt=True
        )
        paid = await customer.request(5050, input="x", to=dvm.public_key, max_price_msat=PRICE)
        for job in (free, hidden, paid):
            await job.result(timeout=WAIT)
    assert free.request.tag_value("refund") is None
    assert hidden.request.tag_value("refund") is None
    assert paid.request.tag_value("refund") == "alice@example.com"
    with pytest.raises(ValueError, match="lightning address"):
        await customer.request("text", input="x", refund_to="not an address")


@pytest.mark.parametrize("envelope", [Envelope(), Envelope("nip59", 1059)])
async def test_a_private_job_pays_inside_its_envelope(
    relay_url: str, cashu_mint: str, envelope: Envelope
) -> None:
    """The payment message of a gift-wrapped job is wrapped to the DVM too: the DVM reads it
    and runs the job, and a watcher of everything sent to the DVM never sees the job's id."""
    purse = await funded(cashu_mint, PRICE // 1000)
    till = CashuPayments(mint_url=cashu_mint)
    dvm = priced(relay_url, till)
    watcher = Keys.generate()
    seen: list[Event] = []
    to_dvm = {"kinds": [25000, 21059, 1059], "#p": [dvm.public_key]}
    async with (
        dvm.running(),
        RelayPool(relays=[relay_url], signer=watcher, fetch_info=False) as pool,
        pool.subscribe(to_dvm) as sub,
        paying_customer(relay_url, cashu=purse) as customer,
    ):
        await sub.wait_stored()
        job = await customer.request(
            "text", input="secret", to=dvm.public_key, envelope=envelope, max_price_msat=PRICE
        )
        result = await job.result(timeout=WAIT)
        # A marker sent last: once the watcher reads it, it has read everything before it.
        marker = sign_event(watcher, kind=25000, tags=[("p", dvm.public_key)], content="end")
        assert (await pool.publish(marker, wait="all")).ok
        async with asyncio.timeout(WAIT):
            async for event in sub:
                if event.id == marker.id:
                    break
                seen.append(event)
    assert result.content == "SECRET"
    assert (purse.balance, till.wallet.balance) == (0, PRICE // 1000)
    assert {e.kind for e in seen} == {envelope.kind}  # the request and the payment, wrapped
    assert len(seen) >= 2
    assert not [e for e in seen if job.id in e.to_json()]


async def test_a_bid_below_the_price_is_raised_to_it_once(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    seller = dev_wallet.create_account(name="dvm")
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = priced(relay_url, NWCPayments(seller, poll_interval=0.5))
    async with dvm.running(), paying_customer(relay_url, buyer) as customer:
        job = await customer.request(
            "text", input="bid", to=dvm.public_key, bid_msat=1000, max_price_msat=PRICE
        )
        result = await job.result(timeout=WAIT)
    assert result.content == "BID"
    assert result.request_id != job.id  # the second request, at the price
    updates = [u async for u in job.updates()]
    offers = [u for u in updates if u.type is UpdateType.OFFER]
    assert [(u.request_id, u.amount_msat) for u in offers] == [(job.id, PRICE)]
    sent = [u.request_id for u in updates if u.type is UpdateType.SENT]
    assert sent == [job.id, result.request_id]
    assert dev_wallet.balance(buyer.client) == 100_000 - PRICE
    assert dev_wallet.balance(seller.client) == PRICE


async def test_an_open_request_pays_the_offer_it_chose(
    relay_url: str, dev_wallet: DevWallet
) -> None:
    seller = dev_wallet.create_account(name="dvm")
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    dvm = priced(relay_url, NWCPayments(seller, poll_interval=0.5), offers=True)
    async with dvm.running(), paying_customer(relay_url, buyer) as customer:
        job = await customer.request("text", input="open", max_price_msat=PRICE)
        result = await job.result(timeout=WAIT)
    assert (result.content, result.dvm) == ("OPEN", dvm.public_key)
    assert dev_wallet.balance(buyer.client) == 100_000 - PRICE
    assert dev_wallet.balance(seller.client) == PRICE


@pytest.mark.parametrize("target", ["text", 5050])
async def test_a_zap_pays_a_dvm_that_takes_only_zaps(
    relay_url: str, dev_wallet: DevWallet, target: str | int
) -> None:
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    async with (
        zap_only_dvm(relay_url, dev_wallet) as (dvm, lnurl_account),
        paying_customer(relay_url, buyer) as customer,
    ):
        job = await customer.request(target, input="zap", to=dvm.public_key, max_price_msat=PRICE)
        result = await job.result(timeout=WAIT)
    assert result.content == "ZAP"
    assert dev_wallet.balance(buyer.client) == 100_000 - PRICE
    assert dev_wallet.balance(lnurl_account.client) == PRICE
    paid = await updates_of(job, UpdateType.PAID)
    assert [(u.method, u.amount_msat) for u in paid] == [("zap", PRICE)]


async def test_a_private_job_is_never_paid_by_zap(relay_url: str, dev_wallet: DevWallet) -> None:
    """A zap request is signed by the customer and names the DVM and the job, and its
    receipt is public: the DVM offers no zap for a private job, and the customer, with
    nothing else it could pay with, pays nothing."""
    buyer = dev_wallet.create_account(name="alice", deposit_msat=100_000)
    async with (
        zap_only_dvm(relay_url, dev_wallet) as (dvm, lnurl_account),
        paying_customer(relay_url, buyer) as customer,
    ):
        job = await customer.request(
            "text", input="x", to=dvm.public_key, encrypt=True, max_price_msat=PRICE
        )
        with pytest.raises(PaymentRequired) as caught:
            await job.result(timeout=WAIT)
    asked = await updates_of(job, UpdateType.PAYMENT_REQUIRED)
    assert [dict(u.methods) for u in asked] == [{}]
    assert "takes no method it names" in str(caught.value)
    assert dev_wallet.balance(buyer.client) == 100_000
    assert dev_wallet.balance(lnurl_account.client) == 0
