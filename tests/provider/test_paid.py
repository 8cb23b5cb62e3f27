"""Paid jobs with real money movers: the dev wallet over NWC, and a real nutshell Cashu mint.

The DVM asks, the customer pays with its own wallet or ecash, and the job runs only once the
DVM's own wallet (or its mint) has confirmed; a failed paid job is refunded or owed; a token
pays once. The customer here is the nostr-sdk test customer paying by hand, so that what the
provider does is checked independently of dvmkit's own customer.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nostr_sdk
import pytest

from dvmkit.errors import JobError
from dvmkit.nostr.event import Event
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11
from dvmkit.payments.cashu import decode_token
from dvmkit.payments.devwallet import DevWallet
from dvmkit.payments.lnurl import fetch_invoice, fetch_pay_info
from dvmkit.payments.lnurl_server import LnurlServer
from dvmkit.payments.nwc import NWCClient
from dvmkit.payments.zaps import receipt_event, zap_request
from dvmkit.protocol.payment import payment_event, read_methods, read_refund
from dvmkit.provider import DVM, Limits
from dvmkit.provider.payments import CashuPayments, NWCPayments, Payments, ZapPayments
from dvmkit.provider.pricing import Pricing
from dvmkit.store import OWED, REFUNDED, JobState, SQLiteJobStore
from payments.mint import funded

from .conftest import FAST, Customer, customer_on, error_of, make_dvm, status_of

PRICE = 21_000


@pytest.fixture
async def wallet(relay_url: str) -> AsyncIterator[DevWallet]:
    async with DevWallet(relays=[relay_url]) as running:
        yield running


def priced(
    relay: str, payments: object, *, fail: bool = False, **kwargs: object
) -> tuple[DVM, list[str]]:
    """A DVM charging PRICE, and the inputs its handler was called with, in order."""
    options: dict[str, object] = {"price_msat": PRICE, "payments": payments, "limits": FAST}
    options.update(kwargs)
    dvm = make_dvm(relay, **options)
    ran: list[str] = []

    @dvm.job
    async def shout(input: str, quality: str = "normal") -> str:
        ran.append(input)
        if fail:
            raise JobError("INTERNAL_ERROR", "the model is down")
        return input.upper()

    return dvm, ran


async def ask(customer: Customer, dialect: str, text: str, *extra: list[str]) -> Event:
    if dialect == "modern":
        tags = [["t", "text"], ["category", "text"], *extra]
        return await customer.request(25000, content=text, tags=tags)
    return await customer.request(5050, tags=[["i", text, "text"], *extra])


def amount_of(event: Event) -> tuple[int, str | None]:
    tag = event.tag("amount")
    assert tag is not None, event.tags
    return int(tag[1]), (tag[2] if len(tag) > 2 else None)


@contextlib.asynccontextmanager
async def accounts(wallet: DevWallet) -> AsyncIterator[tuple[str, str, NWCClient]]:
    """The DVM's account URI, the customer's pubkey and a connected customer wallet."""
    dvm_uri = wallet.create_account(name="dvm")
    buyer_uri = wallet.create_account(name="customer", deposit_msat=100_000)
    async with NWCClient(buyer_uri) as buyer:
        yield dvm_uri.reveal(), buyer_uri.client, buyer


# -- bolt11 over NWC ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
async def test_a_bolt11_job_runs_once_the_dvms_wallet_says_paid(
    relay_url: str, customer: Customer, wallet: DevWallet, dialect: str
) -> None:
    async with accounts(wallet) as (dvm_uri, buyer, pay):
        dvm, ran = priced(relay_url, NWCPayments(dvm_uri, poll_interval=0.5))
        async with dvm.running():
            request = await ask(customer, dialect, "pay me")
            asked = await customer.status(request.id, "payment-required")
            amount, invoice = amount_of(asked)
            assert amount == PRICE
            assert invoice is not None
            assert read_methods(asked) == {"bolt11": None}
            assert ran == []  # nothing runs unpaid
            await pay.pay_invoice(invoice)
            final = await customer.final(request.id)
        assert status_of(final) == "success"
        assert ran == ["pay me"]
        assert wallet.balance(buyer) == 100_000 - PRICE
        assert sum(balance for _, _, balance in wallet.ledger.accounts()) == 100_000


async def test_an_unpaid_job_expires_and_never_runs(
    relay_url: str, customer: Customer, wallet: DevWallet
) -> None:
    async with accounts(wallet) as (dvm_uri, _buyer, _pay):
        limits = Limits(payment_timeout=1.0, processing_notice=5.0)
        store = SQLiteJobStore()
        dvm, ran = priced(
            relay_url, NWCPayments(dvm_uri, poll_interval=0.2), limits=limits, store=store
        )
        async with dvm.running():
            request = await ask(customer, "modern", "never paid")
            final = await customer.final(request.id)
            record = await store.get(request.id)
    assert error_of(final)[0] == "PAYMENT_TIMEOUT"
    assert record is not None
    assert record.state is JobState.EXPIRED
    assert ran == []


async def test_a_failed_bolt11_job_is_refunded_to_the_invoice_it_named(
    relay_url: str, customer: Customer, wallet: DevWallet
) -> None:
    async with accounts(wallet) as (dvm_uri, buyer, pay):
        back = await pay.make_invoice(PRICE, description="refund")
        assert back.invoice is not None
        store = SQLiteJobStore()
        dvm, _ = priced(relay_url, NWCPayments(dvm_uri, poll_interval=0.5), fail=True, store=store)
        async with dvm.running():
            request = await ask(customer, "modern", "fails", ["refund", back.invoice])
            _, invoice = amount_of(await customer.status(request.id, "payment-required"))
            assert invoice is not None
            await pay.pay_invoice(invoice)
            final = await customer.final(request.id)
            record = await store.get(request.id)
        assert error_of(final) == ("INTERNAL_ERROR", "the model is down")
        refund = read_refund(final, customer.keys)
        assert refund is not None
        assert (refund.amount_msat, refund.method) == (PRICE, "bolt11")
        assert (await pay.lookup_invoice(payment_hash=back.payment_hash)).settled
        assert wallet.balance(buyer) == 100_000  # every msat came back
        assert record is not None
        assert (record.refund, record.paid_msat) == (REFUNDED, PRICE)


async def test_a_failed_bolt11_job_is_refunded_to_the_lightning_address_it_named(
    relay_url: str, customer: Customer, wallet: DevWallet
) -> None:
    async with (
        accounts(wallet) as (dvm_uri, buyer, pay),
        LnurlServer(wallet=pay, keys=Keys.generate(), relays=[relay_url]) as server,
    ):
        address = server.address("alice")  # the customer's own lightning address
        dvm, _ = priced(relay_url, NWCPayments(dvm_uri, poll_interval=0.5), fail=True)
        async with dvm.running():
            request = await ask(customer, "legacy", "fails", ["refund", address])
            _, invoice = amount_of(await customer.status(request.id, "payment-required"))
            assert invoice is not None
            await pay.pay_invoice(invoice)
            final = await customer.final(request.id)
        refund = read_refund(final, customer.keys)
        assert refund is not None
        assert (refund.amount_msat, refund.method) == (PRICE, "bolt11")
        assert wallet.balance(buyer) == 100_000  # paid back through the LNURL server


async def test_a_failed_paid_job_with_nowhere_to_refund_is_owed(
    relay_url: str, customer: Customer, wallet: DevWallet
) -> None:
    async with accounts(wallet) as (dvm_uri, buyer, pay):
        store = SQLiteJobStore()
        dvm, _ = priced(relay_url, NWCPayments(dvm_uri, poll_interval=0.5), fail=True, store=store)
        async with dvm.running():
            request = await ask(customer, "legacy", "fails")
            _, invoice = amount_of(await customer.status(request.id, "payment-required"))
            assert invoice is not None
            await pay.pay_invoice(invoice)
            final = await customer.final(request.id)
            owed = await store.list_jobs(refund=OWED)
        code, message = error_of(final)
        assert code == "INTERNAL_ERROR"
        assert message.endswith(f"the {PRICE} msat you paid are owed to you")
        assert read_refund(final, customer.keys) is None
        assert [(r.id, r.paid_msat, r.payment_method) for r in owed] == [
            (request.id, PRICE, "bolt11")
        ]
        assert wallet.balance(buyer) == 100_000 - PRICE


# -- Cashu -------------------------------------------------------------------------------------


async def pay_cashu(customer: Customer, dvm: DVM, job_id: str, token: str) -> None:
    event = payment_event(
        customer.keys,
        job_id=job_id,
        provider=dvm.public_key,
        method="cashu",
        payload=token,
        created_at=int(time.time()),
    )
    await customer.publish(event)


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
async def test_a_cashu_job_runs_once_the_token_is_swapped_at_the_mint(
    relay_url: str, customer: Customer, cashu_mint: str, tmp_path: Path, dialect: str
) -> None:
    purse = await funded(cashu_mint, 50)
    proofs = tmp_path / "dvm-proofs.json"
    dvm, ran = priced(relay_url, CashuPayments(mint_url=cashu_mint, proofs_path=proofs))
    async with dvm.running():
        request = await ask(customer, dialect, "ecash")
        asked = await customer.status(request.id, "payment-required")
        assert read_methods(asked) == {"cashu": cashu_mint}
        assert amount_of(asked) == (PRICE, None)
        await pay_cashu(customer, dvm, request.id, await purse.send(21))
        final = await customer.final(request.id)
    assert status_of(final) == "success"
    assert ran == ["ecash"]
    assert purse.balance == 29
    # The DVM's ecash is on disk (0600) and worth what was paid.
    assert proofs.stat().st_mode & 0o777 == 0o600
    keeper = CashuPayments(mint_url=cashu_mint, proofs_path=proofs)
    assert keeper.wallet.balance == 21


async def test_one_token_pays_one_job_and_a_second_is_refused(
    relay_url: str, customer: Customer, cashu_mint: str
) -> None:
    purse = await funded(cashu_mint, 21)
    dvm, ran = priced(relay_url, CashuPayments(mint_url=cashu_mint))
    async with dvm.running():
        first = await ask(customer, "modern", "first")
        second = await ask(customer, "modern", "second")
        token = await purse.send(21)
        for request in (first, second):
            await customer.status(request.id, "payment-required")
        await pay_cashu(customer, dvm, first.id, token)
        assert status_of(await customer.final(first.id)) == "success"
        await pay_cashu(customer, dvm, second.id, token)  # the same token again
        final = await customer.final(second.id)
    code, message = error_of(final)
    assert code == "PAYMENT_FAILED"
    assert "spent" in message.lower()
    assert ran == ["first"]


async def test_a_token_from_someone_else_or_for_too_little_releases_nothing(
    relay_url: str, customer: Customer, cashu_mint: str
) -> None:
    purse = await funded(cashu_mint, 40)
    dvm, ran = priced(relay_url, CashuPayments(mint_url=cashu_mint))
    async with dvm.running(), customer_on(relay_url) as stranger:
        request = await ask(customer, "modern", "mine")
        await customer.status(request.id, "payment-required")
        # A third key paying for my job is not my payment: ignored, token untouched.
        theirs = await purse.send(21)
        await pay_cashu(stranger, dvm, request.id, theirs)
        short = await purse.send(10)
        await pay_cashu(customer, dvm, request.id, short)
        final = await customer.final(request.id)
        ignored = dvm.stats().ignored
    assert error_of(final) == ("PAYMENT_FAILED", "the token holds 10 sat; the job costs 21")
    assert ran == []
    assert ignored == 1
    # Neither token was swapped: both are still the customer's to spend.
    for token in (theirs, short):
        states = await purse.check_state(decode_token(token).proofs)
        assert {s.state for s in states} == {"UNSPENT"}


async def test_a_failed_cashu_job_is_refunded_with_fresh_ecash(
    relay_url: str, customer: Customer, cashu_mint: str, tmp_path: Path
) -> None:
    purse = await funded(cashu_mint, 21)
    store = SQLiteJobStore()
    proofs = tmp_path / "dvm-proofs.json"
    payments = CashuPayments(mint_url=cashu_mint, proofs_path=proofs)
    dvm, _ = priced(relay_url, payments, fail=True, store=store)
    async with dvm.running():
        request = await ask(customer, "modern", "fails")
        await customer.status(request.id, "payment-required")
        await pay_cashu(customer, dvm, request.id, await purse.send(21))
        final = await customer.final(request.id)
        record = await store.get(request.id)
    refund = read_refund(final, customer.keys)
    assert refund is not None
    assert (refund.amount_msat, refund.method) == (PRICE, "cashu")
    assert refund.payload not in final.to_json()  # the token travels encrypted
    assert await purse.receive(refund.payload) == 21
    assert purse.balance == 21
    assert record is not None
    assert record.refund == REFUNDED
    # The file says what the DVM holds after the refund left: nothing.
    assert CashuPayments(mint_url=cashu_mint, proofs_path=proofs).wallet.balance == 0


# -- pricing -----------------------------------------------------------------------------------


async def test_a_bid_below_the_price_gets_an_offer_not_work(
    relay_url: str, customer: Customer, cashu_mint: str
) -> None:
    store = SQLiteJobStore()
    dvm, ran = priced(relay_url, CashuPayments(mint_url=cashu_mint), store=store)
    async with dvm.running():
        low = await ask(customer, "modern", "cheap", ["bid", "1000"])
        offer = await customer.status(low.id, "offer")
        legacy = await ask(customer, "legacy", "cheap", ["bid", "1000"])
        asked = await customer.status(legacy.id, "payment-required")
        enough = await ask(customer, "modern", "fair", ["bid", str(PRICE)])
        await customer.status(enough.id, "payment-required")
        stored_low = await store.get(low.id)
    assert amount_of(offer) == (PRICE, None)
    assert stored_low is None  # an offer is not a job
    assert asked.tag("status") == (
        "status",
        "payment-required",
        "your bid of 1000 msat is below the price",
    )
    assert ran == []


async def test_pricing_by_size_and_param_with_an_allow_list_and_a_free_tier(
    relay_url: str, customer: Customer, cashu_mint: str
) -> None:
    friend = Keys.generate()
    pricing = Pricing(
        per_job_msat=1000,
        per_kib_msat=500,
        params={"quality": {"high": 5000}},
        free_for={friend.public_key},
        free_jobs=1,
    )
    dvm, ran = priced(relay_url, CashuPayments(mint_url=cashu_mint), price_msat=pricing)
    async with dvm.running(), customer_on(relay_url, friend) as friendly:
        free = await ask(customer, "modern", "first one is free")
        assert status_of(await customer.final(free.id)) == "success"
        big = await ask(customer, "modern", "x" * 3000, ["param", "quality", "high"])
        asked = await customer.status(big.id, "payment-required")
        for n in range(2):
            mine = await ask(friendly, "modern", f"friend {n}")
            assert status_of(await friendly.final(mine.id)) == "success"
    assert amount_of(asked)[0] == 1000 + 3 * 500 + 5000
    assert sorted(ran) == ["first one is free", "friend 0", "friend 1"]


async def test_several_methods_are_offered_and_either_pays(
    relay_url: str, customer: Customer, wallet: DevWallet, cashu_mint: str
) -> None:
    purse = await funded(cashu_mint, 21)
    async with accounts(wallet) as (dvm_uri, _buyer, pay):
        payments = Payments(
            NWCPayments(dvm_uri, poll_interval=0.5), CashuPayments(mint_url=cashu_mint)
        )
        dvm, ran = priced(relay_url, payments)
        async with dvm.running():
            by_ecash = await ask(customer, "modern", "ecash")
            asked = await customer.status(by_ecash.id, "payment-required")
            await pay_cashu(customer, dvm, by_ecash.id, await purse.send(21))
            by_invoice = await ask(customer, "legacy", "invoice")
            _, invoice = amount_of(await customer.status(by_invoice.id, "payment-required"))
            assert invoice is not None
            await pay.pay_invoice(invoice)
            finals = [await customer.final(r.id) for r in (by_ecash, by_invoice)]
    assert read_methods(asked) == {"bolt11": None, "cashu": cashu_mint}
    assert [status_of(f) for f in finals] == ["success", "success"]
    assert sorted(ran) == ["ecash", "invoice"]


# -- zaps --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lnurl_server(
    wallet: DevWallet, relay_url: str, keys: Keys
) -> AsyncIterator[tuple[str, NWCClient, str]]:
    """The DVM's LNURL server on its own dev-wallet account: its lightning address, a funded
    customer wallet, and that customer's account."""
    server_uri = wallet.create_account(name="lnurl")
    buyer_uri = wallet.create_account(name="customer", deposit_msat=100_000)
    async with (
        NWCClient(server_uri) as receiving,
        NWCClient(buyer_uri) as pay,
        LnurlServer(wallet=receiving, keys=keys, relays=[relay_url]) as server,
    ):
        yield server.address("dvm"), pay, buyer_uri.client


async def zap_invoice(
    customer: Customer, dvm: DVM, relay: str, address: str, job: str
) -> tuple[Event, str]:
    """A zap request of PRICE to ``dvm`` for ``job``, and its invoice from the LNURL server."""
    zap = zap_request(
        customer.keys, recipient=dvm.public_key, amount_msat=PRICE, relays=[relay], event_id=job
    )
    return zap, await fetch_invoice(await fetch_pay_info(address), PRICE, zap_request=zap)


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
async def test_a_zapped_job_runs_only_on_a_receipt_from_the_dvms_own_lnurl_server(
    relay_url: str, customer: Customer, wallet: DevWallet, dialect: str
) -> None:
    async with lnurl_server(wallet, relay_url, Keys.generate()) as (address, pay, buyer):
        store = SQLiteJobStore()
        dvm, ran = priced(relay_url, ZapPayments(address=address), store=store)
        async with dvm.running():
            request = await ask(customer, dialect, "zap me")
            asked = await customer.status(request.id, "payment-required")
            assert read_methods(asked) == {"zap": address}
            zap, invoice = await zap_invoice(customer, dvm, relay_url, address, request.id)
            # A receipt signed by any key but the LNURL server's is a forgery: it releases
            # nothing, though everything else in it is right.
            forged = receipt_event(
                server_keys=Keys.generate(),
                zap_request=zap,
                bolt11=invoice,
                preimage=None,
                paid_at=int(time.time()),
            )
            await customer.publish(forged)
            await pay.pay_invoice(invoice)
            final = await customer.final(request.id)
            ledger = await store.payments(request.id)
    assert status_of(final) == "success"
    assert ran == ["zap me"]
    assert [(e.method, e.amount_msat) for e in ledger] == [("zap", PRICE)]
    assert ledger[0].key == "zap:" + bolt11.decode(invoice).payment_hash
    assert wallet.balance(buyer) == 100_000 - PRICE


async def test_a_zap_receipt_pays_one_job_once(
    relay_url: str, customer: Customer, wallet: DevWallet
) -> None:
    async with lnurl_server(wallet, relay_url, Keys.generate()) as (address, pay, _buyer):
        limits = Limits(payment_timeout=2.0, processing_notice=5.0)
        dvm, ran = priced(relay_url, ZapPayments(address=address), limits=limits)
        async with dvm.running():
            first = await ask(customer, "modern", "first")
            await customer.status(first.id, "payment-required")
            _, invoice = await zap_invoice(customer, dvm, relay_url, address, first.id)
            await pay.pay_invoice(invoice)
            assert status_of(await customer.final(first.id)) == "success"
            # The same receipt, seen again for a second job: its e tag names the first.
            second = await ask(customer, "modern", "second")
            receipts = await customer.fetch(
                nostr_sdk.Filter()
                .kind(nostr_sdk.Kind(9735))
                .event(nostr_sdk.EventId.parse(first.id))
            )
            assert len(receipts) == 1
            # Shown to the DVM again (a relay may call it a duplicate; a forger can always
            # re-send it, and the DVM reads stored receipts again on restart).
            await customer.publish(Event.from_json(receipts[0].as_json()), require_ok=False)
            final = await customer.final(second.id)
    assert error_of(final)[0] == "PAYMENT_TIMEOUT"
    assert ran == ["first"]


async def test_a_mint_that_is_down_does_not_keep_the_dvm_from_serving(
    relay_url: str, customer: Customer
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    dvm, _ = priced(relay_url, CashuPayments(mint_url=dead, timeout=1.0))
    async with dvm.running():
        request = await ask(customer, "modern", "later")
        asked = await customer.status(request.id, "payment-required")
    assert read_methods(asked) == {"cashu": dead}
