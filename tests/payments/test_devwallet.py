"""Our NWC client against our dev wallet, over our relay and nostr-sdk's LocalRelay."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.filters import Filter
from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11, nip47
from dvmkit.payments.devwallet import METHODS, DevWallet
from dvmkit.payments.ledger import LedgerInvoice
from dvmkit.payments.nip47 import NIP04, NIP44, ConnectionURI, WalletError
from dvmkit.payments.nwc import NWCClient
from dvmkit.relay.pool import RelayPool

from .conftest import WAIT


async def test_paid_invoice_settles_moves_exact_balances_and_notifies(wallet: DevWallet) -> None:
    provider_uri = wallet.create_account(name="dvm")
    customer_uri = wallet.create_account(name="alice", deposit_msat=50_000)
    async with (
        NWCClient(provider_uri, timeout=WAIT) as provider,
        NWCClient(customer_uri, timeout=WAIT) as customer,
    ):
        assert provider.encryption == customer.encryption == NIP44
        made = await provider.make_invoice(21_000, description="job 42", expiry=600)
        invoice = bolt11.decode(made.invoice or "")
        assert invoice.amount_msat == made.amount_msat == 21_000
        assert invoice.payment_hash == made.payment_hash
        assert invoice.payee == wallet.node_id
        assert (invoice.network, invoice.description, invoice.expiry) == ("bcrt", "job 42", 600)
        pending = await provider.lookup_invoice(payment_hash=made.payment_hash)
        assert (pending.state, pending.settled, pending.preimage) == ("pending", False, None)

        async with provider.notifications() as received, customer.notifications() as sent:
            paid = await customer.pay_invoice(made.invoice or "")
            async with asyncio.timeout(WAIT):
                got = await anext(received)
                out = await anext(sent)

        assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == made.payment_hash
        assert paid.fees_paid_msat == 0
        assert (got.type, got.transaction.type) == ("payment_received", "incoming")
        assert (out.type, out.transaction.type) == ("payment_sent", "outgoing")
        for note in (got, out):
            assert note.transaction.payment_hash == made.payment_hash
            assert note.transaction.amount_msat == 21_000
            assert note.transaction.preimage == paid.preimage

        settled = await provider.lookup_invoice(invoice=made.invoice)
        assert settled.settled
        assert settled.state == "settled"
        assert settled.preimage == paid.preimage
        assert settled.settled_at is not None
        as_payer = await customer.lookup_invoice(payment_hash=made.payment_hash)
        assert (as_payer.type, as_payer.settled) == ("outgoing", True)
        assert (await provider.get_balance()).msat == 21_000
        assert (await customer.get_balance()).msat == 29_000
    assert wallet.balance(provider_uri.client) == 21_000
    assert wallet.balance(customer_uri.client) == 29_000


async def test_get_info_describes_the_dev_wallet(wallet: DevWallet) -> None:
    async with NWCClient(wallet.create_account(), timeout=WAIT) as client:
        info = await client.get_info()
    assert info.methods == METHODS
    assert info.notifications == ("payment_received", "payment_sent")
    assert (info.network, info.pubkey) == ("regtest", wallet.node_id)


async def test_payment_errors_have_nip47_codes_and_move_nothing(wallet: DevWallet) -> None:
    payee_uri = wallet.create_account()
    payer_uri = wallet.create_account(deposit_msat=10_000)
    async with (
        NWCClient(payee_uri, timeout=WAIT) as payee,
        NWCClient(payer_uri, timeout=WAIT) as payer,
    ):
        big = await payee.make_invoice(10_001)
        with pytest.raises(WalletError) as caught:
            await payer.pay_invoice(big.invoice or "")
        assert caught.value.code == "INSUFFICIENT_BALANCE"

        small = await payee.make_invoice(4_000)
        with pytest.raises(WalletError) as caught:
            await payer.pay_invoice(small.invoice or "", amount_msat=3_000)
        assert caught.value.code == "PAYMENT_FAILED"
        assert "differs" in caught.value.message
        await payer.pay_invoice(small.invoice or "", amount_msat=4_000)
        with pytest.raises(WalletError) as caught:
            await payer.pay_invoice(small.invoice or "")
        assert caught.value.code == "PAYMENT_FAILED"
        assert "already paid" in caught.value.message

        own = await payer.make_invoice(1_000)
        with pytest.raises(WalletError) as caught:
            await payer.pay_invoice(own.invoice or "")
        assert caught.value.code == "PAYMENT_FAILED"
        assert "own invoice" in caught.value.message

        # Signed by this wallet's node but never issued: unknown to the ledger.
        unknown = bolt11.encode(
            wallet.ledger.secret("node"), payment_hash=os.urandom(32), amount_msat=1_000
        )
        with pytest.raises(WalletError) as caught:
            await payer.pay_invoice(unknown)
        assert caught.value.code == "NOT_FOUND"
        foreign = bolt11.encode(os.urandom(32), payment_hash=os.urandom(32), amount_msat=1_000)
        with pytest.raises(WalletError) as caught:
            await payer.pay_invoice(foreign)
        assert caught.value.code == "PAYMENT_FAILED"
        assert "no route" in caught.value.message
        with pytest.raises(WalletError) as caught:
            await payer.pay_invoice("lnbcrt1garbage")
        assert caught.value.code == "OTHER"
        assert "invalid invoice" in caught.value.message

        with pytest.raises(WalletError) as caught:
            await payer.lookup_invoice(payment_hash=os.urandom(32).hex())
        assert caught.value.code == "NOT_FOUND"
        with pytest.raises(WalletError) as caught:
            await payee.make_invoice(0)
        assert caught.value.code == "OTHER"
        with pytest.raises(WalletError) as caught:
            await payer.request("pay_keysend", {"amount": 1, "pubkey": "02" * 33})
        assert caught.value.code == "NOT_IMPLEMENTED"

        # Only the one good payment moved money.
        assert (await payer.get_balance()).msat == 6_000
        assert (await payee.get_balance()).msat == 4_000
        assert not (await payee.lookup_invoice(payment_hash=big.payment_hash)).settled


async def test_accounts_do_not_see_each_others_invoices(wallet: DevWallet) -> None:
    async with (
        NWCClient(wallet.create_account(), timeout=WAIT) as alice,
        NWCClient(wallet.create_account(), timeout=WAIT) as bob,
    ):
        made = await alice.make_invoice(1_000)
        with pytest.raises(WalletError) as caught:
            await bob.lookup_invoice(payment_hash=made.payment_hash)
    assert caught.value.code == "NOT_FOUND"


class _Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_expired_invoice_is_never_settled_and_cannot_be_paid(relay_url: str) -> None:
    clock = _Clock()
    async with DevWallet(relays=[relay_url], clock=clock) as wallet:
        payee_uri = wallet.create_account()
        payer_uri = wallet.create_account(deposit_msat=5_000)
        async with (
            NWCClient(payee_uri, timeout=WAIT) as payee,
            NWCClient(payer_uri, timeout=WAIT) as payer,
        ):
            made = await payee.make_invoice(1_000, expiry=1)
            clock.offset = 2.0  # the wallet's time only: the invoice is past its expiry
            looked = await payee.lookup_invoice(payment_hash=made.payment_hash)
            assert (looked.state, looked.settled, looked.preimage) == ("expired", False, None)
            with pytest.raises(WalletError) as caught:
                await payer.pay_invoice(made.invoice or "")
            assert caught.value.code == "PAYMENT_FAILED"
            assert "expired" in caught.value.message
            assert not (await payee.lookup_invoice(payment_hash=made.payment_hash)).settled
        assert (wallet.balance(payee_uri.client), wallet.balance(payer_uri.client)) == (0, 5_000)


async def test_unknown_key_is_unauthorized_and_moves_no_money(wallet: DevWallet) -> None:
    payee_uri = wallet.create_account()
    funded = wallet.create_account(deposit_msat=9_000)
    stranger = ConnectionURI(wallet=wallet.pubkey, relays=wallet.relays, keys=Keys.generate())
    async with (
        NWCClient(payee_uri, timeout=WAIT) as payee,
        NWCClient(stranger, timeout=WAIT) as intruder,
    ):
        made = await payee.make_invoice(1_000)
        for call in (
            intruder.pay_invoice(made.invoice or ""),
            intruder.get_balance(),
            intruder.make_invoice(1_000),
            intruder.lookup_invoice(payment_hash=made.payment_hash),
        ):
            with pytest.raises(WalletError) as caught:
                await call
            assert caught.value.code == "UNAUTHORIZED"
        assert not (await payee.lookup_invoice(payment_hash=made.payment_hash)).settled
    assert wallet.balance(payee_uri.client) == 0
    assert wallet.balance(funded.client) == 9_000
    assert sorted(a[0] for a in wallet.ledger.accounts()) == sorted(
        [payee_uri.client, funded.client]
    )


async def test_nip04_fallback_when_the_info_event_lacks_nip44(relay_url: str) -> None:
    async with DevWallet(relays=[relay_url], encryption=(NIP04,)) as wallet:
        payee_uri = wallet.create_account()
        payer_uri = wallet.create_account(deposit_msat=2_000)
        async with (
            RelayPool(relays=[relay_url]) as watcher,
            watcher.subscribe(Filter.build(kinds=[nip47.REQUEST])) as requests,
            NWCClient(payee_uri, timeout=WAIT) as payee,
            NWCClient(payer_uri, timeout=WAIT) as payer,
        ):
            assert payee.encryption == payer.encryption == NIP04
            async with payee.notifications() as notes:
                made = await payee.make_invoice(2_000)
                await payer.pay_invoice(made.invoice or "")
                async with asyncio.timeout(WAIT):
                    note = await anext(notes)
                    seen = [await anext(requests), await anext(requests)]
            assert (note.type, note.transaction.payment_hash) == (
                "payment_received",
                made.payment_hash,
            )
            assert all(e.tag("encryption") is None and "?iv=" in e.content for e in seen)
            assert (await payee.lookup_invoice(payment_hash=made.payment_hash)).settled


async def test_a_request_sent_twice_is_answered_once_and_paid_once(wallet: DevWallet) -> None:
    payee_uri = wallet.create_account()
    payer_uri = wallet.create_account(deposit_msat=3_000)
    async with NWCClient(payee_uri, timeout=WAIT) as payee:
        made = await payee.make_invoice(1_000)
    keys = payer_uri.keys
    body = nip47.request_body("pay_invoice", {"invoice": made.invoice})
    request = sign_event(
        keys,
        kind=nip47.REQUEST,
        content=nip47.encrypt(keys, wallet.pubkey, body, NIP44),
        tags=[("p", wallet.pubkey), ("encryption", NIP44)],
    )
    answers: list[Event] = []
    async with (
        RelayPool(relays=wallet.relays) as pool,
        pool.subscribe(Filter.build(kinds=[nip47.RESPONSE], tags={"e": [request.id]})) as sub,
    ):
        await sub.wait_stored()
        for _ in range(2):
            assert (await pool.publish(request)).ok
            async with asyncio.timeout(WAIT):
                answers.append(await anext(sub))
    assert answers[0].id == answers[1].id  # the very same signed answer, sent again
    result = nip47.parse_response(
        nip47.decrypt(keys, wallet.pubkey, answers[0].content, NIP44), method="pay_invoice"
    )
    assert hashlib.sha256(bytes.fromhex(result["preimage"])).hexdigest() == made.payment_hash
    assert wallet.balance(payer_uri.client) == 2_000
    assert wallet.balance(payee_uri.client) == 1_000


async def test_ledger_file_keeps_keys_accounts_and_balances(tmp_path: Path) -> None:
    db = tmp_path / "wallet.sqlite3"
    first = DevWallet(relays=["ws://127.0.0.1:1"], db=db)
    uri = first.create_account(deposit_msat=7_000)
    pubkey, node = first.pubkey, first.node_id
    first.ledger.close()
    again = DevWallet(relays=["ws://127.0.0.1:1"], db=db)
    assert (again.pubkey, again.node_id) == (pubkey, node)
    assert again.balance(uri.client) == 7_000
    assert again.deposit(uri.client, 500) == 7_500
    again.ledger.close()
    assert db.stat().st_mode & 0o777 == 0o600
    assert uri.keys.secret_hex() not in db.read_bytes().decode("latin-1")


def test_an_invoices_preimage_stays_out_of_its_repr() -> None:
    preimage = "ab" * 32
    invoice = LedgerInvoice(
        payment_hash="cd" * 32,
        account="ef" * 32,
        bolt11="lnbcrt1",
        amount_msat=1000,
        description=None,
        description_hash=None,
        preimage=preimage,
        created_at=0,
        expires_at=3600,
        settled_at=None,
        payer=None,
    )
    assert invoice.preimage == preimage
    assert preimage not in repr(invoice)
    assert preimage not in str(invoice)
