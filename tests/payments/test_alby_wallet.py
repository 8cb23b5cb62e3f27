"""Interop: dvmkit's NWC client against an independent wallet service, Alby's
``NWCWalletService`` (``@getalby/sdk`` 8.0.3 on Node, see ``alby_wallet.py``), on both relays
under test. The reverse direction (nostr-sdk's client against our dev wallet) is in
``test_nwc_interop.py``; a paid DVM job through this service is in
``tests/customer/test_paid_dvm.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Literal

import pytest

from dvmkit.nostr.keys import Keys
from dvmkit.payments import bolt11
from dvmkit.payments.nip47 import WalletError
from dvmkit.payments.nwc import NWCClient

from .alby_wallet import alby_wallet
from .conftest import WAIT


@pytest.mark.parametrize("encryption", ["auto", "nip04"])
async def test_our_client_makes_pays_and_looks_up_invoices_on_an_alby_wallet(
    relay_url: str, encryption: Literal["auto", "nip04"]
) -> None:
    seller_keys, buyer_keys = Keys.generate(), Keys.generate()
    zap_request_hash = hashlib.sha256(b'{"kind":9734}').hexdigest()
    async with (
        alby_wallet([relay_url], {seller_keys: 0, buyer_keys: 30_000}) as service,
        NWCClient(service.uri(seller_keys), timeout=WAIT, encryption=encryption) as seller,
        NWCClient(service.uri(buyer_keys), timeout=WAIT, encryption=encryption) as buyer,
    ):
        info = await seller.get_info()
        made = await seller.make_invoice(21_001, description="alby job", expiry=600)
        hashed = await seller.make_invoice(5_000, description_hash=zap_request_hash)
        pending = await seller.lookup_invoice(payment_hash=made.payment_hash)
        paid = await buyer.pay_invoice(made.invoice or "")
        settled = await seller.lookup_invoice(invoice=made.invoice)
        sent = await buyer.lookup_invoice(payment_hash=made.payment_hash)
        balances = ((await seller.get_balance()).msat, (await buyer.get_balance()).msat)
    # "auto" read the service's info event (13194), which lists nip44_v2; Alby answers in the
    # scheme each request used.
    assert seller.encryption == ("nip44_v2" if encryption == "auto" else "nip04")
    assert (info.network, info.pubkey) == ("regtest", service.node)
    assert {"make_invoice", "pay_invoice", "lookup_invoice", "get_balance"} <= set(info.methods)
    invoice = bolt11.decode(made.invoice or "")
    assert (invoice.amount_msat, invoice.description, invoice.payee) == (
        21_001,
        "alby job",
        service.node,
    )
    assert invoice.payment_hash == made.payment_hash
    assert invoice.expiry == 600
    assert made.expires_at == invoice.timestamp + 600
    assert bolt11.decode(hashed.invoice or "").description_hash == zap_request_hash
    assert (pending.state, pending.settled) == ("pending", False)
    assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == made.payment_hash
    assert (settled.type, settled.state, settled.settled) == ("incoming", "settled", True)
    assert (settled.amount_msat, settled.preimage) == (21_001, paid.preimage)
    assert (sent.type, sent.settled, sent.amount_msat) == ("outgoing", True, 21_001)
    assert balances == (21_001, 30_000 - 21_001)


async def test_an_alby_wallets_errors_reach_our_client_with_their_codes(relay_url: str) -> None:
    payee_keys, poor_keys = Keys.generate(), Keys.generate()
    async with (
        alby_wallet([relay_url], {payee_keys: 0, poor_keys: 1_000}) as service,
        NWCClient(service.uri(payee_keys), timeout=WAIT) as payee,
        NWCClient(service.uri(poor_keys), timeout=WAIT) as poor,
    ):
        made = await payee.make_invoice(5_000, description="too dear")
        with pytest.raises(WalletError) as short:
            await poor.pay_invoice(made.invoice or "")
        with pytest.raises(WalletError) as unknown:
            await poor.lookup_invoice(payment_hash="00" * 32)
        with pytest.raises(WalletError) as someone_elses:
            await poor.lookup_invoice(payment_hash=made.payment_hash)
        with pytest.raises(WalletError) as unsupported:
            await poor.request("make_hold_invoice", {"amount": 1_000, "payment_hash": "00" * 32})
        still = await payee.lookup_invoice(payment_hash=made.payment_hash)
        balances = ((await payee.get_balance()).msat, (await poor.get_balance()).msat)
    assert short.value.code == "INSUFFICIENT_BALANCE"
    assert "5000 msat" in short.value.message
    assert (unknown.value.code, someone_elses.value.code) == ("NOT_FOUND", "NOT_FOUND")
    assert unsupported.value.code == "NOT_IMPLEMENTED"
    assert not still.settled
    assert balances == (0, 1_000)


async def test_a_key_the_alby_wallet_does_not_know_gets_no_answer(relay_url: str) -> None:
    """The service answers only its own connections; ours reports TIMEOUT, and says so."""
    known, stranger = Keys.generate(), Keys.generate()
    async with (
        alby_wallet([relay_url], {known: 0}) as service,
        NWCClient(service.uri(stranger), timeout=1.0) as client,
    ):
        with pytest.raises(WalletError) as caught:
            async with asyncio.timeout(WAIT):
                await client.get_balance()
    assert caught.value.code == "TIMEOUT"
    assert "did not answer get_balance" in caught.value.message
